"""Browser pages."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(template_name="annotator/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<int:project_id>/", views.project_manage, name="project-manage"),
    *(
        path(f"projects/<int:project_id>/manage/{name}/", view, name=f"project-manage-{name}")
        for name, view in views.MANAGER_ACTIONS.items()
    ),
    path("projects/<int:project_id>/delete/", views.project_delete, name="project-delete"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/browse/", views.browse, name="browse"),
    path("projects/<int:project_id>/review/", views.review_next, name="review"),
    path("projects/<int:project_id>/review/<int:document_id>/", views.review_document, name="review-document"),
    path("projects/<int:project_id>/audit/", views.audit, name="audit"),
]

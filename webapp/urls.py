from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("annotator.api.urls")),
    path("", include("annotator.urls")),
]

# Django's own error pages (DEBUG off): problem details (application/problem+json) under /api/, HTML elsewhere.
handler400 = "annotator.api.errors.handler400"
handler403 = "annotator.api.errors.handler403"
handler404 = "annotator.api.errors.handler404"
handler500 = "annotator.api.errors.handler500"

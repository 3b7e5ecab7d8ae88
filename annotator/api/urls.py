from django.urls import path

from . import tokens, views

urlpatterns = [
    path("auth/token/", tokens.TokenObtainView.as_view(), name="api-token"),
    path("auth/tokens/", tokens.TokenListView.as_view(), name="api-tokens"),
    path("auth/tokens/<int:token_id>/", tokens.TokenDetailView.as_view(), name="api-token-revoke"),
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:project_id>/archive/", views.ProjectArchiveView.as_view(), name="api-project-archive"),
    path(
        "projects/<int:project_id>/restore/",
        views.ProjectArchiveView.as_view(archived=False),
        name="api-project-restore",
    ),
    path("projects/<int:project_id>/members/", views.MemberView.as_view(), name="api-members"),
    path(
        "projects/<int:project_id>/members/<str:username>/",
        views.MemberDetailView.as_view(),
        name="api-member",
    ),
    path("projects/<int:project_id>/documents/", views.DocumentImportView.as_view(), name="api-documents"),
    path("projects/<int:project_id>/next/", views.NextView.as_view(), name="api-next"),
    path("projects/<int:project_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path("projects/<int:project_id>/lease/", views.LeaseView.as_view(), name="api-lease"),
    path("projects/<int:project_id>/annotations/", views.AnnotationView.as_view(), name="api-annotations"),
    path(
        "projects/<int:project_id>/annotations/<int:document_id>/",
        views.AnnotationDetailView.as_view(),
        name="api-annotation",
    ),
    path("projects/<int:project_id>/labels/", views.LabelView.as_view(), name="api-labels"),
    path("projects/<int:project_id>/labels/import/", views.LabelImportView.as_view(), name="api-labels-import"),
    path("projects/<int:project_id>/labels/tree/", views.LabelTreeView.as_view(), name="api-labels-tree"),
    path("projects/<int:project_id>/labels/taxonomy/", views.LabelTaxonomyView.as_view(), name="api-labels-taxonomy"),
    path("projects/<int:project_id>/labels/<int:label_id>/", views.LabelDetailView.as_view(), name="api-label"),
    path(
        "projects/<int:project_id>/labels/<int:label_id>/merge/", views.LabelMergeView.as_view(), name="api-label-merge"
    ),
    path(
        "projects/<int:project_id>/labels/<int:label_id>/deprecate/",
        views.LabelDeprecateView.as_view(),
        name="api-label-deprecate",
    ),
    path(
        "projects/<int:project_id>/labels/<int:label_id>/restore/",
        views.LabelRestoreView.as_view(),
        name="api-label-restore",
    ),
    path("projects/<int:project_id>/stats/", views.StatsView.as_view(), name="api-stats"),
    path("projects/<int:project_id>/annotators/", views.AnnotatorStatsView.as_view(), name="api-annotators"),
    path("projects/<int:project_id>/labels/coverage/", views.LabelCoverageView.as_view(), name="api-label-coverage"),
    path("projects/<int:project_id>/train/", views.TrainView.as_view(), name="api-train"),
    path("projects/<int:project_id>/adapt/", views.AdaptView.as_view(), name="api-adapt"),
    path("projects/<int:project_id>/savings/", views.SavingsView.as_view(), name="api-savings"),
    path("projects/<int:project_id>/savings/adopt/", views.SavingsAdoptView.as_view(), name="api-savings-adopt"),
    path("projects/<int:project_id>/models/", views.ModelListView.as_view(), name="api-models"),
    path("projects/<int:project_id>/models/compare/", views.ModelCompareView.as_view(), name="api-models-compare"),
    path(
        "projects/<int:project_id>/models/<int:number>/promote/",
        views.ModelPromoteView.as_view(),
        name="api-model-promote",
    ),
    path("projects/<int:project_id>/learning-curve/", views.LearningCurveView.as_view(), name="api-learning-curve"),
    path("projects/<int:project_id>/jobs/", views.JobListView.as_view(), name="api-jobs"),
    path("projects/<int:project_id>/jobs/<int:job_id>/", views.JobDetailView.as_view(), name="api-job"),
    path("projects/<int:project_id>/jobs/<int:job_id>/cancel/", views.JobCancelView.as_view(), name="api-job-cancel"),
    path("projects/<int:project_id>/schedules/", views.ScheduleListView.as_view(), name="api-schedules"),
    path(
        "projects/<int:project_id>/schedules/<int:schedule_id>/",
        views.ScheduleDetailView.as_view(),
        name="api-schedule",
    ),
    path("projects/<int:project_id>/export/", views.ExportView.as_view(), name="api-export"),
]

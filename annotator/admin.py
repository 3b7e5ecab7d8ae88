from django.contrib import admin

from .models import Annotation, ApiToken, Document, Job, Label, Membership, ModelVersion, Project, QueueItem


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "label_budget", "retrain_every", "strategy", "created_at")
    search_fields = ("name",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("project", "user", "role")
    list_filter = ("role",)


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "name")
    search_fields = ("name",)
    list_select_related = ("project",)


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "external_id")
    search_fields = ("external_id",)
    list_select_related = ("project",)


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("id", "document", "annotator", "source", "strategy", "updated_at")
    list_select_related = ("document", "annotator")
    raw_id_fields = ("document", "model_version")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "status", "progress", "created_at", "finished_at")
    list_filter = ("kind", "status")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "number", "is_serving", "n_annotations", "created_at")


@admin.register(QueueItem)
class QueueItemAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "document", "model_version", "strategy", "score", "leased_to")
    raw_id_fields = ("document", "model_version")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every user's API tokens, to see who holds which and revoke one (delete it). Tokens are issued through the
    API (POST /api/v1/auth/token/), which shows the key once; the admin never sees a key, only its prefix."""

    list_display = ("user", "name", "prefix", "created_at", "expires_at")
    list_filter = ("expires_at",)
    search_fields = ("user__username", "name", "prefix")
    readonly_fields = ("user", "name", "prefix", "created_at", "expires_at")
    exclude = ("digest",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

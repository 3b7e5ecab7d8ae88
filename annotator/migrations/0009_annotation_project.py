"""Annotation.project: the document's project repeated, so the manager's counts need no join over documents."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def fill_project(apps, schema_editor):
    Annotation = apps.get_model("annotator", "Annotation")
    Document = apps.get_model("annotator", "Document")
    Annotation.objects.update(
        project_id=Subquery(Document.objects.filter(pk=OuterRef("document_id")).values("project_id")[:1])
    )


def count_decisions(apps, schema_editor):
    Annotation = apps.get_model("annotator", "Annotation")
    SuggestionDecision = apps.get_model("annotator", "SuggestionDecision")
    shown = SuggestionDecision.objects.filter(annotation=OuterRef("pk")).order_by().values("annotation")
    Annotation.objects.update(
        suggestions_shown=Coalesce(Subquery(shown.annotate(n=Count("id")).values("n")), 0),
        suggestions_accepted=Coalesce(
            Subquery(shown.filter(decision="accepted").annotate(n=Count("id")).values("n")), 0
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0008_label_rarest_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="annotation",
            name="project",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="annotator.project"
            ),
        ),
        migrations.RunPython(fill_project, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="annotation",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="annotator.project"
            ),
        ),
        migrations.AddIndex(
            model_name="annotation",
            index=models.Index(fields=["project", "source", "created_at"], name="annotation_project_idx"),
        ),
        migrations.AddIndex(
            model_name="annotation",
            index=models.Index(fields=["project", "annotator", "updated_at"], name="annotation_annotator_idx"),
        ),
        migrations.AddField(
            model_name="annotation", name="suggestions_shown", field=models.PositiveSmallIntegerField(default=0)
        ),
        migrations.AddField(
            model_name="annotation", name="suggestions_accepted", field=models.PositiveSmallIntegerField(default=0)
        ),
        migrations.RunPython(count_decisions, migrations.RunPython.noop),
    ]

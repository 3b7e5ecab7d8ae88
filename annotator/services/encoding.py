"""The encode job: embeds the project's documents and label names with the encoders in use, then asks for scoring.

Every job that needs embeddings (training, scoring, evaluation, adaptation, the savings estimate) encodes what is
missing through `encode_missing`, and builds the label-name prior through `label_prior`.
"""

from __future__ import annotations

from .. import ml
from ..models import Document, Job, Label, ModelVersion, Project
from ..selectors import label_texts, newest_encoder_path, serving_version
from .jobs import JOB_ERRORS, Heartbeat, job_claim, job_fail, job_request, job_succeed
from .label_vectors import label_index_rebuild

ENCODE_CHUNK = 4096  # documents per cache write (each write rewrites the cache file: keep writes few)


def encode_missing(project_id: int, doc_ids: list[int], beat: Heartbeat, encoder_path: str | None = None) -> int:
    """Embeds the documents the encoder (`encoder_path`: an adapted one, None: the base) has no vector for yet."""
    store = ml.embedding_store(project_id, encoder_path)
    missing = store.missing(doc_ids)
    for start in range(0, len(missing), ENCODE_CHUNK):
        part = missing[start : start + ENCODE_CHUNK]
        texts = dict(Document.objects.filter(pk__in=part).values_list("id", "text"))
        present = [doc_id for doc_id in part if doc_id in texts]

        def report(done: int, _total: int, start: int = start) -> None:
            beat((start + done) / len(missing), f"encoded {start + done} of {len(missing)} documents")

        ml.encode_into_store(
            store, present, [texts[doc_id] for doc_id in present], on_progress=report, encoder_path=encoder_path
        )
    return len(missing)


def label_prior(project_id: int, *, encode: bool, encoder_path: str | None = None):
    """The label-name prior over the project's labels, embedded by `encoder_path` (labels not embedded yet are
    embedded first when `encode`, on the worker that holds the encoder); None when the project switched it off or
    no label vector exists."""
    if not Project.objects.filter(pk=project_id, label_prior=True).exists():
        return None
    labels = label_texts(project_id)
    if encode:
        ml.encode_labels(project_id, labels, encoder_path)
    return ml.label_prior(project_id, labels, encoder_path)


def encoders_in_use(project: Project) -> list[str | None]:
    """The encoders whose embeddings the project needs: the one the next training reads (the newest adapted one,
    else the base) and the one the serving model reads (scoring), first the former."""
    paths = [newest_encoder_path(project=project)]
    serving = serving_version(project=project)
    if serving is not None:
        paths.append(serving.config.get("encoder_path") or None)
    return list(dict.fromkeys(paths))


def encode_run(*, job_id: int) -> None:
    """Encodes every document of the project that has no cached embedding, then queues a scoring run."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    try:
        total = 0
        paths = encoders_in_use(job.project)
        for _ in range(10):  # documents imported while encoding are picked up by the next pass
            doc_ids = list(Document.objects.filter(project_id=job.project_id).values_list("id", flat=True))
            done = sum(encode_missing(job.project_id, doc_ids, Heartbeat(job.pk), path) for path in paths)
            total += done
            if done == 0:
                break
        labels_done = sum(ml.encode_labels(job.project_id, label_texts(job.project_id), path) for path in paths)
        label_index_rebuild(project_id=job.project_id)  # label search's semantic fallback (alternative names too)
    except JOB_ERRORS as exc:
        job_fail(job_id=job.pk, error=f"encoding failed: {exc}")
        return
    message = f"encoded {total} documents" + (f" and {labels_done} label names" if labels_done else "")
    job_succeed(job=job, message=message)
    job_request(project=job.project, kind=Job.Kind.SCORE, reason="documents encoded")
    if labels_done and _labels_unknown_to_serving(job.project):
        # Labels added after the model: the next version knows them and blends their names' prior at once
        # (suggested before their first positive), instead of waiting for the next scheduled retrain.
        job_request(project=job.project, kind=Job.Kind.TRAIN, reason="labels added: their names join the model")


def _labels_unknown_to_serving(project: Project) -> bool:
    """Whether the project uses the label prior and has labels its serving model was not trained with (never for
    the full tier, which blends no prior: a new label there waits for the usual retrain)."""
    serving = ModelVersion.objects.filter(project=project, is_serving=True).only("n_labels").first()
    if serving is None or not project.label_prior or project.model_tier == Project.Tier.FULL:
        return False
    return Label.objects.filter(project=project).count() > serving.n_labels

"""The semantic label index behind label search's fallback: label names, descriptions and alternative names embedded
with the base encoder, and each label's answered documents averaged (so an English query finds the German label
experts gave to English documents), stored per project (`ml.label_index_build`), so that a search embeds only the
query.

Built by the encode job (`encode_run` calls `label_index_rebuild` after embedding the label names); a change to the
taxonomy asks for an encode job with `label_vectors_refresh`. Vectors are cached by a hash of the text embedded,
so a rebuild embeds only new or changed texts (a renamed label, a new alternative name, an edited description)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import ml
from ..models import Job, Project
from ..selectors.labels import label_search_texts
from ..selectors.training import resolved_answers
from .jobs import job_request


def label_vectors_refresh(*, project: Project, label_ids: Iterable[int] = (), reason: str = "") -> Job:
    """Call after any change to labels' names, descriptions, alternative names or deprecation (in the same
    transaction): queues the project's encode job (sent on commit; coalesced with one already queued), which
    re-embeds what changed and rebuilds the semantic label index. Until it ran, search still finds the labels by
    text, and a semantic hit is always re-read from the database (a deprecated or deleted label never shows)."""
    ids = sorted(set(label_ids))
    why = reason or (f"labels changed: {len(ids)}" if ids else "labels changed")
    job, _ = job_request(project=project, kind=Job.Kind.ENCODE, reason=why)
    return job


def label_index_rebuild(
    *, project_id: int, documents: tuple[Sequence[int], Sequence[Sequence[int]]] | None = None
) -> int:
    """Worker side (the encoder is loaded here): embeds the label texts not embedded yet and writes the project's
    semantic label index: the label texts and, per label, the centroid of the training documents answered with it
    (one label set per document, `resolved_answers`; the evaluation set never feeds anything learned). Returns how
    many texts were embedded. Run by the encode job and after each published model (answers added since are in it then).
    `documents`: (document ids, label ids of each) when the caller has just read them (the training snapshot);
    else read here."""
    if documents is None:
        documents = resolved_answers(Project.objects.get(pk=project_id), evaluation=False)
    return ml.label_index_build(project_id, label_search_texts(project_id), documents=documents)

"""Overlap: which documents several experts answer (Document.answers_wanted), and the agreement of their answers
(Document.agreement, Annotation.model_agreement) that the review queue and the browse filters read.

Which documents: a fixed pseudo-random share of the pool, by a multiplicative hash of the document id, so that the
choice is uniform, needs no stored random state, and raising the share only adds documents (none already answered
twice loses its overlap). With `overlap_evaluation` every evaluation document is one. The queue (services.queue)
serves a document's further answers, never to someone who answered it."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

from django.db.models import Case, F, IntegerField, Q, Value, When
from django.db.models.functions import Mod
from django.db.models.lookups import LessThan

from ..models import Document, Project

HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash constant (the golden ratio times 2**32)
HASH_MODULUS = 1_000_003  # a prime: the ids of one project land evenly in [0, HASH_MODULUS)


def _wanted(project: Project) -> Case:
    """Document.answers_wanted under the project's overlap settings, as an SQL expression."""
    threshold = round(project.overlap_share * HASH_MODULUS)
    overlap = Q(pk__in=[])  # never
    if threshold > 0:
        overlap = Q(LessThan(Mod(F("id") * Value(HASH_MULTIPLIER), Value(HASH_MODULUS)), Value(threshold)))
    if project.overlap_evaluation:
        overlap |= Q(is_evaluation=True)
    return Case(When(overlap, then=Value(project.overlap_k)), default=Value(1), output_field=IntegerField())


def overlap_waiting() -> Q:
    """On documents: answered, and waiting for further answers (0 < answers_count < answers_wanted); the first term
    matches the partial index document_overlap_open_idx."""
    return Q(answers_wanted__gt=1, answers_count__gte=1, answers_count__lt=F("answers_wanted"))


def overlap_apply(*, project: Project) -> int:
    """Sets every document's answers_wanted from the project's overlap settings (one UPDATE of the rows that
    change). Called after imports, settings changes and evaluation-set changes. Returns the rows changed."""
    wanted = _wanted(project)
    return Document.objects.filter(project=project).exclude(answers_wanted=wanted).update(answers_wanted=wanted)


def jaccard(a: Iterable[object], b: Iterable[object]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty answers ("none apply") agree: 1."""
    first, second = set(a), set(b)
    union = first | second
    return 1.0 if not union else len(first & second) / len(union)


def pairwise_agreement(answers: list[set[int]]) -> float | None:
    """The mean Jaccard agreement over every pair of answers; None below two answers."""
    pairs = list(combinations(answers, 2))
    if not pairs:
        return None
    return sum(jaccard(a, b) for a, b in pairs) / len(pairs)

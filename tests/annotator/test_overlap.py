"""Overlap (issue 18, point 1): a share of documents is answered by k different experts; the queue routes the further
answers to people who have not answered (never twice to the same one, never beyond k, also under concurrency); the
evaluation set can be fully overlapped; budgets show documents and answers; training reads gold > majority > latest."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from annotator import selectors, services
from annotator.exceptions import ProjectError
from annotator.models import Adjudication, AdjudicationLabel, Annotation, AuditEntry, Document, Label, QueueItem
from annotator.services.overlap import overlap_apply, pairwise_agreement

from .conftest import client_for, make_user, records


def _project(manager, n_docs: int, **settings):
    project = services.project_create(
        user=manager, name="Overlap", labels=["joy", "anger", "fear"], eval_size=0, retrain_every=10_000, **settings
    )
    services.documents_import(project=project, user=manager, records=records(n_docs))
    project.refresh_from_db()
    return project


def _members(project, *names: str):
    users = [make_user(name) for name in names]
    for user in users:
        services.member_add(project=project, username=user.username, role="annotator")
    return users


def _answer_next(project, user, labels=()):
    served = services.queue_lease_next(project=project, user=user)
    assert isinstance(served, services.Served), served
    services.annotation_submit(project=project, user=user, document_id=served.document.pk, labels=list(labels))
    return served


def test_the_overlap_share_picks_a_stable_uniform_sample_and_raising_it_only_adds_documents(manager):
    project = _project(manager, 400, overlap_share=0.25, overlap_k=3)
    wanted = dict(Document.objects.filter(project=project).values_list("id", "answers_wanted"))
    overlapping = {doc for doc, k in wanted.items() if k == 3}
    assert set(wanted.values()) == {1, 3}
    assert 60 <= len(overlapping) <= 140  # a quarter of 400, give or take the hash's spread
    services.project_update(project=project, user=manager, overlap_share=0.5)
    raised = set(Document.objects.filter(project=project, answers_wanted=3).values_list("id", flat=True))
    assert overlapping < raised and 150 <= len(raised) <= 250
    services.project_update(project=project, user=manager, overlap_share=0.0)
    assert not Document.objects.filter(project=project, answers_wanted__gt=1).exists()


def test_the_evaluation_set_can_be_fully_overlapped(manager):
    project = services.project_create(
        user=manager, name="Eval", labels=["joy"], eval_size=20, overlap_evaluation=True, overlap_k=2
    )
    services.documents_import(project=project, user=manager, records=records(300))  # the set: at most a tenth
    evaluation = Document.objects.filter(project=project, is_evaluation=True)
    assert evaluation.count() == 20
    assert set(evaluation.values_list("answers_wanted", flat=True)) == {2}
    assert set(
        Document.objects.filter(project=project, is_evaluation=False).values_list("answers_wanted", flat=True)
    ) == {1}


def test_an_overlap_document_goes_to_a_second_expert_first_and_never_back_to_the_first(manager):
    project = _project(manager, 12, overlap_share=1.0, overlap_k=2)
    alice, bob, carol = _members(project, "alice", "bob", "carol")
    first = _answer_next(project, alice, ["joy"])
    alices = {first.document.pk}
    # Alice never gets her own document again, however often she asks.
    for _ in range(3):
        served = _answer_next(project, alice, ["joy"])
        assert served.document.pk not in alices
        alices.add(served.document.pk)
    # Bob is served the documents waiting for a second answer before any new one.
    bobs = set()
    for _ in range(4):
        served = services.queue_lease_next(project=project, user=bob)
        assert isinstance(served, services.Served)
        assert served.document.pk in alices - bobs and served.item.strategy == "overlap"
        services.annotation_submit(project=project, user=bob, document_id=served.document.pk, labels=["anger"])
        bobs.add(served.document.pk)
    document = Document.objects.get(pk=first.document.pk)
    assert document.answers_count == 2 and document.agreement == 0.0
    assert not QueueItem.objects.filter(document__in=alices).exists()  # complete: they left the queue
    # k = 2 is respected: Carol never gets a document two experts have answered.
    seen = set()
    while isinstance(served := services.queue_lease_next(project=project, user=carol), services.Served):
        seen.add(served.document.pk)
        services.annotation_submit(project=project, user=carol, document_id=served.document.pk, labels=[])
    assert not seen & alices and len(seen) == 8
    assert max(Document.objects.filter(project=project).values_list("answers_count", flat=True)) == 2


def test_one_answer_documents_are_never_served_to_a_second_expert(manager):
    project = _project(manager, 3)
    alice, bob = _members(project, "alice", "bob")
    for _ in range(3):
        _answer_next(project, alice)
    nothing = services.queue_lease_next(project=project, user=bob)
    assert isinstance(nothing, services.NothingToServe) and nothing.reason == "empty"


@pytest.mark.django_db(transaction=True)
def test_under_concurrency_no_expert_gets_an_overlap_document_twice_and_k_holds(manager):
    """Six annotators race over 12 documents that each want 3 answers: every document ends with exactly 3 answers
    from 3 different people (the unique answer per person and document would raise on a second one)."""
    project = _project(manager, 12, overlap_share=1.0, overlap_k=3)
    users = _members(project, *(f"racer{i}" for i in range(6)))
    errors: list[BaseException] = []
    served_twice: list[tuple[str, int]] = []
    start = threading.Barrier(len(users))

    def annotate(user) -> None:
        mine: set[int] = set()
        try:
            start.wait()
            while True:
                served = services.queue_lease_next(project=project, user=user)
                if not isinstance(served, services.Served):
                    break
                if served.document.pk in mine:
                    served_twice.append((user.username, served.document.pk))
                    break
                mine.add(served.document.pk)
                services.annotation_submit(project=project, user=user, document_id=served.document.pk, labels=[])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert not served_twice
    assert max(Document.objects.filter(project=project).values_list("answers_count", flat=True)) <= 3
    # A racer stops when everything left is in someone else's hands; the ones left finish the rest in turn.
    for user in users:
        while isinstance(served := services.queue_lease_next(project=project, user=user), services.Served):
            services.annotation_submit(project=project, user=user, document_id=served.document.pk, labels=[])
    per_document = list(Document.objects.filter(project=project).values_list("answers_count", flat=True))
    assert per_document == [3] * 12
    assert Annotation.objects.filter(project=project).count() == 36


def test_budgets_show_documents_and_answers_apart(manager):
    project = _project(manager, 4, overlap_share=1.0, overlap_k=2, label_budget=10)
    alice, bob = _members(project, "alice", "bob")
    _answer_next(project, alice)
    _answer_next(project, bob)  # the second answer to Alice's document
    _answer_next(project, bob)  # a new document
    budget = selectors.budget_overview(project=project)
    assert budget["spent"] == 2 and budget["answers"] == 3 and budget["further_answers"] == 1
    page = client_for(manager).get(f"/projects/{project.pk}/")
    assert page.status_code == 200
    assert b'data-stat="answers">3<' in page.content and b'data-stat="further-answers">1<' in page.content


def test_training_reads_gold_then_the_majority_then_the_latest_answer(manager):
    project = _project(manager, 3, overlap_share=1.0, overlap_k=3)
    alice, bob, carol = _members(project, "alice", "bob", "carol")
    documents = list(Document.objects.filter(project=project).order_by("id"))
    joy, anger, fear = (Label.objects.get(project=project, name=n) for n in ("joy", "anger", "fear"))

    def answer(user, document, labels):
        Document.objects.filter(pk=document.pk).update(answers_count=0)  # answer directly, outside the queue
        services.annotation_submit(project=project, user=user, document_id=document.pk, labels=labels)

    # Document 0: three answers; joy 3 votes, anger 2, fear 1 -> joy and anger.
    answer(alice, documents[0], ["joy", "anger"])
    answer(bob, documents[0], ["joy", "anger", "fear"])
    answer(carol, documents[0], ["joy"])
    # Document 1: two answers that disagree: a tie on each label, the latest answer (Bob's) decides.
    answer(alice, documents[1], ["joy"])
    answer(bob, documents[1], ["fear"])
    # Document 2: one answer, then a reviewer's gold overrides it.
    answer(alice, documents[2], ["joy"])
    gold = Adjudication.objects.create(project=project, document=documents[2], reviewer=manager)
    AdjudicationLabel.objects.create(adjudication=gold, label=anger)
    doc_ids, _, rows = selectors.training_snapshot(project)
    resolved = dict(zip(doc_ids, rows, strict=True))
    assert sorted(resolved[documents[0].pk]) == sorted([joy.pk, anger.pk])
    assert resolved[documents[1].pk] == [fear.pk]
    assert resolved[documents[2].pk] == [anger.pk]


def test_agreement_and_model_agreement_are_kept_with_each_answer(manager):
    project = _project(manager, 2, overlap_share=1.0, overlap_k=3)
    alice, bob, carol = _members(project, "alice", "bob", "carol")
    served = _answer_next(project, alice, ["joy", "anger"])
    document = Document.objects.get(pk=served.document.pk)
    assert document.agreement is None  # one answer: nothing to agree with
    assert services.queue_lease_next(project=project, user=bob).document.pk == document.pk
    services.annotation_submit(project=project, user=bob, document_id=document.pk, labels=["joy"])
    document.refresh_from_db()
    assert document.agreement == pytest.approx(0.5)  # {joy, anger} vs {joy}
    assert services.queue_lease_next(project=project, user=carol).document.pk == document.pk
    services.annotation_submit(project=project, user=carol, document_id=document.pk, labels=["joy"])
    document.refresh_from_db()
    assert document.agreement == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert pairwise_agreement([set(), set()]) == 1.0 and pairwise_agreement([{1}]) is None


def test_every_answer_is_in_the_audit_log_with_before_and_after(manager):
    project = _project(manager, 2)
    (alice,) = _members(project, "alice")
    served = _answer_next(project, alice, ["joy"])
    services.annotation_submit(project=project, user=alice, document_id=served.document.pk, labels=["anger", "fear"])
    rows = list(AuditEntry.objects.filter(project=project, target="answer").order_by("id"))
    assert [(r.action, r.username) for r in rows] == [("create", "alice"), ("update", "alice")]
    assert rows[0].before is None and rows[0].after["labels"] == ["joy"]
    assert rows[1].before == {"labels": ["joy"]} and rows[1].after["labels"] == ["anger", "fear"]


def test_overlap_settings_are_validated_audited_and_bad_values_change_nothing(manager):
    project = _project(manager, 50)
    client = client_for(manager)
    url = f"/api/v1/projects/{project.pk}/"
    for bad in ({"overlap_share": 1.5}, {"overlap_k": 1}, {"overlap_k": 11}, {"overlap_evaluation": "maybe"}):
        response = client.patch(url, bad, format="json")
        assert response.status_code == 400, (bad, response.content)
    assert not Document.objects.filter(project=project, answers_wanted__gt=1).exists()
    with pytest.raises(ProjectError):
        services.project_update(project=project, overlap_share=-0.1)
    response = client.patch(url, {"overlap_share": 1.0, "overlap_k": 4}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["overlap_k"] == 4
    assert set(Document.objects.filter(project=project).values_list("answers_wanted", flat=True)) == {4}
    entry = AuditEntry.objects.get(project=project, target="settings")
    assert entry.username == "manager"
    assert entry.before == {"overlap_share": 0.0, "overlap_k": 2}
    assert entry.after == {"overlap_share": 1.0, "overlap_k": 4}


def test_overlap_apply_is_idempotent(manager):
    project = _project(manager, 30, overlap_share=0.5)
    assert overlap_apply(project=project) == 0

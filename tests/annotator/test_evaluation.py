"""The unbiased evaluation set: sampled from the pool, interleaved unmarked, never trained on, measured per version."""

from __future__ import annotations

import pytest

from annotator import ml, services
from annotator.models import Document, Job, ModelVersion, QueueItem

from .conftest import client_for, records
from .loop import answer_served

GOLD = [["joy"], ["anger"], ["sadness", "fear"], [], ["surprise"], ["joy", "surprise"]]


def _evaluation_ids(project) -> set[int]:
    return set(Document.objects.filter(project=project, is_evaluation=True).values_list("id", flat=True))


def test_the_set_is_a_sample_of_the_size_asked_and_labelled_members_stay(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(100))
    assert _evaluation_ids(project) == set()  # this fixture's project has eval_size 0
    services.project_update(project=project, eval_size=200)
    assert len(_evaluation_ids(project)) == 10  # at most a tenth of the documents by size
    services.project_update(project=project, eval_fraction=0.3)
    chosen = _evaluation_ids(project)
    assert len(chosen) == 30
    labelled = sorted(chosen)[:8]
    for doc_id in labelled:
        answer_served(project, annotator_user, doc_id, ["joy"])
    services.project_update(project=project, eval_fraction=None, eval_size=5)
    remaining = _evaluation_ids(project)
    assert set(labelled) <= remaining and len(remaining) == 8  # shrinking releases only unlabelled members
    services.documents_import(project=project, user=manager, records=records(50, start=100))
    assert len(_evaluation_ids(project)) == 8  # 15 documents allowed by size: 8 labelled members already


def test_the_manager_chooses_the_mix_and_annotators_cannot_tell(project, manager, annotator_user, annotator_client):
    services.documents_import(project=project, user=manager, records=records(40))
    services.project_update(project=project, eval_size=4, eval_share=0.25)
    evaluation = _evaluation_ids(project)
    served = []
    for _ in range(10):
        body = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
        assert body["strategy"] is None and body["score"] is None
        served.append(body["document"]["id"])
        answer = annotator_client.post(
            f"/api/v1/projects/{project.pk}/annotations/", {"document": served[-1], "labels": []}, format="json"
        )
        # Nor the answer, nor the undo/revise view (issue 17: it said "picked by evaluation").
        assert answer.status_code == 201 and answer.json()["strategy"] is None
        detail = annotator_client.get(f"/api/v1/projects/{project.pk}/annotations/{served[-1]}/").json()
        assert detail["strategy"] is None
    # One in four is an evaluation document (the 4th and the 8th) until the set is done.
    assert [doc in evaluation for doc in served] == [False, False, False, True] * 2 + [False, False]
    assert client_for(manager).get(f"/api/v1/projects/{project.pk}/next/").json()["strategy"] is not None
    services.member_add(project=project, username=annotator_user.username, role="manager")
    detail = annotator_client.get(f"/api/v1/projects/{project.pk}/annotations/{served[3]}/").json()
    assert detail["strategy"] == "evaluation"  # a manager sees why it was picked


def test_no_share_means_the_set_is_served_only_once_the_pool_is_done(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(20))
    services.project_update(project=project, eval_size=2, eval_share=0.0)
    evaluation = _evaluation_ids(project)
    served = []
    for _ in range(20):
        item = services.queue_lease_next(project=project, user=annotator_user)
        served.append(item.document.pk)
        services.annotation_submit(project=project, user=annotator_user, document_id=item.document.pk, labels=[])
    assert {doc in evaluation for doc in served[:18]} == {False} and set(served[18:]) == evaluation
    assert isinstance(services.queue_lease_next(project=project, user=annotator_user), services.NothingToServe)


@pytest.mark.usefixtures("tiny_encoder")
def test_evaluation_documents_are_never_trained_on_and_every_version_is_measured(
    project, manager, annotator_user, monkeypatch
):
    services.documents_import(project=project, user=manager, records=records(60))
    services.project_update(project=project, eval_size=6, retrain_every=1000)
    evaluation = _evaluation_ids(project)
    texts = dict(Document.objects.filter(project=project).values_list("id", "text"))
    for i, doc_id in enumerate(sorted(texts)):  # every document labelled, the evaluation set included
        answer_served(project, annotator_user, doc_id, GOLD[i % 6])
    trained_on: list[list[str]] = []
    real_train = ml.train

    def spy(**kwargs):
        trained_on.append(list(kwargs["texts"]))
        return real_train(**kwargs)

    monkeypatch.setattr(ml, "train", spy)
    Job.objects.all().delete()
    job, _ = services.job_request(project=project, kind="encode", reason="test")
    services.encode_run(job_id=job.pk)
    job, _ = services.job_request(project=project, kind="train", reason="test")
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    version = ModelVersion.objects.get(project=project)
    assert version.n_annotations == 54
    assert len(trained_on) == 1 and len(trained_on[0]) == 54
    # Texts are unique ("document number i ..."), so no evaluation text reached the learner.
    assert not {texts[doc_id] for doc_id in evaluation} & set(trained_on[0])
    result = version.evaluation
    assert result["n_documents"] == 6
    assert set(result["metrics"]) >= {"micro_f1", "macro_f1", "P@1", "P@3", "P@5", "nDCG@5", "PSP@5"}
    for metric in result["metrics"].values():
        assert 0.0 <= metric["low"] <= metric["value"] <= metric["high"] <= 1.0
    assert "per_label" not in result and sum(row["support"] for row in version.evaluation_per_label) >= 1


@pytest.mark.usefixtures("tiny_encoder")
def test_scoring_prepares_suggestions_for_evaluation_documents_outside_the_queue(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(50))
    services.project_update(project=project, eval_size=5, retrain_every=1000)
    evaluation = _evaluation_ids(project)
    pool = sorted(set(Document.objects.filter(project=project).values_list("id", flat=True)) - evaluation)
    for i, doc_id in enumerate(pool[:12]):
        services.annotation_submit(project=project, user=annotator_user, document_id=doc_id, labels=GOLD[i % 6])
    Job.objects.all().delete()
    for kind, runner in (("encode", services.encode_run), ("train", services.training_run)):
        job, _ = services.job_request(project=project, kind=kind, reason="test")
        runner(job_id=job.pk)
    Job.objects.filter(kind="score").delete()
    job, _ = services.job_request(project=project, kind="score", reason="test")
    services.scoring_run(job_id=job.pk)
    items = QueueItem.objects.filter(project=project)
    assert {i.document_id for i in items if i.strategy == "evaluation"} == evaluation
    assert all(i.suggestions for i in items if i.strategy == "evaluation")
    assert not {i.document_id for i in items if i.strategy != "evaluation"} & evaluation


@pytest.mark.usefixtures("tiny_encoder")
def test_successive_versions_are_compared_on_the_stop_set_and_re_measured_as_the_set_grows(
    project, manager, annotator_user
):
    services.documents_import(project=project, user=manager, records=records(80))
    services.project_update(project=project, eval_size=8, retrain_every=1000)
    evaluation = sorted(_evaluation_ids(project))
    pool = sorted(set(Document.objects.filter(project=project).values_list("id", flat=True)) - set(evaluation))

    def label(doc_ids):
        for i, doc_id in enumerate(doc_ids):
            answer_served(project, annotator_user, doc_id, GOLD[i % 6])

    def run(kind, runner):
        job, _ = services.job_request(project=project, kind=kind, reason="test")
        runner(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == "SUCCEEDED", job.error

    Job.objects.all().delete()
    run("encode", services.encode_run)
    label(pool[:12] + evaluation[:2])
    run("train", services.training_run)
    label(pool[12:24])
    run("train", services.training_run)
    first, second = ModelVersion.objects.filter(project=project).order_by("number")
    project.refresh_from_db()
    assert len(project.stop_set) == 72 and not set(project.stop_set) & set(evaluation)  # all 72 pool documents
    assert len(first.stop_predictions) == len(second.stop_predictions) == 72
    assert first.agreement is None and -1.0 <= second.agreement <= 1.0
    assert first.evaluation["n_documents"] == second.evaluation["n_documents"] == 2
    # Six more evaluation answers: scoring re-measures both versions on all eight.
    label(evaluation[2:])
    Job.objects.filter(kind="score").delete()
    run("score", services.scoring_run)
    assert {v.evaluation["n_documents"] for v in ModelVersion.objects.filter(project=project)} == {8}
    project.refresh_from_db()
    assert project.curve_fit["fingerprint"]  # the curve was refitted on the new measurements

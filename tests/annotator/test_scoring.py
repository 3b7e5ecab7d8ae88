"""Tests of annotator.services.scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import Job, ModelVersion, Project, QueueItem
from learner import strategies
from learner.strategies import DEFAULT_STRATEGY

from .conftest import LABELS
from .loop import GOLD, encode_all, label_some, run

pytestmark = pytest.mark.usefixtures("tiny_encoder")


def test_without_a_model_the_queue_holds_diverse_cold_start_picks(project, annotator_user, documents, settings):
    settings.ALABEL_COLD_START_SIZE = 8
    Job.objects.all().delete()
    run("encode", project, services.encode_run)
    Job.objects.filter(kind="score").delete()
    job = run("score", project, services.scoring_run)
    assert job.status == "SUCCEEDED", job.error
    items = QueueItem.objects.filter(project=project)
    assert items.count() == 8
    assert len({item.document_id for item in items}) == 8
    assert {item.strategy for item in items} == {"cold_start"} and {item.model_version for item in items} == {None}
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.item.strategy == "cold_start"


def test_the_next_version_replaces_the_queue_but_keeps_live_leases(project, manager, annotator_user, documents):
    encode_all(project)
    label_some(project, annotator_user, documents, n=6)
    services.training_run(job_id=Job.objects.get(kind="train").pk)
    services.scoring_run(job_id=Job.objects.get(kind="score", status="PENDING").pk)
    held = services.queue_lease_next(project=project, user=annotator_user)
    services.training_run(job_id=services.training_request(project=project, user=manager).pk)
    v2 = ModelVersion.objects.get(project=project, is_serving=True)
    assert v2.number == 2
    services.scoring_run(job_id=Job.objects.get(kind="score", status="PENDING").pk)
    assert QueueItem.objects.filter(pk=held.item.pk).exists()  # still in the annotator's hands
    others = QueueItem.objects.filter(project=project).exclude(pk=held.item.pk)
    assert {item.model_version_id for item in others} == {v2.pk}
    assert services.queue_lease_next(project=project, user=annotator_user).item.pk == held.item.pk


def test_a_model_published_while_scoring_gets_its_own_scoring_run(
    project, manager, annotator_user, documents, monkeypatch
):
    from annotator.services import scoring

    encode_all(project)
    label_some(project, annotator_user, documents, n=6)
    services.training_run(job_id=Job.objects.get(kind="train").pk)
    v1_scoring = Job.objects.get(kind="score", status="PENDING")
    real_items = scoring._model_items

    def publish_v2_meanwhile(*args, **kwargs):
        items = real_items(*args, **kwargs)
        services.training_run(job_id=services.training_request(project=project, user=manager).pk)
        return items

    monkeypatch.setattr(scoring, "_model_items", publish_v2_meanwhile)
    services.scoring_run(job_id=v1_scoring.pk)
    monkeypatch.undo()
    v1_scoring.refresh_from_db()
    assert v1_scoring.status == "SUCCEEDED" and v1_scoring.message.startswith("discarded")
    # v1's queue (its chunks) serves until v2's first chunk is in, then goes.
    follow_up = Job.objects.get(kind="score", status="PENDING")
    services.scoring_run(job_id=follow_up.pk)
    assert set(QueueItem.objects.filter(project=project).values_list("model_version__number", flat=True)) == {2}


def test_auto_covers_the_pool_first_and_pays_the_arm_with_its_picks_answers(project, annotator_user, documents):
    from learner import coverage

    project.queue_size = 4
    project.save()
    encode_all(project)
    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    version = ModelVersion.objects.get(project=project, is_serving=True)

    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)

    project.refresh_from_db()
    state = project.chooser_state
    assert state["arm"] == "probcover"  # 12 labelled documents: the low-budget phase covers the pool
    items = list(QueueItem.objects.filter(project=project).order_by("-score"))
    assert {item.strategy for item in items} == {"auto"} and len(items) == 4
    assert sorted(state["picked"]) == sorted(item.document_id for item in items)
    labelled = {doc.pk for doc in documents[:12]}
    pool = [doc.pk for doc in documents if doc.pk not in labelled]
    store = ml.embedding_store(project.pk)
    delta = strategies.probcover_delta(store.get(pool), len(LABELS), seed=version.number)
    expected = coverage.probcover(store.get(pool), store.get(sorted(labelled)), 4, delta=delta, seed=version.number)
    assert [item.document_id for item in items] == [pool[int(i)] for i in expected]
    assert state.get("chooser") is None  # nothing answered yet: nothing learnt
    # ProbCover's delta is remembered with the encoder and the pool it was computed on.
    assert state["probcover_delta"] == {
        "delta": delta,
        "encoder": store.fingerprint,
        "labels": len(LABELS),
        "documents": len(pool),
    }

    for item in items[:2]:  # two of its picks answered with a label nobody had used: a high reward
        services.annotation_submit(project=project, user=annotator_user, document_id=item.document_id, labels=["fear"])
    services.scoring_run(job_id=services.job_request(project=project, kind="score", reason="test")[0].pk)

    project.refresh_from_db()
    chooser = project.chooser_state["chooser"]
    assert chooser["names"] == ["probcover"] and chooser["pulls"] == [1.0] and chooser["totals"][0] > 0


def test_probcover_keeps_its_delta_until_the_encoder_or_the_pool_changes(project):
    from annotator.services import chooser

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    pool = np.vstack([centre + rng.normal(0, 0.3, (40, 8)) for centre in centres])  # three groups, 120 documents

    def delta(embeddings, encoder="e1"):
        return chooser.probcover_delta(project=project, encoder=encoder, embeddings=embeddings, n_labels=3, seed=1)

    computed = delta(pool)
    assert computed == strategies.probcover_delta(pool, 3, seed=1) and computed != 0.5
    project.refresh_from_db()
    assert project.chooser_state["probcover_delta"] == {
        "delta": computed,
        "encoder": "e1",
        "labels": 3,
        "documents": 120,
    }
    # What is remembered is used while the encoder and the label count stay and the pool moved by 10 % at most ...
    state = dict(project.chooser_state, probcover_delta=dict(project.chooser_state["probcover_delta"], delta=0.5))
    Project.objects.filter(pk=project.pk).update(chooser_state=state)
    assert delta(pool) == 0.5 and delta(pool[:108]) == 0.5
    # ... and computed again for another encoder or a pool that moved more.
    assert delta(pool, encoder="e2") == computed
    Project.objects.filter(pk=project.pk).update(chooser_state=state)
    assert delta(pool[:100]) == strategies.probcover_delta(pool[:100], 3, seed=1)
    project.refresh_from_db()
    assert project.chooser_state["probcover_delta"]["documents"] == 100


@pytest.mark.parametrize(
    "strategy", ["margin", "rarity+kmeans", "uncertainty+ranked", "decision", "positives+kmeans", "badge", "typiclust"]
)
def test_the_queue_holds_the_picks_of_the_project_strategy(project, annotator_user, documents, strategy):
    project.strategy, project.queue_size = strategy, 5
    project.save()
    encode_all(project)
    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    version = ModelVersion.objects.get(project=project, is_serving=True)

    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)

    items = list(QueueItem.objects.filter(project=project).order_by("-score"))
    assert len(items) == 5 and {item.strategy for item in items} == {strategy}
    # The same picks as learner.strategies.select on the serving model's outputs for the unlabelled pool.
    labelled = {doc.pk for doc in documents[:12]}
    pool = [doc for doc in documents if doc.pk not in labelled]
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))
    store = ml.embedding_store(project.pk)
    idx, probs = ml.shortlists(
        model, texts=[doc.text for doc in pool], X=store.get([doc.pk for doc in pool]), k=len(LABELS)
    )
    counts = np.zeros(len(model.labels))
    for i in range(12):
        for name in GOLD[i % len(GOLD)]:
            counts[model.labels.index(name)] += 1
    expected = strategies.select(
        strategy,
        5,
        idx=idx,
        probs=probs,
        n_labels=len(model.labels),
        threshold=version.config["threshold"],
        mean_cardinality=version.config["mean_cardinality"],
        label_counts=counts,
        embeddings=store.get([doc.pk for doc in pool]),
        labelled_embeddings=store.get(sorted(labelled)),
        per_label=ml.per_label_thresholds(model),
        seed=version.number,
    )
    assert [item.document_id for item in items] == [pool[int(i)].pk for i in expected]


def test_the_platform_default_follows_the_label_space():
    assert ml.resolve_strategy("default", 28) == (DEFAULT_STRATEGY, "auto", "auto") == ("auto", "auto", "auto")
    assert ml.resolve_strategy("cardinality+kmeans", 28) == ("cardinality+kmeans", "cardinality", "kmeans")
    assert ml.resolve_strategy("default", 41_218) == ("random+kmeans", "random", "kmeans")
    assert ml.resolve_strategy("rarity+ranked", 41_218) == ("rarity+ranked", "rarity", "ranked")
    assert "random+kmeans above 1,000 labels" in dict(ml.strategy_choices())["default"]


# --- the label-name prior --------------------------------------------------------------------------------------------
def test_before_any_label_cold_start_documents_carry_label_name_suggestions_unticked(
    project, annotator_user, documents, settings
):
    settings.ALABEL_COLD_START_SIZE = 6
    Job.objects.all().delete()
    job = run("encode", project, services.encode_run)
    assert job.message == "encoded 30 documents and 5 label names"
    assert ml.label_store(project.pk).dim is not None
    Job.objects.filter(kind="score").delete()
    assert run("score", project, services.scoring_run).status == "SUCCEEDED"

    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.item.strategy == "cold_start" and served.item.model_version is None
    names = [s["label"] for s in served.suggestions]
    assert sorted(names) == sorted(LABELS)  # every label scored from its name alone
    scores = [s["score"] for s in served.suggestions]
    assert scores == sorted(scores, reverse=True) and all(0 < p < 1 for p in scores)
    assert not any(s["preselected"] for s in served.suggestions)  # no evidence yet: nothing pre-ticked


def test_switching_the_prior_off_empties_cold_start_suggestions_and_forces_a_full_retrain(
    project, manager, annotator_user, documents, settings
):
    settings.ALABEL_COLD_START_SIZE = 6
    encode_all(project)
    Job.objects.all().delete()
    services.project_update(project=project, label_prior=False)
    score = Job.objects.get(project=project, kind="score", status="PENDING")  # re-scored without the prior
    services.scoring_run(job_id=score.pk)
    assert all(item.suggestions == [] for item in QueueItem.objects.filter(project=project))

    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    v1 = ModelVersion.objects.get(project=project)
    assert v1.config["label_prior"] is None
    services.project_update(project=project, label_prior=True)
    train = Job.objects.get(project=project, kind="train", status="PENDING")
    assert train.mode == "full"
    services.training_run(job_id=train.pk)
    v2 = ModelVersion.objects.get(project=project, is_serving=True)
    assert v2.number == 2 and v2.config["label_prior"]["labels_with_vectors"] == len(LABELS)
    with pytest.raises(ProjectError, match="label_prior must be true or false"):
        services.project_update(project=project, label_prior="yes")


def test_anchors_queue_first_the_nearest_document_of_the_label_without_positives(project, annotator_user, documents):
    from annotator.importing import ImportRecord
    from learner import coverage

    services.labels_add(project=project, labels=["disgust"])  # no document carries it yet
    named = [
        ImportRecord(1, "gross", "That meal was disgusting, utterly gross and revolting.", None),
        ImportRecord(2, "beach", "We spent a quiet afternoon walking along the beach.", None),
    ]
    services.documents_import(project=project, user=project.created_by, records=named)
    project.strategy = "anchors"
    project.queue_size = 3
    project.save()
    for job in Job.objects.filter(project=project, kind="encode", status="PENDING"):
        services.encode_run(job_id=job.pk)
    Job.objects.filter(project=project, kind="score", status="PENDING").delete()
    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    version = ModelVersion.objects.get(project=project, is_serving=True)

    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)

    items = list(QueueItem.objects.filter(project=project).order_by("-score"))
    labels = list(project.labels.order_by("id").values_list("name", "description"))
    vectors = ml.label_prior(project.pk, labels).vectors  # every label's, "disgust" too (the encode job's)
    labelled = {doc.pk for doc in documents[:12]}
    pool = sorted(doc.pk for doc in project.documents.all() if doc.pk not in labelled)
    embeddings = ml.embedding_store(project.pk).get(pool)
    # "disgust", which the serving model has never seen, has no positive: its nearest document comes first.
    nearest = int(np.argmax(embeddings @ vectors[5] / np.linalg.norm(embeddings, axis=1)))
    assert items[0].document_id == pool[nearest]
    counts = [4, 2, 2, 2, 4, 0]  # joy, anger, sadness, fear, surprise (GOLD on 12 documents), disgust
    expected = coverage.label_anchors(embeddings, vectors, counts, 3, seed=1)
    assert [item.document_id for item in items] == [pool[int(i)] for i in expected]
    assert version.number == 1 and {item.strategy for item in items} == {"anchors"}


def test_anchors_without_label_vectors_fail_the_scoring_job_with_a_reason(project, annotator_user, documents):
    import shutil

    project.strategy = "anchors"
    project.save()
    encode_all(project)
    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    shutil.rmtree(ml.label_store(project.pk).folder)  # the label names' vectors are gone
    Job.objects.filter(project=project, kind="score").delete()

    job = run("score", project, services.scoring_run)

    assert job.status == "FAILED" and "pick another strategy" in job.error

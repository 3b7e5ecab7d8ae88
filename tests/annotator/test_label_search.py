"""Tests of label search (annotator.selectors.labels.label_search): the textual tiers, transliteration, hyphens,
alternative names, deprecated labels, the semantic fallback with the real MiniLM encoder, and permissions."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from annotator import ml, services
from annotator.importing import ImportRecord
from annotator.models import Job, Label, LabelAlias
from annotator.selectors.labels import label_search, label_search_semantic
from annotator.services.label_vectors import label_index_rebuild, label_vectors_refresh
from annotator.text import MAX_VARIANTS, compact, fold, query_variants
from learner.label_index import LabelIndex, label_centroids

from .conftest import client_for, make_user


def _project(manager, labels, name="GND"):
    return services.project_create(user=manager, name=name, labels=labels, eval_size=0)


def _names(project, query, **kwargs):
    return [hit.name for hit in label_search(project=project, query=query, **kwargs)]


def _frequency(project, **counts):
    for name, n in counts.items():
        Label.objects.filter(project=project, name=name.replace("_", " ")).update(frequency=n)


def _alias(project, label, name):
    target = Label.objects.get(project=project, name=label)
    return LabelAlias.objects.create(project=project, label=target, name=name, search_key=fold(name))


def _ids(project):
    return dict(Label.objects.filter(project=project).values_list("name", "id"))


# --- ranking ---------------------------------------------------------------------------------------------------------
def test_an_exact_match_beats_a_label_the_model_scored(manager):
    project = _project(manager, ["approval", "disapproval", "admiration"])
    ids = _ids(project)
    hits = label_search(project=project, query="approval", scores={ids["disapproval"]: 0.9})
    assert [(h.name, h.score) for h in hits] == [("approval", None), ("disapproval", 0.9)]


def test_feminismus_beats_the_more_frequent_feminisierung(manager):
    project = _project(manager, ["Feminisierung", "Feminismuskritik", "Feminismus"])
    _frequency(project, Feminisierung=50, Feminismuskritik=40)
    assert _names(project, "feminismus") == ["Feminismus", "Feminismuskritik"]
    # Both start with "feminis": frequency decides among prefix matches.
    assert _names(project, "feminis") == ["Feminisierung", "Feminismuskritik", "Feminismus"]


def test_kohlenwasserstoffe_beats_kohlenwasserstoffbelastung(manager):
    project = _project(manager, ["Kohlenwasserstoffbelastung", "Kohlenwasserstoffe", "Chlorierte Kohlenwasserstoffe"])
    _frequency(project, Kohlenwasserstoffbelastung=30, Chlorierte_Kohlenwasserstoffe=90)
    assert _names(project, "kohlenwasserstoffe") == ["Kohlenwasserstoffe", "Chlorierte Kohlenwasserstoffe"]
    # A prefix match before a word that starts with the query, however frequent the latter.
    assert _names(project, "kohlenwasserstoff") == [
        "Kohlenwasserstoffbelastung",
        "Kohlenwasserstoffe",
        "Chlorierte Kohlenwasserstoffe",
    ]


def test_a_name_starting_with_the_query_beats_a_more_frequent_one_holding_it(manager):
    project = _project(manager, ["Geschichte der künstlichen Intelligenz", "Künstliche Intelligenz"])
    _frequency(project, Geschichte_der_künstlichen_Intelligenz=5)
    assert _names(project, "kunstliche int") == ["Künstliche Intelligenz", "Geschichte der künstlichen Intelligenz"]


def test_the_documents_score_breaks_the_tie_between_desintegration_politik_and_soziologie(manager):
    project = _project(manager, ["Desintegration (Politik)", "Desintegration (Soziologie)", "Integration"])
    assert _names(project, "desintegration") == ["Desintegration (Politik)", "Desintegration (Soziologie)"]
    ids = _ids(project)
    hits = label_search(project=project, query="desintegration", scores={ids["Desintegration (Soziologie)"]: 0.4})
    assert [h.name for h in hits] == ["Desintegration (Soziologie)", "Desintegration (Politik)"]


def test_tiers_exact_then_prefix_then_word_prefix_then_inside_whatever_the_frequency(manager):
    project = _project(manager, ["Superintelligenz", "Künstliche Intelligenz", "Intelligenztest", "Intelligenz"])
    _frequency(project, Superintelligenz=100, Künstliche_Intelligenz=50, Intelligenztest=10)
    hits = label_search(project=project, query="INTELLIGENZ")
    assert [h.name for h in hits] == ["Intelligenz", "Intelligenztest", "Künstliche Intelligenz", "Superintelligenz"]
    assert all(h.match == "name" for h in hits)


def test_an_empty_query_lists_the_scored_labels_then_the_frequent_ones(manager):
    project = _project(manager, ["a", "b", "c", "d"])
    _frequency(project, c=5, d=3)
    ids = _ids(project)
    hits = label_search(project=project, query="  ", limit=3, scores={ids["a"]: 0.2, ids["b"]: 0.6})
    assert [(h.name, h.score) for h in hits] == [("b", 0.6), ("a", 0.2), ("c", None)]


def test_the_limit_holds_with_scores_and_aliases(manager):
    project = _project(manager, [f"kunst {i}" for i in range(30)])
    _alias(project, "kunst 7", "Kunstwerk")
    ids = _ids(project)
    hits = label_search(project=project, query="kunst", limit=5, scores={ids["kunst 29"]: 0.5})
    assert len(hits) == 5 and hits[0].name == "kunst 29"


def test_many_deprecated_labels_among_the_best_do_not_hide_the_others(manager):
    project = _project(manager, [f"kunst {i:02d}" for i in range(30)] + ["Kunstwerk", "Kunstmarkt"])
    Label.objects.filter(project=project, name__startswith="kunst ").update(frequency=9, deprecated_at=timezone.now())
    _frequency(project, Kunstmarkt=2)
    assert _names(project, "kunst", limit=3) == ["Kunstmarkt", "Kunstwerk"]


# --- matching --------------------------------------------------------------------------------------------------------
def test_german_transliteration_finds_umlauts_both_ways(manager):
    project = _project(manager, ["Künstliche Intelligenz", "Kunst", "Mueller-Lyer-Täuschung", "Straße"])
    for query in ("kuenstliche", "kunstliche", "KÜNSTLICHE", "künstliche int", "kuenstliche intelligenz"):
        assert _names(project, query) == ["Künstliche Intelligenz"], query
    assert _names(project, "müller") == ["Mueller-Lyer-Täuschung"]
    assert _names(project, "taeuschung") == ["Mueller-Lyer-Täuschung"]
    assert _names(project, "strasse") == _names(project, "straße") == ["Straße"]


def test_hyphens_and_spaces_do_not_matter(manager):
    project = _project(manager, ["Nonprofit-Organisation", "Machine-Learning", "Profit", "Deep Machine Learning"])
    for query in ("non-profit", "nonprofit", "non profit", "Non-Profit-Organisation"):
        assert _names(project, query) == ["Nonprofit-Organisation"], query
    assert _names(project, "machine learning") == ["Machine-Learning", "Deep Machine Learning"]
    assert _names(project, "machine-learning") == ["Machine-Learning", "Deep Machine Learning"]


def test_a_query_without_the_names_separators_or_umlauts_still_finds_it(manager):
    project = _project(
        manager, ["Non-Profit-Marketing", "Mueller-Lyer-Täuschung", "Kinder- und Jugendliteratur", "Mull"]
    )
    # The name joins its words with hyphens the query leaves out, or spells the umlaut out where the query does not.
    assert _names(project, "nonprofit") == ["Non-Profit-Marketing"]
    assert _names(project, "nonprofitmarketing") == ["Non-Profit-Marketing"]
    assert _names(project, "muller") == ["Mueller-Lyer-Täuschung"]
    assert _names(project, "mullerlyer") == ["Mueller-Lyer-Täuschung"]
    assert _names(project, "kinderund") == ["Kinder- und Jugendliteratur"]
    # The whole name however joined is an exact match; a shorter query matches the names starting with it first.
    assert _names(project, "nonprofit marketing")[0] == "Non-Profit-Marketing"
    assert _names(project, "mull") == ["Mull", "Mueller-Lyer-Täuschung"]


def test_the_compact_key_is_kept_by_the_database_on_every_write(manager):
    project = _project(manager, ["Non-Profit-Organisation"])
    label = Label.objects.get(project=project)
    assert label.search_compact == compact("Non-Profit-Organisation") == "nonprofitorganisation"
    # An update() that bypasses save() (as the taxonomy's rename does) and a bulk alias write both keep it current.
    Label.objects.filter(pk=label.pk).update(
        name="Gemeinnützige Organisation", search_key=fold("Gemeinnützige Organisation")
    )
    label.refresh_from_db()
    assert label.search_compact == "gemeinnutzigeorganisation"
    alias = _alias(project, "Gemeinnützige Organisation", "Non-Profit-Org.")
    alias.refresh_from_db()
    assert alias.search_compact == "nonprofitorg"
    assert [(h.name, h.alias) for h in label_search(project=project, query="nonprofitorg")] == [
        ("Gemeinnützige Organisation", "Non-Profit-Org.")
    ]


def test_a_query_with_like_wildcards_matches_them_literally(manager):
    project = _project(manager, ["100% Bio", "1000 Bio", "a_b", "axb"])
    assert _names(project, "100%") == ["100% Bio"]
    assert _names(project, "a_b") == ["a_b"]


def test_an_alternative_name_finds_the_label_and_says_so(manager):
    project = _project(manager, ["Künstliche Intelligenz", "AIDS", "Kunst"])
    _alias(project, "Künstliche Intelligenz", "AI")
    _alias(project, "Künstliche Intelligenz", "Artificial intelligence")
    _frequency(project, AIDS=100)
    hits = label_search(project=project, query="ai")
    assert [(h.name, h.match, h.alias) for h in hits] == [
        ("Künstliche Intelligenz", "alias", "AI"),  # an exact alternative name beats a frequent prefix match
        ("AIDS", "name", ""),
    ]
    hits = label_search(project=project, query="artificial")
    assert [(h.name, h.alias) for h in hits] == [("Künstliche Intelligenz", "Artificial intelligence")]
    # Found by its name and by an alias: listed once, by the better match.
    assert [(h.name, h.match) for h in label_search(project=project, query="kunst")] == [
        ("Kunst", "name"),
        ("Künstliche Intelligenz", "name"),
    ]


def test_deprecated_labels_are_never_offered(manager):
    project = _project(manager, ["Kunst", "Kunstgeschichte", "Malerei"])
    _alias(project, "Kunstgeschichte", "Art history")
    _frequency(project, Kunstgeschichte=99)
    Label.objects.filter(project=project, name="Kunstgeschichte").update(deprecated_at=timezone.now())
    ids = _ids(project)
    assert _names(project, "kunst", scores={ids["Kunstgeschichte"]: 0.9}) == ["Kunst"]
    assert _names(project, "art history") == []
    assert _names(project, "", scores={ids["Kunstgeschichte"]: 0.9}) == ["Kunst", "Malerei"]


def test_each_spelling_of_a_query_is_searched_for(manager):
    assert query_variants("kuenstliche") == ["kuenstliche", "kunstliche"]
    assert query_variants("Müller") == ["muller", "mueller"]
    assert query_variants("non-profit") == ["non-profit", "non profit", "nonprofit"]
    assert query_variants("Straße") == ["strasse"]
    assert len(query_variants("a-b-c-d-e-f-g-h ue oe ae")) == MAX_VARIANTS  # bounded


# --- the semantic fallback (real MiniLM) ---------------------------------------------------------------------------
@pytest.fixture
def vehicles(manager):
    project = _project(manager, ["automobile", "banana", "carpet", "joy"], name="Things")
    Label.objects.filter(project=project, name="joy").update(description="happiness and delight")
    assert label_index_rebuild(project_id=project.pk) == 4  # embedded once, with the project's (base) encoder
    return project


@pytest.mark.slow
def test_a_synonym_the_text_cannot_find_is_found_by_meaning_after_the_textual_hits(vehicles):
    hits = label_search(project=vehicles, query="car", limit=5, semantic=True)
    assert (hits[0].name, hits[0].match) == ("carpet", "name")  # text first: "car" is inside "carpet"
    assert (hits[1].name, hits[1].match) == ("automobile", "semantic")
    assert "banana" not in [h.name for h in hits]  # not close enough to be offered
    hits = label_search(project=vehicles, query="cheerful", limit=5, semantic=True)
    assert [(h.name, h.match) for h in hits][:1] == [("joy", "semantic")]  # through the description
    assert _names(vehicles, "car", limit=5) == ["carpet"]  # not asked for: text only


@pytest.mark.slow
def test_the_semantic_index_follows_aliases_and_deprecation(vehicles):
    assert "joy" not in _names(vehicles, "lorry", semantic=True)
    _alias(vehicles, "joy", "lorry")  # an odd alternative name, to see that aliases are embedded
    assert label_index_rebuild(project_id=vehicles.pk) == 1  # only the new text is embedded
    hits = label_search_semantic(project=vehicles, query="lorry truck")
    assert hits and hits[0].name == "joy"
    Label.objects.filter(project=vehicles, name="automobile").update(deprecated_at=timezone.now())
    assert "automobile" not in _names(vehicles, "car", semantic=True)  # even before the index is rebuilt


PHYSICS = [
    "Quantum field theory for the working physicist: renormalisation and gauge symmetry",
    "Biographies of Nobel laureates in physics, from Einstein to Feynman",
    "Lectures on particle physics and the standard model",
]
BAKING = ["Sourdough bread at home: flour, starter and oven", "The craft bakery: cakes, pastry and bread rolls"]


@pytest.mark.slow
def test_an_english_query_finds_the_german_label_experts_gave_to_english_documents(manager):
    project = _project(manager, ["Physiker", "Bäckerei", "Lyrik", "Fahrzeug"])
    records = [ImportRecord(i, f"p{i}", text, ["Physiker"]) for i, text in enumerate(PHYSICS)]
    records += [ImportRecord(9 + i, f"b{i}", text, ["Bäckerei"]) for i, text in enumerate(BAKING)]
    label_index_rebuild(project_id=project.pk)  # before any answer: the German names alone
    assert "Physiker" not in [h.name for h in label_search_semantic(project=project, query="physicist", limit=1)]
    services.documents_import(project=project, user=manager, records=records)
    services.encode_run(job_id=Job.objects.get(project=project, kind=Job.Kind.ENCODE, status=Job.Status.PENDING).pk)
    # The encode job embedded the documents and added each answered label's documents to the index.
    hits = label_search(project=project, query="physicist", limit=3, semantic=True)
    assert [(h.name, h.match) for h in hits][:1] == [("Physiker", "semantic")]
    assert label_search(project=project, query="baker bread", limit=1, semantic=True)[0].name == "Bäckerei"


def test_the_label_centroids_average_each_labels_documents():
    X = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)  # (3 documents, 2)
    ids, vectors = label_centroids([[5], [5, 7], []], X)
    assert ids.tolist() == [5, 7]
    np.testing.assert_allclose(vectors, [[2**-0.5, 2**-0.5], [0, 1]], atol=1e-6)
    with pytest.raises(ValueError):
        label_centroids([[5]], X)


def test_the_encode_job_builds_the_index_of_names_and_alternative_names(manager, tiny_encoder):
    project = _project(manager, ["Kunst", "Malerei"])
    _alias(project, "Malerei", "Painting")
    services.encode_run(job_id=label_vectors_refresh(project=project).pk)
    index = LabelIndex.load(ml.label_index_folder(project.pk))
    ids = _ids(project)
    assert sorted(index.label_ids.tolist()) == sorted([ids["Kunst"], ids["Malerei"], ids["Malerei"]])
    assert index.fingerprint == ml.fingerprint(None)


def test_a_search_the_text_fills_never_loads_the_encoder(manager, monkeypatch):
    project = _project(manager, ["Kunst", "Kunstgeschichte"])

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr(ml, "encoder", no_encoder)
    assert _names(project, "kunst", limit=2, semantic=True) == ["Kunst", "Kunstgeschichte"]
    assert _names(project, "zzz", limit=2, semantic=True) == []  # no index built yet: nothing to embed against


def test_a_taxonomy_change_queues_the_encode_job_that_rebuilds_the_index(manager):
    project = _project(manager, ["Kunst"])
    Job.objects.filter(project=project).delete()
    label = Label.objects.get(project=project)
    job = label_vectors_refresh(project=project, label_ids=[label.pk])
    assert job.kind == Job.Kind.ENCODE and job.status == Job.Status.PENDING
    assert label_vectors_refresh(project=project, label_ids=[label.pk]).pk == job.pk  # coalesced


def test_the_label_index_returns_each_label_once_best_row_first():
    vectors = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0.8, 0.6, 0]], dtype=np.float32)  # (4, 3)
    index = LabelIndex(np.array([7, 8, 9, 8]), vectors, "fp")
    assert index.search(np.array([1, 0, 0]), k=2) == [(7, 1.0), (8, pytest.approx(0.8))]
    assert [pk for pk, _ in index.search(np.array([0, 1, 0]), k=5)] == [9, 8, 7]
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.array([1, 0]), k=1)


# --- the endpoint ----------------------------------------------------------------------------------------------------
def test_an_annotator_of_another_project_cannot_search_its_labels(manager, db):
    project = _project(manager, ["Kunst"])
    stranger = make_user("stranger")
    other = _project(manager, ["Other"], name="Other")
    services.member_add(project=other, username="stranger", role="annotator")
    response = client_for(stranger).get(f"/api/v1/projects/{project.pk}/labels/", {"q": "kunst"})
    assert response.status_code in (403, 404)
    assert "Kunst" not in response.content.decode()


def test_the_endpoint_ranks_an_exact_match_first(manager):
    project = _project(manager, ["Kohlenwasserstoffbelastung", "Kohlenwasserstoffe"])
    _frequency(project, Kohlenwasserstoffbelastung=9)
    found = client_for(manager).get(f"/api/v1/projects/{project.pk}/labels/", {"q": "kohlenwasserstoffe"}).json()
    assert [x["name"] for x in found] == ["Kohlenwasserstoffe"]

"""The annotate page without traps (issue 17): every label of a small set on screen, focus back on the document after
every submit, search answers tied to their query, "none apply" only on purpose, Backspace and Esc, nothing that
tells an evaluation document apart, and the served version agreeing with its suggestions.

No model is trained here: a serving ModelVersion and queue rows with fixed suggestions stand in for the scoring job's
output (as bench/bench_annotate.py does), so every suggestion and score below is known in advance.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from django.utils import timezone

from annotator import services
from annotator.importing import ImportRecord
from annotator.models import Annotation, Document, Label, ModelVersion, Project, QueueItem
from annotator.services.demo import demo_labels, demo_setup

from .conftest import login

pytestmark = [pytest.mark.browser]


def _project(tmp_path, name: str, labels: Sequence[object], texts: Sequence[str]) -> tuple[Project, dict[str, str]]:
    info = demo_setup(data_dir=tmp_path)
    manager = Project.objects.get(pk=info.project_id).created_by
    project = services.project_create(user=manager, name=name, labels=labels, eval_size=0, retrain_every=1000)
    services.member_add(project=project, username="demo-annotator", role="annotator")
    services.documents_import(
        project=project,
        user=manager,
        records=[ImportRecord(line=i, external_id=f"d{i}", text=t, labels=None) for i, t in enumerate(texts, 1)],
    )
    return project, info.credentials


def _serve(project: Project, suggestions: dict[str, list[tuple[str, float]]], *, number: int = 3) -> ModelVersion:
    """A serving model version `number` and one queue row per document (by text) with these suggestions."""
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        is_serving=True,
        artifact_path=f"projects/{project.pk}/models/test-v{number}",
        config={"threshold": 0.99},
        n_annotations=0,
        n_labels=project.labels.count(),
        data_cutoff=timezone.now(),
        device="cpu",
    )
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    for rank, (text, shown) in enumerate(suggestions.items()):
        document = Document.objects.get(project=project, text=text)
        QueueItem.objects.create(
            project=project,
            document=document,
            model_version=version,
            strategy="evaluation" if document.is_evaluation else project.strategy,
            score=1.0 - rank / 100,  # served in the order given
            suggestions=[[ids[name], score] for name, score in shown],
        )
    return version


def _open(page, live_server, project: Project, credentials: dict[str, str], text: str = "") -> None:
    login(page, live_server, "demo-annotator", credentials["demo-annotator"])
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    page.wait_for_function(
        "t => { const x = document.querySelector('#doc-text').textContent; return x !== 'Loading…' && x.includes(t); }",
        arg=text,
    )


def _toggle(page, name: str):
    return page.locator(f'#label-buttons .toggle[data-label="{name}"]')


def _chips(page) -> list[str]:
    return page.eval_on_selector_all("#chosen .chip span", "xs => xs.map(x => x.textContent)")


def _next_document(page, old: str) -> str:
    page.wait_for_function("t => document.querySelector('#doc-text').textContent !== t", arg=old)
    return page.text_content("#doc-text")


def _answer(project: Project, text: str) -> set[str]:
    annotation = Annotation.objects.get(document__project=project, document__text=text)
    return set(annotation.labels.values_list("name", flat=True))


GOEMOTIONS = [x["name"] for x in demo_labels()]


def test_a_small_label_set_is_on_screen_as_toggles_with_keys_before_the_first_model(
    page, live_server, transactional_db, tmp_path
):
    project, credentials = _project(tmp_path, "Small", demo_labels(), ["I am so sorry, that was my fault."])
    _open(page, live_server, project, credentials)
    toggles = page.locator("#label-buttons .toggle")
    assert toggles.count() == 28
    assert sorted(page.eval_on_selector_all("#label-buttons .name", "xs => xs.map(x => x.textContent)")) == sorted(
        GOEMOTIONS
    )
    keys = page.eval_on_selector_all("#label-buttons kbd", "xs => xs.map(x => x.textContent)")
    assert all(keys) and len(set(keys)) == 28  # every label has a key of its own
    assert _toggle(page, "joy").locator("kbd").text_content() == "j"  # its initial where it is free
    assert _toggle(page, "sadness").locator("kbd").text_content() == "⇧S"  # s alone skips
    assert page.text_content("#no-suggestions") == "No suggestions yet: the first model is not trained."
    # "remorse" without typing it from memory: its key, shown on its button.
    remorse = _toggle(page, "remorse")
    key = remorse.locator("kbd").text_content()
    press = "Shift+" + key[1:].lower() if key.startswith("⇧") else key
    page.keyboard.press(press)
    assert _chips(page) == ["remorse"] and remorse.get_attribute("aria-pressed") == "true"
    page.keyboard.press(press)
    assert _chips(page) == [] and remorse.get_attribute("aria-pressed") == "false"
    # The mouse: a click toggles, and the Enter after it submits (it does not press the button again).
    _toggle(page, "embarrassment").click()
    remorse.click()
    assert _chips(page) == ["embarrassment", "remorse"]
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Saved.')")
    assert _answer(project, "I am so sorry, that was my fault.") == {"embarrassment", "remorse"}


def test_deprecated_labels_are_not_offered_and_a_large_set_keeps_search(
    page, live_server, transactional_db, tmp_path, settings
):
    project, credentials = _project(tmp_path, "Small", demo_labels(), ["What a day."])
    Label.objects.filter(project=project, name="grief").update(deprecated_at=timezone.now())
    _open(page, live_server, project, credentials)
    names = page.eval_on_selector_all("#label-buttons .name", "xs => xs.map(x => x.textContent)")
    assert len(names) == 27 and "grief" not in names
    settings.ALABEL_LABEL_BUTTONS = 20  # 27 labels in use: search and suggestions only
    page.reload()
    page.wait_for_function("() => document.querySelector('#doc-text').textContent === 'What a day.'")
    assert not page.is_visible("#label-toggles") and page.locator("#label-buttons .toggle").count() == 0
    assert page.is_visible("#label-search")


def test_suggestions_are_marked_on_the_toggles_with_their_scores(page, live_server, transactional_db, tmp_path):
    text = "Thank you so much, this made my day!"
    project, credentials = _project(tmp_path, "Marked", demo_labels(), [text])
    _serve(project, {text: [("gratitude", 0.91), ("joy", 0.64), ("admiration", 0.12)]})
    _open(page, live_server, project, credentials, text)
    marks = page.eval_on_selector_all(
        "#label-buttons .toggle.suggested", "xs => xs.map(x => [x.dataset.label, x.querySelector('.mark').textContent])"
    )
    assert sorted(marks) == [["admiration", "0.12"], ["gratitude", "0.91"], ["joy", "0.64"]]
    assert page.locator("#label-buttons .toggle:not(.suggested) .mark:visible").count() == 0
    page.keyboard.press("1")  # suggestion 1 is the same label as its toggle
    assert _toggle(page, "gratitude").get_attribute("aria-pressed") == "true"
    assert page.text_content("#provenance") == "Document d1 · model v3"


def test_after_ctrl_enter_from_the_search_box_the_next_1_accepts_suggestion_1(
    page, live_server, transactional_db, tmp_path
):
    first, second = "First comment, thanks.", "Second comment, oh no."
    project, credentials = _project(tmp_path, "Focus", demo_labels(), [first, second])
    _serve(project, {first: [("gratitude", 0.8)], second: [("sadness", 0.7), ("fear", 0.3)]})
    _open(page, live_server, project, credentials, first)
    page.keyboard.press("/")
    page.keyboard.type("curiosity")
    page.wait_for_function(
        "() => (document.querySelector('#search-results li.active .name') || {}).textContent === 'curiosity'"
    )
    page.keyboard.press("Enter")  # adds it; the search box keeps the focus
    page.keyboard.press("Control+Enter")  # submit from the search box
    _next_document(page, first)
    assert _answer(project, first) == {"curiosity"}
    page.keyboard.press("1")  # accepts suggestion 1 of the new document, is not typed into the search box
    assert _chips(page) == ["sadness"]
    assert page.input_value("#label-search") == ""
    assert page.evaluate("() => document.activeElement.id") == "doc-text"
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    assert _answer(project, second) == {"sadness"}


# Answers for q=kind come back only when the test lets them go (window.releaseKind), to play a slow server.
HOLD_KIND = """
(() => {
  const original = window.fetch;
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  window.kindSent = 0; window.kindAnswered = 0;
  window.releaseKind = () => release();
  window.fetch = async (url, options) => {
    const response = await original(url, options);
    if (String(url).includes("q=kind&")) {
      window.kindSent += 1; await gate; window.kindAnswered += 1;
    }
    return response;
  };
})();
"""


def test_typing_kind_then_ergarten_then_enter_never_adds_the_stale_kind(page, live_server, transactional_db, tmp_path):
    labels = ["Kind", "Kinderarbeit", "Kindergarten", "Kinderbuch", "Kindheit"]
    project, credentials = _project(tmp_path, "Kinder", labels, ["Ein Tag im Kindergarten.", "Noch ein Tag."])
    _serve(project, {"Ein Tag im Kindergarten.": [], "Noch ein Tag.": []})  # in this order
    _open(page, live_server, project, credentials, "Kindergarten")
    # 1. The answer for "kind" is on screen, then "ergarten" and Enter at once: never the stale "Kind".
    page.keyboard.press("/")
    page.keyboard.type("kind")
    page.wait_for_function(
        "() => (document.querySelector('#search-results li.active .name') || {}).textContent === 'Kind'"
    )
    page.keyboard.type("ergarten")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chosen .chip').length > 0")
    assert _chips(page) == ["Kindergarten"]

    # 2. The answer for "kind" arrives late, after the one for "kindergarten": it is dropped, never added.
    page.keyboard.press("Control+Enter")
    _next_document(page, "Ein Tag im Kindergarten.")
    assert _answer(project, "Ein Tag im Kindergarten.") == {"Kindergarten"}
    page.evaluate(HOLD_KIND)
    page.keyboard.press("/")
    page.keyboard.type("kind")
    page.wait_for_function("() => window.kindSent === 1")
    page.keyboard.type("ergarten")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chosen .chip').length > 0")
    page.evaluate("() => window.releaseKind()")
    page.wait_for_function("() => window.kindAnswered === 1")
    assert _chips(page) == ["Kindergarten"]
    assert page.eval_on_selector_all("#search-results li .name", "xs => xs.map(x => x.textContent)") == []


def test_enter_with_nothing_chosen_asks_first_and_n_says_none_apply(page, live_server, transactional_db, tmp_path):
    texts = ["One.", "Two.", "Three."]
    project, credentials = _project(tmp_path, "None", ["a", "b"], texts)
    _open(page, live_server, project, credentials)
    first = page.text_content("#doc-text")
    page.keyboard.press("Enter")  # nothing chosen: a visible prompt, nothing recorded
    assert page.is_visible("#none-confirm") and "none apply" in page.text_content("#none-confirm")
    assert not Annotation.objects.filter(document__project=project).exists()
    page.keyboard.press("Enter")  # the second Enter records it
    second = _next_document(page, first)
    assert _answer(project, first) == set()
    assert not page.is_visible("#none-confirm")
    # A choice in between disarms the prompt: Enter, a label, Backspace, Enter asks again.
    page.keyboard.press("Enter")
    page.keyboard.press("/")
    page.keyboard.type("b")
    page.wait_for_function(
        "() => (document.querySelector('#search-results li.active .name') || {}).textContent === 'b'"
    )
    page.keyboard.press("Escape")  # Esc clears the query and closes the results, back on the document
    assert page.input_value("#label-search") == "" and page.locator("#search-results li").count() == 0
    assert page.evaluate("() => document.activeElement.id") == "doc-text"
    _toggle(page, "a").click()
    assert not page.is_visible("#none-confirm")
    page.keyboard.press("Backspace")  # removes the last chosen label
    assert _chips(page) == []
    page.keyboard.press("Enter")
    assert page.is_visible("#none-confirm")
    assert Annotation.objects.filter(document__project=project).count() == 1
    page.keyboard.press("n")  # the explicit key
    _next_document(page, second)
    assert _answer(project, second) == set()


def test_backspace_removes_the_last_chosen_label_and_an_empty_search_says_no_match(
    page, live_server, transactional_db, tmp_path
):
    project, credentials = _project(tmp_path, "Keys", demo_labels(), ["Wow, really?"])
    _open(page, live_server, project, credentials)
    for name in ("surprise", "curiosity", "confusion"):
        _toggle(page, name).click()
    page.keyboard.press("Backspace")
    assert _chips(page) == ["surprise", "curiosity"]
    page.keyboard.press("/")
    page.keyboard.type("zzzqx")
    page.wait_for_selector("#no-match:not([hidden])")
    assert page.text_content("#no-match") == "No label matches “zzzqx”."
    page.keyboard.press("Backspace")  # in the search box Backspace edits the query
    assert page.input_value("#label-search") == "zzzq" and _chips(page) == ["surprise", "curiosity"]
    page.keyboard.press("Escape")
    assert page.input_value("#label-search") == "" and not page.is_visible("#no-match")


def test_nothing_tells_the_annotator_a_document_is_from_the_evaluation_set(
    page, live_server, transactional_db, tmp_path
):
    text = "A held-out comment, great work."
    project, credentials = _project(tmp_path, "Blind", demo_labels(), [text])
    Document.objects.filter(project=project).update(is_evaluation=True)
    _serve(project, {text: [("admiration", 0.7)]})
    _open(page, live_server, project, credentials, text)
    assert QueueItem.objects.get(project=project, document__text=text).strategy == "evaluation"
    assert "evaluat" not in page.inner_text("#annotate").lower()
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    page.keyboard.press("u")  # the revising view
    page.wait_for_selector("#revising:not([hidden])")
    assert page.text_content("#doc-text") == text
    shown = page.inner_text("#annotate").lower()
    assert "evaluat" not in shown and "picked by" not in shown
    assert page.text_content("#provenance") == "Document d1 · suggested by model v3"


def test_a_document_served_with_model_v3_never_says_the_first_model_is_not_trained(
    page, live_server, transactional_db, tmp_path
):
    text = "Nothing the model recognised."
    project, credentials = _project(tmp_path, "Agree", demo_labels(), [text])
    _serve(project, {text: []})  # v3 served it with an empty shortlist
    _open(page, live_server, project, credentials, text)
    assert page.text_content("#provenance") == "Document d1 · model v3"
    assert page.text_content("#no-suggestions") == "Model v3 has no suggestions for this document."
    assert "not trained" not in page.inner_text("#annotate")


def test_browse_the_hierarchy_expand_a_label_and_choose_a_narrower_one(page, live_server, transactional_db, tmp_path):
    names = ["Sozialwissenschaften", "Soziologie", "Desintegration (Soziologie)", "Politik"]
    names += [f"Schlagwort {i:03d}" for i in range(101)]  # more roots than one page of the tree
    project, credentials = _project(tmp_path, "GND-like", names, ["Zerfall sozialer Bindungen."])
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    Label.objects.filter(pk__in=[ids["Soziologie"], ids["Politik"]]).update(parent=ids["Sozialwissenschaften"])
    Label.objects.filter(pk=ids["Desintegration (Soziologie)"]).update(parent=ids["Soziologie"])
    _open(page, live_server, project, credentials)
    page.click("#browse summary")
    page.wait_for_selector("#browse-list .browse-item")
    roots = page.eval_on_selector_all("#browse-list .choose", "xs => xs.map(x => x.textContent)")
    assert len(roots) == 100 and roots[:2] == ["Schlagwort 000", "Schlagwort 001"]
    assert page.text_content("#browse-more") == "Show more (2 left)"
    page.click("#browse-more")
    page.wait_for_function("() => document.querySelectorAll('#browse-list .browse-item').length === 102")
    assert not page.is_visible("#browse-more")
    page.get_by_role("button", name="Show the 2 narrower labels of Sozialwissenschaften").click()
    page.wait_for_function("() => document.querySelector('#browse-path strong').textContent === 'Sozialwissenschaften'")
    assert page.eval_on_selector_all("#browse-list .choose", "xs => xs.map(x => x.textContent)") == [
        "Politik",
        "Soziologie",
    ]
    page.get_by_role("button", name="Show the 1 narrower labels of Soziologie").click()
    page.wait_for_function("() => document.querySelector('#browse-path strong').textContent === 'Soziologie'")
    page.get_by_role("button", name="Choose Desintegration (Soziologie)").click()
    assert _chips(page) == ["Desintegration (Soziologie)"]
    page.get_by_role("button", name="Sozialwissenschaften", exact=True).click()  # back up the path
    page.wait_for_function("() => document.querySelector('#browse-path strong').textContent === 'Sozialwissenschaften'")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#empty:not([hidden])")
    assert _answer(project, "Zerfall sozialer Bindungen.") == {"Desintegration (Soziologie)"}


def test_the_hierarchy_browser_hides_without_a_hierarchy_or_a_tree(page, live_server, transactional_db, tmp_path):
    project, credentials = _project(tmp_path, "Flat", ["a", "b"], ["Text."])
    _open(page, live_server, project, credentials)
    assert not page.is_visible("#browse")
    Label.objects.filter(project=project, name="b").update(parent=Label.objects.get(project=project, name="a"))
    page.route("**/labels/tree/**", lambda route: route.fulfill(status=404, body="{}", content_type="application/json"))
    page.reload()
    page.wait_for_function("() => document.querySelector('#doc-text').textContent === 'Text.'")
    assert page.is_visible("#browse")  # the project has a hierarchy now
    page.click("#browse summary")
    page.wait_for_selector("#browse", state="hidden")  # but this server has no tree: the browser hides itself


@pytest.mark.slow
def test_search_finds_a_label_by_an_alternative_name_and_a_synonym_by_meaning(
    page, live_server, transactional_db, tmp_path
):
    """Issue 17: "machine learning"-style queries and synonyms found nothing. An alternative name shows which one
    matched; a word only close in meaning ("car") brings the label after every textual match, marked as such."""
    from annotator.models import LabelAlias
    from annotator.services.label_vectors import label_index_rebuild
    from annotator.text import fold

    labels = ["automobile", "carpet", "banana", "Maschinelles Lernen"] + [f"filler {i}" for i in range(70)]
    project, credentials = _project(tmp_path, "Search", labels, ["A red one drove by."])
    learning = Label.objects.get(project=project, name="Maschinelles Lernen")
    LabelAlias.objects.create(
        project=project, label=learning, name="machine learning", search_key=fold("machine learning")
    )
    label_index_rebuild(project_id=project.pk)  # what the encode job does (the real offline MiniLM)
    _open(page, live_server, project, credentials, "A red one")
    page.keyboard.press("/")
    page.keyboard.type("machine learning")
    page.wait_for_selector("#search-results .result .via")
    assert page.text_content("#search-results .result .name") == "Maschinelles Lernen"
    assert page.text_content("#search-results .result .via") == "via “machine learning”"
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    page.keyboard.type("car")
    page.wait_for_selector("#search-results .result.semantic")
    names = page.eval_on_selector_all("#search-results .result .name", "xs => xs.map(x => x.textContent)")
    assert names[0] == "carpet" and "automobile" in names[1:] and "banana" not in names
    assert "automobile" in page.eval_on_selector_all(
        "#search-results .result.semantic .name", "xs => xs.map(x => x.textContent)"
    )

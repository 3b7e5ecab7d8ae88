from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

# ------------------------------------------------------------------------------------------ lexical


def test_label_phrases_drop_qualifiers_and_one_letter_words() -> None:
    from learner.xmc.lexical import label_phrase

    assert label_phrase("Künstliche Intelligenz") == "künstliche intelligenz"
    assert label_phrase("Bank (Finanzwesen)") == "bank"
    assert label_phrase("C (Programmiersprache)") is None
    assert label_phrase("Industrie 4.0") == "industrie"
    assert label_phrase("a b c d e f g h") is None
    assert label_phrase("Pilze", stem=True) == label_phrase("Pilzen", stem=True) == "pilz"
    assert label_phrase("Haus", stem=True) == "haus"  # short words keep their ending


def test_stemming_lets_inflected_names_match() -> None:
    from learner.xmc.lexical import LabelNameMatcher, LexicalConfig

    names = ["Pilze", "Holz"]
    texts = ["Über Pilze\n\nText", "Holz\n\nText"]
    Y = sp.csr_matrix(np.array([[1, 0], [0, 1]], np.float32))
    stemmed = LabelNameMatcher.fit(names, texts, Y, LexicalConfig(stem=True))
    exact = LabelNameMatcher.fit(names, texts, Y, LexicalConfig(stem=False))

    assert stemmed.score(["Von Pilzen und Flechten"]).toarray()[0, 0] > 0
    assert exact.score(["Von Pilzen und Flechten"]).toarray()[0, 0] == 0


def test_label_name_matcher_learns_how_reliable_each_name_is(tmp_path) -> None:
    from learner.xmc.lexical import LabelNameMatcher, LexicalConfig

    names = ["Pilze", "Holz", "Künstliche Intelligenz", "Nie gesehen"]
    texts = [
        "Pilze im Wald\n\nüber Pilze",
        "Pilze und Holz\n\nText",
        "Möbel\n\nHolz ist ein Werkstoff",
        "Möbel\n\nHolz und Leim",
        "Ethik\n\nKünstliche Intelligenz in der Medizin",
    ]
    Y = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], np.float32))
    matcher = LabelNameMatcher.fit(names, texts, Y, LexicalConfig(prior_strength=1.0))

    scores = matcher.score(["Pilze\n\nHolz", "Neu\n\nnie gesehen, künstliche Intelligenz", "nichts"]).toarray()

    # title matches: Pilze 2 of 2, Holz 1 of 1; body matches: Holz 0 of 2, KI 1 of 1 (overall 1 of 3)
    title_p0, body_p0 = 1.0, 1 / 3
    assert scores[0, 0] == pytest.approx((2 + title_p0) / 3)
    assert scores[0, 1] == pytest.approx((0 + body_p0) / 3)  # "Holz" in the body of this document
    assert scores[1, 2] == pytest.approx((1 + body_p0) / 2)
    assert scores[1, 3] == pytest.approx(body_p0)  # never seen in training: the prior (zero-shot)
    assert np.all(scores[2] == 0)
    loaded = LabelNameMatcher.load(matcher.save(tmp_path / "matcher"))
    assert (loaded.score(texts) != matcher.score(texts)).nnz == 0
    with pytest.raises(ValueError, match="columns"):
        LabelNameMatcher.fit(names[:3], texts, Y)

    grown = matcher.with_labels(["Wald", "Leim"], ["Im Wald\n\nText", "Leim\n\nText"], sp.csr_matrix([[1, 0], [0, 0]]))
    scores = grown.score(["Wald\n\nLeim"]).toarray()
    assert grown.label_names == [*names, "Wald", "Leim"] and grown.priors == matcher.priors
    assert scores[0, 4] == pytest.approx((1 + title_p0) / 2)  # 1 hit of 1 title match, around the old p0
    assert scores[0, 5] == pytest.approx((0 + body_p0) / 1)  # matched only in a title before: body p0
    assert LabelNameMatcher.load(grown.save(tmp_path / "grown")).priors == pytest.approx(matcher.priors)


def test_blend_topk_adds_the_extra_scores_and_new_candidates() -> None:
    from learner.xmc.lexical import blend_topk

    indices = np.array([[0, 1, 2], [2, 1, 0]])
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.0]], dtype=np.float32)
    extra = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32))

    best, values = blend_topk(indices, scores, extra, 0.5, 3)

    assert best.tolist() == [[1, 0, 2], [2, 1, 3]]  # label 3 was not among the model's candidates
    np.testing.assert_allclose(values[0], [1.0 / 1.5, 0.9 / 1.5, 0.1 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(values[1], [0.8 / 1.5, 0.7 / 1.5, 0.5 / 1.5], rtol=1e-6)
    with pytest.raises(ValueError, match="exceeds"):
        blend_topk(indices, scores, extra, 0.5, 4)
    with pytest.raises(ValueError, match="rows"):
        blend_topk(indices, scores, extra[:1], 0.5, 2)


# Texts where the title is easy to get wrong: no separator, separator first or last, a name across the title
# boundary, inflected words, one-letter words inside a name, unicode whose lower case changes with context or
# length (final sigma, dotted I), underscores and digits, empty texts.
TRICKY_TEXTS = [
    "",
    "Künstliche Intelligenz",
    "\n\nKünstliche Intelligenz im Wald",
    "Künstliche\n\nIntelligenz und Pilze",
    "Von Pilzen\n\n",
    "Pilze im Wald\n\nüber Pilze\n\nHolz und Leim",
    "Holz, Leim. Über Pilze: Künstliche Intelligenz",
    "ΑΣ.Β ΑΣ\n\nας",
    "İstanbul und die Türkei\n\nİSTANBUL",
    "Wald a Holz\n\nwald_holz 4.0 Industrie 4.0",
    "Abstract: Holz\n\nLeim",
    "x",
]
TRICKY_NAMES = [
    "Künstliche Intelligenz",
    "Pilze",
    "Holz",
    "Wald",
    "Leim",
    "Wald Holz",
    "Holz und Leim",
    "ΑΣ",
    "İstanbul",
    "Türkei",
    "Industrie 4.0",
    "C (Programmiersprache)",
    "Intelligenz und Pilze im Wald über Pilze",
]


def _reference_matches(names, texts, config) -> tuple[np.ndarray, np.ndarray]:
    """Title and body matches (N, L) by scanning word lists, as the module docstring defines them."""
    import re

    from learner.features import stem_word
    from learner.xmc.lexical import label_phrase

    def words(text: str) -> list[str]:
        found = [w for w in re.findall(r"\w+", text.lower()) if len(w) >= 2]
        return [stem_word(w) for w in found] if config.stem else found

    def occurs(phrase: list[str], tokens: list[str]) -> bool:
        return any(tokens[i : i + len(phrase)] == phrase for i in range(len(tokens) - len(phrase) + 1))

    phrases = [label_phrase(name, config.max_words, config.stem) for name in names]
    title = np.zeros((len(texts), len(names)), dtype=np.float32)
    body = np.zeros((len(texts), len(names)), dtype=np.float32)
    for i, text in enumerate(texts):
        head = words(text.split(config.title_separator, 1)[0]) if config.title_separator else []
        whole = words(text)
        for j, phrase in enumerate(phrases):
            if phrase is None:
                continue
            in_title = occurs(phrase.split(" "), head)
            title[i, j] = in_title
            body[i, j] = occurs(phrase.split(" "), whole) and not in_title
    return title, body


@pytest.mark.parametrize("separator", ["\n\n", ".", "Abstract:", "\n", ""])
@pytest.mark.parametrize("stem", [True, False])
def test_matches_agree_with_a_plain_scan_of_title_and_text(separator: str, stem: bool) -> None:
    from learner.xmc.lexical import LabelNameMatcher, LexicalConfig

    config = LexicalConfig(title_separator=separator, stem=stem)
    matcher = LabelNameMatcher(config, TRICKY_NAMES, np.zeros(len(TRICKY_NAMES)), np.zeros(len(TRICKY_NAMES)))

    title, body = matcher.matches(TRICKY_TEXTS)

    expected_title, expected_body = _reference_matches(TRICKY_NAMES, TRICKY_TEXTS, config)
    assert title.dtype == body.dtype == np.float32
    np.testing.assert_array_equal(title.toarray(), expected_title)
    np.testing.assert_array_equal(body.toarray(), expected_body)
    assert (expected_title.any() or not separator) and expected_body.any()  # the texts exercise both kinds
    empty_title, empty_body = matcher.matches([])
    assert empty_title.shape == empty_body.shape == (0, len(TRICKY_NAMES))


@pytest.mark.parametrize("separator", ["\n\n", ".", "Abstract:", ""])
def test_word_counts_with_heads_equal_counting_heads_and_texts_apart(separator: str) -> None:
    from learner.features import TfidfConfig, TfidfFeaturizer, stem_word

    corpus = [*TRICKY_TEXTS, "Holz Leim Holz\n\nLeim Holz Leim", "pilzen pilze wald holz und leim"]
    featurizer = TfidfFeaturizer.fit(corpus, TfidfConfig(ngram_max=3, min_df=1))
    heads = [text.split(separator, 1)[0] if separator else "" for text in corpus]

    for word_map in (None, stem_word):
        head, whole = featurizer.word_counts_with_heads(corpus, separator, word_map=word_map)

        for got, expected in ((head, featurizer.word_counts(heads, word_map=word_map)), (whole, None)):
            expected = featurizer.word_counts(corpus, word_map=word_map) if expected is None else expected
            assert got.shape == expected.shape and got.dtype == expected.dtype
            np.testing.assert_array_equal(got.indptr, expected.indptr)
            np.testing.assert_array_equal(got.indices, expected.indices)
            np.testing.assert_array_equal(got.data, expected.data)

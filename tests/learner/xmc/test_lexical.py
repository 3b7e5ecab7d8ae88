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

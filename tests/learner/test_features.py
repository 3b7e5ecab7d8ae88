from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import scipy.sparse as sp

from learner.features import TfidfConfig, TfidfFeaturizer

TEXTS = [
    "Schäden durch Pilze an Fachwerkgebäuden",
    "Fachwerkbau und Denkmalpflege: Pilze im Holz",
    "Holzschutz im Fachwerkbau",
    "Künstliche Intelligenz und Digitalisierung der Arbeit",
    "Digitalisierung der Arbeit: Künstliche Intelligenz im Betrieb",
    "The comic hero in Greek comedy",
    "Comic heroes and the comic tradition",
]


def test_config_round_trips_through_json() -> None:
    config = TfidfConfig(
        ngram_max=3,
        max_features=1000,
        min_df=1,
        max_df=0.9,
        sublinear_tf=False,
        char_ngrams=(3, 5),
        char_max_features=2000,
        char_min_word_length=4,
        char_weight=0.5,
        lowercase=False,
    )

    restored = TfidfConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config
    assert restored.char_ngrams == (3, 5)  # JSON's list comes back as a tuple
    assert TfidfConfig.from_dict(TfidfConfig().to_dict()) == TfidfConfig()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ngram_max": 0}, "ngram_max"),
        ({"ngram_max": 7}, "ngram_max"),
        ({"max_features": 0}, "max_features"),
        ({"min_df": 0}, "min_df"),
        ({"max_df": 0.0}, "max_df"),
        ({"max_df": 1.5}, "max_df"),
        ({"sublinear_tf": "yes"}, "sublinear_tf"),
        ({"char_ngrams": (5, 3)}, "char_ngrams"),
        ({"char_ngrams": (0, 2)}, "char_ngrams"),
        ({"char_ngrams": [1, 2, 3]}, "char_ngrams"),
        ({"char_ngrams": "3-5"}, "char_ngrams"),
        ({"char_weight": 0}, "char_weight"),
        ({"char_min_word_length": 0}, "char_min_word_length"),
        ({"lowercase": 1}, "lowercase"),
        ({"title_weight": -1}, "title_weight"),
        ({"title_separator": ""}, "title_separator"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TfidfConfig(**changes)


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="ngrams_max"):
        TfidfConfig.from_dict({"ngrams_max": 2})


def test_features_match_scikit_learn_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    featurizer, matrix = TfidfFeaturizer.fit_transform(TEXTS, TfidfConfig(ngram_max=2, min_df=1))
    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    expected = reference.fit_transform(TEXTS)

    assert sorted(featurizer.word_vocabulary) == sorted(reference.vocabulary_)
    columns = [reference.vocabulary_[name] for name in featurizer.word_vocabulary]
    np.testing.assert_allclose(matrix.toarray(), expected[:, columns].toarray(), atol=1e-6)


def test_char_ngrams_match_scikit_learn_char_wb() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    config = TfidfConfig(ngram_max=1, min_df=1, char_ngrams=(3, 5))
    featurizer, matrix = TfidfFeaturizer.fit_transform(TEXTS, config)
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, dtype=np.float32)
    expected = reference.fit_transform([" ".join(re.findall(r"\w+", text.lower())) for text in TEXTS])
    chars = matrix[:, len(featurizer.word_vocabulary) :]

    assert sorted(featurizer.char_vocabulary) == sorted(reference.vocabulary_)
    columns = [reference.vocabulary_[name] for name in featurizer.char_vocabulary]
    np.testing.assert_allclose(normalize(chars).toarray(), expected[:, columns].toarray(), atol=1e-6)
    # both blocks weigh the same (char_weight 1): each row is half words, half chars
    words = matrix[:, : len(featurizer.word_vocabulary)]
    np.testing.assert_allclose(sp.linalg.norm(words, axis=1), math.sqrt(0.5), atol=1e-6)


def test_tfidf_values_by_hand() -> None:
    texts = ["apple apple banana", "banana cherry", "cherry"]
    featurizer, matrix = TfidfFeaturizer.fit_transform(texts, TfidfConfig(ngram_max=1, min_df=1))
    column = {name: j for j, name in enumerate(featurizer.word_vocabulary)}
    idf = {word: math.log(4 / (1 + df)) + 1 for word, df in {"apple": 1, "banana": 2, "cherry": 2}.items()}
    apple, banana = (1 + math.log(2)) * idf["apple"], 1 * idf["banana"]
    norm = math.hypot(apple, banana)

    row = matrix[0].toarray().ravel()
    assert row[column["apple"]] == pytest.approx(apple / norm, rel=1e-6)
    assert row[column["banana"]] == pytest.approx(banana / norm, rel=1e-6)
    assert row[column["cherry"]] == 0.0
    # columns by decreasing document frequency
    assert featurizer.word_vocabulary[-1] == "apple"


def test_transform_of_the_training_texts_equals_fit_transform() -> None:
    config = TfidfConfig(ngram_max=3, min_df=1, char_ngrams=(2, 4), char_min_word_length=3)
    featurizer, matrix = TfidfFeaturizer.fit_transform(TEXTS, config)

    again = featurizer.transform(TEXTS)

    assert again.dtype == np.float32 and again.shape == (len(TEXTS), featurizer.n_features)
    assert (again != matrix).nnz == 0
    assert "künstliche intelligenz und" in featurizer.word_vocabulary  # trigrams are built


def test_rows_are_unit_norm_and_unknown_texts_give_zero_rows() -> None:
    featurizer = TfidfFeaturizer.fit(TEXTS, TfidfConfig(min_df=1))

    matrix = featurizer.transform(["Pilze im Fachwerkbau", "", "zzz qqq", "x"])

    norms = sp.linalg.norm(matrix, axis=1)
    np.testing.assert_allclose(norms, [1.0, 0.0, 0.0, 0.0], atol=1e-6)
    assert featurizer.transform([]).shape == (0, featurizer.n_features)


def test_min_df_max_df_and_max_features_select_by_document_frequency() -> None:
    texts = ["common rare1", "common shared", "common shared", "common other"]

    assert set(TfidfFeaturizer.fit(texts, TfidfConfig(ngram_max=1, min_df=2)).word_vocabulary) == {"common", "shared"}
    assert TfidfFeaturizer.fit(texts, TfidfConfig(ngram_max=1, min_df=1, max_df=0.9)).word_vocabulary[0] == "shared"
    assert TfidfFeaturizer.fit(texts, TfidfConfig(ngram_max=1, min_df=1, max_features=2)).word_vocabulary == [
        "common",
        "shared",
    ]


def test_stemming_merges_inflected_forms_in_fit_transform_and_a_saved_featurizer(tmp_path) -> None:
    texts = ["Pilze im Wald", "Pilzen und Moose", "Bücher über Pilz"]
    plain = TfidfFeaturizer.fit(texts, TfidfConfig(ngram_max=1, min_df=1))
    stemmed, X = TfidfFeaturizer.fit_transform(texts, TfidfConfig(ngram_max=1, min_df=1, stem=True))

    assert {"pilze", "pilzen", "pilz"} <= set(plain.word_vocabulary)
    assert "pilz" in stemmed.word_vocabulary and not {"pilze", "pilzen"} & set(stemmed.word_vocabulary)
    column = stemmed.word_vocabulary.index("pilz")
    assert (X[:, column].toarray().ravel() > 0).all()  # all three documents share the stem
    assert (stemmed.transform(texts) != X).nnz == 0
    again = TfidfFeaturizer.load(stemmed.save(tmp_path / "stemmed"))
    assert again.config.stem and (again.transform(["Pilzen"]) != stemmed.transform(["Pilz"])).nnz == 0


def test_save_and_load_give_identical_matrices_without_pickle(tmp_path) -> None:
    config = TfidfConfig(ngram_max=2, min_df=1, char_ngrams=(3, 4))
    featurizer = TfidfFeaturizer.fit(TEXTS, config)
    folder = featurizer.save(tmp_path / "tfidf")

    loaded = TfidfFeaturizer.load(folder)

    assert sorted(p.name for p in folder.iterdir()) == ["idf.npy", "tfidf.json"]
    np.load(folder / "idf.npy", allow_pickle=False)
    assert loaded.config == config and loaded.n_features == featurizer.n_features
    new_texts = ["Fachwerkbau mit Pilzen", "comic hero", "unbekannte Wörter"]
    assert (loaded.transform(new_texts) != featurizer.transform(new_texts)).nnz == 0
    # saving again replaces the folder atomically
    featurizer.save(folder)
    assert TfidfFeaturizer.load(folder).n_features == featurizer.n_features


@pytest.mark.parametrize("texts", ["just one string", [1, 2], ["fine", None]])
def test_bad_texts_raise_value_error(texts) -> None:
    with pytest.raises(ValueError, match="string"):
        TfidfFeaturizer.fit(texts, TfidfConfig(min_df=1))


def test_fit_on_no_texts_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        TfidfFeaturizer.fit([], TfidfConfig())


def test_load_rejects_missing_and_corrupt_folders(tmp_path) -> None:
    with pytest.raises(ValueError, match="no saved TF-IDF"):
        TfidfFeaturizer.load(tmp_path / "nothing")
    folder = TfidfFeaturizer.fit(TEXTS, TfidfConfig(min_df=1)).save(tmp_path / "tfidf")
    (folder / "tfidf.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        TfidfFeaturizer.load(folder)


def test_progress_bar_can_be_switched_on(capsys) -> None:
    featurizer = TfidfFeaturizer.fit(TEXTS, TfidfConfig(min_df=1), progress=True)

    featurizer.transform(TEXTS, progress=True)

    assert "tfidf" in capsys.readouterr().err


def test_title_words_get_their_own_weighted_block_and_survive_save_and_load(tmp_path) -> None:
    texts = [
        "Pilze im Fachwerk\n\nSchäden an Holz durch Pilze und Insekten",
        "Holzschutz\n\nPilze, Insekten und Feuchte im Holz",
        "Fachwerk ohne Titeltrenner",
    ]
    plain, X_plain = TfidfFeaturizer.fit_transform(texts, TfidfConfig(ngram_max=1, min_df=1))
    titled, X = TfidfFeaturizer.fit_transform(texts, TfidfConfig(ngram_max=1, min_df=1, title_weight=0.5))

    names = list(titled.vocabulary())
    assert names[: plain.n_features] == list(plain.vocabulary())
    assert {"title:pilze", "title:fachwerk", "title:holzschutz", "title:titeltrenner"} <= set(names)
    assert "title:insekten" not in names  # only in the bodies
    assert X.shape == (3, titled.n_features) and titled.n_features > plain.n_features
    np.testing.assert_allclose(sp.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    column = {name: j for j, name in enumerate(names)}
    # the title block is the title's own TF-IDF row scaled by 0.5 before the row is normalised again
    row = X[0].toarray().ravel()
    title_block = row[plain.n_features :]
    text_block = row[: plain.n_features]
    assert np.linalg.norm(title_block) / np.linalg.norm(text_block) == pytest.approx(0.5, rel=1e-5)
    assert row[column["title:pilze"]] > 0 and row[column["title:holzschutz"]] == 0  # another document's title
    np.testing.assert_allclose(text_block / np.linalg.norm(text_block), X_plain[0].toarray().ravel(), atol=1e-6)
    # transform equals fit_transform, and so does a saved and loaded featurizer
    assert abs(titled.transform(texts) - X).max() < 1e-6
    again = TfidfFeaturizer.load(titled.save(tmp_path / "tfidf"))
    assert list(again.vocabulary()) == names
    assert abs(again.transform(texts) - X).max() < 1e-6

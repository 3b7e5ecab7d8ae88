"""Sparse TF-IDF features for the fast tier: word n-grams, optionally plus char n-grams of words.

``TfidfFeaturizer.fit(texts, TfidfConfig())`` -> ``transform(texts)`` gives a (N, F) float32 CSR matrix
whose rows are L2-normalised; ``save(dir)`` / ``load(dir)`` keep the vocabulary as JSON and the idf
weights as ``.npy`` (no pickle). numpy and scipy only: no torch, no scikit-learn.

Conventions (close to scikit-learn's ``TfidfVectorizer``, with the differences stated):
- tokens are the runs of word characters (``\\w+``) of the text, lower-cased when ``lowercase``; word
  n-grams use the tokens of at least 2 characters (scikit-learn's default ``token_pattern``) joined by
  one space, n = 1 .. ``ngram_max``;
- char n-grams (``char_ngrams=(lo, hi)``) are those of every token padded with one space on each side
  (scikit-learn's ``char_wb``), restricted to tokens of at least ``char_min_word_length`` characters;
  a token shorter than ``lo`` once padded counts as one n-gram;
- a feature is kept when it occurs in at least ``min_df`` and at most ``max_df`` (a fraction) of the
  training documents; of those, the ``max_features`` (``char_max_features``) with the highest document
  frequency (scikit-learn ranks by total count instead); ties go to the n-gram seen first;
- tf is 1 + ln(count) with ``sublinear_tf`` (else the count), idf = ln((1 + N) / (1 + df)) + 1;
- each block (words, chars) is L2-normalised, the char block is scaled by ``char_weight`` and the
  concatenation [words | chars] is L2-normalised again. A text without any known feature is a zero row;
- with ``title_weight`` > 0 a second featurizer (the same settings) is fitted on the texts' titles (the text
  before the first ``title_separator``; all of it without one) and its rows, scaled by ``title_weight``, are
  appended: [text | title_weight * title], L2-normalised again. A word of the title then counts twice, once
  as a title word: library records and papers put their subject in the title.
"""

from __future__ import annotations

import array
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner.artifacts import header, read_header, write_folder, write_json
from learner.config import Params, check_float, check_int

__all__ = ["TfidfConfig", "TfidfFeaturizer"]

logger = logging.getLogger(__name__)

FORMAT = "learner.TfidfFeaturizer"
FORMAT_VERSION = 1
CONFIG_FILE = "tfidf.json"
IDF_FILE = "idf.npy"
MAX_NGRAM = 6  # fitting cost grows with it: 2 or 3 for TF-IDF; longer phrases for label-name matching
_TOKEN = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")
_BATCH = 2048  # texts tokenised per step of the progress bar


@dataclass(frozen=True)
class TfidfConfig(Params):
    """How to build the TF-IDF vocabulary (see the module docstring for the exact conventions).

    ``ngram_max``: word n-grams 1..ngram_max (at most 6; 3 and more are slow to fit on big corpora).
    ``max_features``: word n-gram columns kept.
    ``min_df``: minimum number of training documents a feature occurs in; ``max_df``: maximum fraction.
    ``char_ngrams``: ``None`` (words only) or ``(lo, hi)``, the char n-gram lengths of padded words;
    ``char_max_features`` columns at most, from words of at least ``char_min_word_length`` characters,
    weighted ``char_weight`` against the word block (both blocks have unit norm before weighting).
    ``stem``: every token loses one inflection ending before anything is counted (``stem_word``: words of 5+
    letters, the stem keeps at least 4; German and English plurals and cases: Pilze/Pilzen -> pilz).
    ``title_weight`` > 0 appends a block of title features (the text before the first ``title_separator``)
    with that weight (see the module docstring).
    """

    ngram_max: int = 2
    max_features: int = 500_000
    min_df: int = 2
    max_df: float = 1.0
    sublinear_tf: bool = True
    char_ngrams: tuple[int, int] | None = None
    char_max_features: int = 500_000
    char_min_word_length: int = 1
    char_weight: float = 1.0
    lowercase: bool = True
    stem: bool = False
    title_weight: float = 0.0
    title_separator: str = "\n\n"

    def __post_init__(self) -> None:
        check_int("ngram_max", self.ngram_max, 1)
        if self.ngram_max > MAX_NGRAM:
            raise ValueError(f"ngram_max must be <= {MAX_NGRAM}; got {self.ngram_max}")
        check_int("max_features", self.max_features, 1)
        check_int("min_df", self.min_df, 1)
        check_float(self, "max_df", 0.0, 1.0, low_open=True, high_open=False)
        for name in ("sublinear_tf", "lowercase", "stem"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool; got {getattr(self, name)!r}")
        if self.char_ngrams is not None:
            value = self.char_ngrams
            if (
                not isinstance(value, tuple | list)
                or len(value) != 2
                or any(isinstance(n, bool) or not isinstance(n, int) for n in value)
            ):
                raise ValueError(f"char_ngrams must be None or a pair of integers (lo, hi); got {value!r}")
            lo, hi = value
            if not 1 <= lo <= hi <= 10:
                raise ValueError(f"char_ngrams must satisfy 1 <= lo <= hi <= 10; got {tuple(value)}")
            object.__setattr__(self, "char_ngrams", (lo, hi))  # JSON gives a list
        check_int("char_max_features", self.char_max_features, 1)
        check_int("char_min_word_length", self.char_min_word_length, 1)
        check_float(self, "char_weight", 0.0, float("inf"), low_open=True, high_open=True)
        check_float(self, "title_weight", 0.0, 100.0, low_open=False, high_open=False)
        if not isinstance(self.title_separator, str) or not self.title_separator:
            raise ValueError(f"title_separator must be a non-empty string; got {self.title_separator!r}")


# --------------------------------------------------------------------------------------------- helpers

# One inflection ending off words of 5+ letters (the stem keeps at least 4): Pilze/Pilzen -> pilz.
_ENDING = re.compile(r"(\w{4,}?)(?:ern|en|er|es|e|n|s)")


def stem_word(word: str) -> str:
    """``word`` without one inflection ending if it has 5+ letters (the stem keeps at least 4)."""
    if len(word) < 5:  # the pattern needs 4 + 1
        return word
    match = _ENDING.fullmatch(word)
    return match.group(1) if match else word


def check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not a single string")
    try:
        items = list(texts)
    except TypeError as exc:
        raise ValueError(f"texts must be a sequence of strings; got {type(texts).__name__}") from exc
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a string; got {type(text).__name__}")
    return items


def _char_grams(word: str, lo: int, hi: int) -> list[str]:
    """The char n-grams (lo..hi) of `` word `` with repetitions, as scikit-learn's ``char_wb``."""
    padded = f" {word} "
    size = len(padded)
    if size < lo:
        return [padded]
    return [padded[i : i + n] for n in range(lo, min(hi, size) + 1) for i in range(size - n + 1)]


def _tfidf_block(counts: sp.csr_matrix, idf: np.ndarray, sublinear: bool) -> sp.csr_matrix:
    """(N, F) raw counts -> L2-normalised float32 TF-IDF rows (in a new matrix)."""
    out = counts.astype(np.float32)  # (N, F)
    if sublinear:
        np.log(out.data, out=out.data)
        out.data += 1.0
    out.data *= idf[out.indices]
    _normalize_rows(out)
    return out


def _normalize_rows(matrix: sp.csr_matrix, scale: float = 1.0) -> None:
    """Scale every non-empty row of a CSR matrix to L2 norm ``scale``, in place."""
    if not matrix.nnz:
        return
    lengths = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    squares = np.bincount(rows, weights=matrix.data.astype(np.float64) ** 2, minlength=matrix.shape[0])
    norms = np.sqrt(squares)
    norms[norms == 0.0] = 1.0  # empty rows stay empty
    matrix.data *= np.repeat((scale / norms).astype(np.float32), lengths)


class _TypeIds(dict[str, int]):
    """Token type -> id; an unseen type gets the next id (so ids follow first occurrence)."""

    def __missing__(self, key: str) -> int:
        value = self[key] = len(self)
        return value


class _Tokenised:
    """Token type ids of a batch of texts: ``ids`` (T,) int64, ``doc`` (T,) int64, the type strings.

    With ``head_separator`` it also records each text's head (the text before the first separator, all of it
    without one, nothing when the separator is ""): ``head_tokens`` (N,) how many of a text's tokens are its
    head's. A head whose tokens are not a prefix of its text's (only when the lower-cased text does not start
    with the lower-cased head, or a word character follows it) is tokenised apart as an extra document
    N + j at the end of the stream, ``odd[j]`` the text it belongs to. ``n_docs`` counts the extra documents.
    """

    def __init__(
        self,
        texts: Sequence[str],
        lowercase: bool,
        progress: bool,
        desc: str,
        head_separator: str | None = None,
    ) -> None:
        types = _TypeIds()
        type_id = types.__getitem__
        ids = array.array("q")
        lengths = array.array("q")
        head_tokens = np.zeros(len(texts), dtype=np.int64)  # (N,)
        odd: list[int] = []
        odd_tokens: list[list[str]] = []
        findall = _TOKEN.findall
        with tqdm(total=len(texts), disable=not progress, desc=desc, unit="doc") as bar:
            for start in range(0, len(texts), _BATCH):
                for i in range(start, min(start + _BATCH, len(texts))):
                    text = texts[i].lower() if lowercase else texts[i]
                    if not head_separator:
                        tokens = findall(text)
                    else:
                        cut = texts[i].find(head_separator)
                        if cut < 0:
                            tokens = findall(text)
                            head_tokens[i] = len(tokens)
                        else:
                            head = texts[i][:cut].lower() if lowercase else texts[i][:cut]
                            if text.startswith(head) and not _WORD_CHAR.match(text, len(head)):
                                tokens = findall(head)
                                head_tokens[i] = len(tokens)
                                tokens.extend(findall(text, len(head)))
                            else:
                                tokens = findall(text)
                                odd.append(i)
                                odd_tokens.append(findall(head))
                    ids.extend(map(type_id, tokens))
                    lengths.append(len(tokens))
                bar.update(min(_BATCH, len(texts) - start))
        for tokens in odd_tokens:
            ids.extend(map(type_id, tokens))
            lengths.append(len(tokens))
        self.types = list(types)  # type id -> string
        self.ids = np.frombuffer(ids, dtype=np.int64) if len(ids) else np.zeros(0, dtype=np.int64)  # (T,)
        n_docs = len(texts) + len(odd)
        counts = np.frombuffer(lengths, dtype=np.int64) if n_docs else np.zeros(0, dtype=np.int64)  # (N + odd,)
        self.doc = np.repeat(np.arange(n_docs, dtype=np.int64), counts)  # (T,)
        self.n_docs = n_docs
        self.n_texts = len(texts)
        self.head_tokens = head_tokens
        self.odd = np.array(odd, dtype=np.int64)
        self._lengths = counts

    def in_head(self) -> np.ndarray:
        """(T,) bool: the token belongs to its text's head (every token of an extra head document does)."""
        starts = np.cumsum(self._lengths) - self._lengths  # (N + odd,)
        position = np.arange(len(self.ids), dtype=np.int64) - np.repeat(starts, self._lengths)  # (T,)
        limit = np.concatenate([self.head_tokens, np.full(len(self.odd), np.iinfo(np.int64).max, dtype=np.int64)])
        return position < limit[self.doc]

    def map_types(self, word_map: Callable[[str], str]) -> None:
        """Rewrite every token type with ``word_map``, merging the types that become equal."""
        merged: dict[str, int] = {}
        new_id = np.array([merged.setdefault(word_map(t), len(merged)) for t in self.types], dtype=np.int64)
        self.types = list(merged)
        self.ids = new_id[self.ids] if len(self.ids) else self.ids

    def type_lengths(self) -> np.ndarray:
        return np.fromiter((len(t) for t in self.types), dtype=np.int64, count=len(self.types))  # (V,)

    def word_stream(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids and documents of the tokens of >= 2 characters, in text order."""
        keep = self.type_lengths()[self.ids] >= 2  # (T,)
        return self.ids[keep], self.doc[keep]


def _ngram_codes(ids: np.ndarray, doc: np.ndarray, n_types: int, ngram_max: int) -> list[tuple[np.ndarray, ...]]:
    """For n = 1..ngram_max: (codes, docs, prefix_codes) of every n-gram occurrence.

    A unigram's code is its type id; an n-gram's code is ``prefix * n_types + last`` where ``prefix`` is
    the rank of its (n-1)-gram prefix among the distinct (n-1)-gram codes (``prefix_codes``, sorted).
    """
    out: list[tuple[np.ndarray, ...]] = [(ids, doc, np.zeros(0, dtype=np.int64))]
    codes = ids
    for n in range(2, ngram_max + 1):
        valid = doc[n - 1 :] == doc[: len(doc) - n + 1]  # the n tokens are in the same document
        prefix_codes, prefix_rank = np.unique(codes[: len(codes) - 1], return_inverse=True)
        codes = prefix_rank.astype(np.int64) * n_types + ids[n - 1 :]
        codes_valid = codes[valid[: len(codes)]] if len(codes) else codes
        docs_valid = doc[: len(doc) - n + 1][valid] if len(doc) >= n else doc[:0]
        out.append((codes_valid, docs_valid, prefix_codes))
        # The next order extends every position (valid or not); cross-document ones are filtered again.
    return out


def _doc_counts(codes: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct codes (G,), and for every (document, code) pair: document, code rank, count."""
    distinct, rank = np.unique(codes, return_inverse=True)
    key = doc * max(len(distinct), 1) + rank.astype(np.int64)
    pairs, counts = np.unique(key, return_counts=True)
    return distinct, pairs // max(len(distinct), 1), pairs % max(len(distinct), 1), counts


# ------------------------------------------------------------------------------------------ featurizer


class TfidfFeaturizer:
    """A fitted TF-IDF vocabulary: ``transform(texts)`` -> (N, F) float32 CSR, rows L2-normalised.

    Columns: the ``len(word_vocabulary)`` word n-grams, then the char n-grams (if configured), each block
    ordered by decreasing training document frequency. ``n_features`` = F.
    """

    def __init__(
        self,
        config: TfidfConfig,
        word_vocabulary: list[str],
        word_idf: np.ndarray,
        char_vocabulary: list[str],
        char_idf: np.ndarray,
        n_train_documents: int,
    ) -> None:
        if len(word_vocabulary) != len(word_idf) or len(char_vocabulary) != len(char_idf):
            raise ValueError("vocabulary and idf lengths differ")
        self.config = config
        self.word_vocabulary = word_vocabulary
        self.char_vocabulary = char_vocabulary
        self.word_idf = np.asarray(word_idf, dtype=np.float32)  # (Fw,)
        self.char_idf = np.asarray(char_idf, dtype=np.float32)  # (Fc,)
        self.n_train_documents = n_train_documents
        self.title: TfidfFeaturizer | None = None  # the title block's featurizer (config.title_weight > 0)
        self._build_lookup()

    def __repr__(self) -> str:
        return (
            f"TfidfFeaturizer(words={len(self.word_vocabulary)}, chars={len(self.char_vocabulary)}, "
            f"ngram_max={self.config.ngram_max}, char_ngrams={self.config.char_ngrams})"
        )

    @property
    def n_features(self) -> int:
        own = len(self.word_vocabulary) + len(self.char_vocabulary)
        return own + (self.title.n_features if self.title is not None else 0)

    def _titles(self, texts: list[str]) -> list[str]:
        return [text.split(self.config.title_separator, 1)[0] for text in texts]

    def _with_titles(self, matrix: sp.csr_matrix, titles: sp.csr_matrix) -> sp.csr_matrix:
        """[text | title_weight * title], rows L2-normalised (each block has unit rows or zero rows)."""
        titles = titles.copy()
        titles.data *= np.float32(self.config.title_weight)
        combined = sp.hstack([matrix, titles], format="csr", dtype=np.float32)  # (N, F + Ft)
        _normalize_rows(combined)
        combined.sort_indices()
        return combined

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, texts: Sequence[str], config: TfidfConfig | None = None, *, progress: bool = False) -> Self:
        """Learn the vocabulary and idf weights from ``texts``; raises ``ValueError`` on no texts."""
        featurizer, _ = cls._fit_all(texts, config or TfidfConfig(), progress=progress, want_matrix=False)
        return featurizer

    @classmethod
    def fit_transform(
        cls, texts: Sequence[str], config: TfidfConfig | None = None, *, progress: bool = False
    ) -> tuple[Self, sp.csr_matrix]:
        """``fit`` and the (N, F) matrix of the same texts, without tokenising them twice."""
        featurizer, matrix = cls._fit_all(texts, config or TfidfConfig(), progress=progress, want_matrix=True)
        assert matrix is not None
        return featurizer, matrix

    @classmethod
    def _fit_all(
        cls, texts: Sequence[str], config: TfidfConfig, *, progress: bool, want_matrix: bool
    ) -> tuple[Self, sp.csr_matrix | None]:
        """``_fit``, plus the title block's featurizer when ``config.title_weight`` > 0."""
        featurizer, matrix = cls._fit(texts, config, progress=progress, want_matrix=want_matrix)
        if config.title_weight > 0:
            titles = featurizer._titles(check_texts(texts))
            title_config = TfidfConfig.from_dict({**config.to_dict(), "title_weight": 0.0})
            featurizer.title, title_matrix = cls._fit(titles, title_config, progress=progress, want_matrix=want_matrix)
            if matrix is not None and title_matrix is not None:
                matrix = featurizer._with_titles(matrix, title_matrix)
        return featurizer, matrix

    @classmethod
    def _fit(
        cls, texts: Sequence[str], config: TfidfConfig, *, progress: bool, want_matrix: bool
    ) -> tuple[Self, sp.csr_matrix | None]:
        items = check_texts(texts)
        if not items:
            raise ValueError("texts is empty: cannot fit a vocabulary on no documents")
        n_docs = len(items)
        tokens = _Tokenised(items, config.lowercase, progress, "tfidf: tokenise")
        if config.stem:
            tokens.map_types(stem_word)
        max_df_docs = config.max_df * n_docs
        ids, doc = tokens.word_stream()
        n_types = len(tokens.types)

        # Word n-grams: document frequency of every distinct n-gram, per order.
        candidates = []  # (order, distinct codes, df, pair doc, pair rank, pair count, prefix codes)
        for order, (codes, docs, prefix_codes) in enumerate(_ngram_codes(ids, doc, n_types, config.ngram_max), 1):
            distinct, pair_doc, pair_rank, pair_count = _doc_counts(codes, docs)
            df = np.bincount(pair_rank, minlength=len(distinct))  # (G,)
            candidates.append((order, distinct, df, pair_doc, pair_rank, pair_count, prefix_codes))
        orders = np.concatenate([np.full(len(c[1]), c[0], dtype=np.int64) for c in candidates])
        ranks = np.concatenate([np.arange(len(c[1]), dtype=np.int64) for c in candidates])
        dfs = np.concatenate([c[2] for c in candidates])
        eligible = np.flatnonzero((dfs >= config.min_df) & (dfs <= max_df_docs))
        # Highest df first; ties: lower order, then the n-gram whose prefix/type appeared first.
        chosen = eligible[np.lexsort((ranks[eligible], orders[eligible], -dfs[eligible]))][: config.max_features]
        column_of = [np.full(len(c[1]), -1, dtype=np.int64) for c in candidates]  # per order: rank -> column
        for col, index in enumerate(chosen):
            column_of[orders[index] - 1][ranks[index]] = col
        word_vocabulary = cls._ngram_strings(candidates, orders[chosen], ranks[chosen], tokens.types, n_types)
        word_df = dfs[chosen]
        word_idf = (np.log((1.0 + n_docs) / (1.0 + word_df)) + 1.0).astype(np.float32)

        word_counts = None
        if want_matrix:
            rows, cols, vals = [], [], []
            for (_, _, _, pair_doc, pair_rank, pair_count, _), column in zip(candidates, column_of, strict=True):
                col = column[pair_rank]
                keep = col >= 0
                rows.append(pair_doc[keep])
                cols.append(col[keep])
                vals.append(pair_count[keep])
            word_counts = sp.csr_matrix(
                (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n_docs, len(word_vocabulary)),
            )
        del candidates, column_of

        char_vocabulary: list[str] = []
        char_idf = np.zeros(0, dtype=np.float32)
        char_counts = None
        if config.char_ngrams is not None:
            doc_type = cls._doc_type_counts(tokens)  # (N, V)
            gram_matrix, grams = cls._type_grams(tokens.types, config, None)  # (V, G)
            counts = (doc_type @ gram_matrix).tocsc()  # (N, G)
            df = np.diff(counts.indptr)  # (G,)
            eligible = np.flatnonzero((df >= config.min_df) & (df <= max_df_docs))
            chosen = eligible[np.lexsort((eligible, -df[eligible]))][: config.char_max_features]
            char_vocabulary = [grams[i] for i in chosen]
            char_idf = (np.log((1.0 + n_docs) / (1.0 + df[chosen])) + 1.0).astype(np.float32)
            if want_matrix:
                char_counts = counts[:, chosen].tocsr()
            del counts

        featurizer = cls(config, word_vocabulary, word_idf, char_vocabulary, char_idf, n_docs)
        logger.info(
            "fitted TF-IDF on %d documents: %d word and %d char features",
            n_docs,
            len(word_vocabulary),
            len(char_vocabulary),
        )
        if not want_matrix:
            return featurizer, None
        assert word_counts is not None
        return featurizer, featurizer._combine(word_counts, char_counts)

    @staticmethod
    def _ngram_strings(
        candidates: list[tuple[Any, ...]], orders: np.ndarray, ranks: np.ndarray, types: list[str], n_types: int
    ) -> list[str]:
        """The strings of the chosen n-grams (order, rank), decoding the prefix-rank codes."""

        def decode(order: int, code: int) -> str:
            if order == 1:
                return types[code]
            prefix_rank, last = divmod(code, n_types)
            prefix_code = int(candidates[order - 1][6][prefix_rank])
            return f"{decode(order - 1, prefix_code)} {types[last]}"

        distinct_by_order = [c[1] for c in candidates]
        return [decode(int(o), int(distinct_by_order[o - 1][r])) for o, r in zip(orders, ranks, strict=True)]

    @staticmethod
    def _doc_type_counts(tokens: _Tokenised) -> sp.csr_matrix:
        """(N, V) how often each token type occurs in each document."""
        data = np.ones(len(tokens.ids), dtype=np.float32)
        matrix = sp.csr_matrix((data, (tokens.doc, tokens.ids)), shape=(tokens.n_docs, len(tokens.types)))
        matrix.sum_duplicates()
        return matrix

    @staticmethod
    def _type_grams(
        types: Sequence[str], config: TfidfConfig, vocabulary: dict[str, int] | None
    ) -> tuple[sp.csr_matrix, list[str]]:
        """(V, G) char n-gram counts of each token type, and the n-gram strings (columns).

        With ``vocabulary`` the columns are its entries and unknown n-grams are dropped; without, every
        n-gram gets a column in order of first appearance.
        """
        assert config.char_ngrams is not None
        lo, hi = config.char_ngrams
        min_length = config.char_min_word_length
        indptr = np.zeros(len(types) + 1, dtype=np.int64)
        indices = array.array("q")
        if vocabulary is None:
            grams: dict[str, int] = {}
            setdefault = grams.setdefault
            for i, word in enumerate(types):
                if len(word) >= min_length:
                    indices.extend([setdefault(g, len(grams)) for g in _char_grams(word, lo, hi)])
                indptr[i + 1] = len(indices)
            names = list(grams)
        else:
            get = vocabulary.get
            for i, word in enumerate(types):
                if len(word) >= min_length:
                    found = [get(g, -1) for g in _char_grams(word, lo, hi)]
                    indices.extend([j for j in found if j >= 0])
                indptr[i + 1] = len(indices)
            names = []
        cols = np.frombuffer(indices, dtype=np.int64) if len(indices) else np.zeros(0, dtype=np.int64)
        n_cols = len(names) if vocabulary is None else len(vocabulary)
        matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(types), n_cols))
        matrix.sum_duplicates()
        return matrix, names

    # --------------------------------------------------------------- transform

    def _build_lookup(self) -> None:
        """Index the word vocabulary for vectorised look-ups.

        Every word of a feature gets an id; the code of a 1-gram is its word id, the code of a k-gram is
        ``rank * n_words + last word`` where ``rank`` is the position of its (k-1)-gram prefix's code in
        the sorted table of the codes of all (k-1)-gram prefixes of features of length >= k. Per order k:
        (sorted feature codes, their columns, the prefix table).
        """
        words: dict[str, int] = {}
        entries = [feature.split(" ") for feature in self.word_vocabulary]
        for parts in entries:
            for word in parts:
                words.setdefault(word, len(words))
        n_words = max(len(words), 1)
        self._words = words
        self._n_words = n_words
        tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        lengths = np.array([len(parts) for parts in entries], dtype=np.int64)  # (Fw,)
        # code[j]: the code of entries[j][:k] at step k (for entries of length >= k)
        code = np.array([words[parts[0]] for parts in entries], dtype=np.int64)  # (Fw,)
        for k in range(1, self.config.ngram_max + 1):
            if k == 1:
                prefix_codes = np.zeros(0, dtype=np.int64)
            else:
                longer = lengths >= k
                prefix_codes = np.unique(code[longer])
                last = np.array([words[parts[k - 1]] if len(parts) >= k else 0 for parts in entries], dtype=np.int64)
                rank = np.searchsorted(prefix_codes, code)
                code = np.where(longer, rank * n_words + last, -1)
            exact = np.flatnonzero(lengths == k)
            order = np.argsort(code[exact], kind="stable")
            tables.append((code[exact][order], exact[order], prefix_codes))
        self._tables = tables
        # direct look-ups by word id: the column of each 1-gram feature, the rank of each word among the first
        # words of the longer features (-1: none); they answer order 1 and 2 without a search
        self._word_column = np.full(n_words, -1, dtype=np.int64)  # (n_words,)
        self._word_column[tables[0][0][::-1]] = tables[0][1][::-1]
        self._word_prefix_rank = np.full(n_words, -1, dtype=np.int64)  # (n_words,)
        if len(tables) > 1:
            self._word_prefix_rank[tables[1][2]] = np.arange(len(tables[1][2]), dtype=np.int64)
        self._char_lookup = {gram: j for j, gram in enumerate(self.char_vocabulary)}

    def transform(self, texts: Sequence[str], *, progress: bool = False) -> sp.csr_matrix:
        """TF-IDF rows (N, F) float32 CSR, L2-normalised, of ``texts`` (an empty list gives (0, F))."""
        items = check_texts(texts)
        if self.title is not None:
            return self._with_titles(self._transform(items, progress), self.title.transform(self._titles(items)))
        return self._transform(items, progress)

    def _transform(self, items: list[str], progress: bool) -> sp.csr_matrix:
        tokens = _Tokenised(items, self.config.lowercase, progress, "tfidf: transform")
        if self.config.stem:
            tokens.map_types(stem_word)
        word_counts = self._word_counts(tokens)
        char_counts = None
        if self.config.char_ngrams is not None:
            gram_matrix, _ = self._type_grams(tokens.types, self.config, self._char_lookup)  # (V, Fc)
            char_counts = (self._doc_type_counts(tokens) @ gram_matrix).tocsr()  # (N, Fc)
        return self._combine(word_counts, char_counts)

    def word_counts(
        self, texts: Sequence[str], *, word_map: Callable[[str], str] | None = None, progress: bool = False
    ) -> sp.csr_matrix:
        """Raw counts (N, len(word_vocabulary)) float32 CSR of the word n-grams (no idf, no normalisation).

        ``word_map`` (e.g. a stemmer) rewrites every token (after lower-casing) before the n-grams are
        looked up; it is called once per distinct token.
        """
        items = check_texts(texts)
        tokens = _Tokenised(items, self.config.lowercase, progress, "word counts")
        return self._word_counts(tokens, word_map or (stem_word if self.config.stem else None))

    def word_counts_with_heads(
        self,
        texts: Sequence[str],
        separator: str,
        *,
        word_map: Callable[[str], str] | None = None,
        progress: bool = False,
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``word_counts`` of each text's head and of the whole texts, each text tokenised once: two (N, Fw).

        The head of a text is the part before the first ``separator`` (``text.split(separator, 1)[0]``), the
        whole text when there is none, nothing when ``separator`` is "". The result equals
        ``(word_counts(heads, word_map=word_map), word_counts(texts, word_map=word_map))``.
        """
        items = check_texts(texts)
        if not isinstance(separator, str):
            raise ValueError(f"separator must be a string; got {separator!r}")
        tokens = _Tokenised(items, self.config.lowercase, progress, "word counts", head_separator=separator)
        words, doc, keep = self._word_stream(tokens, word_map or (stem_word if self.config.stem else None))
        in_head = tokens.in_head()[keep]  # (T',)
        starts, lasts, cols = self._ngram_hits(words, doc)
        hit_doc = doc[starts]
        real = hit_doc < tokens.n_texts
        shape = (tokens.n_texts, len(self.word_vocabulary))
        whole = self._count_matrix(hit_doc[real], cols[real], shape)
        head_rows = np.where(
            real, hit_doc, tokens.odd[np.maximum(hit_doc - tokens.n_texts, 0)] if len(tokens.odd) else 0
        )
        in_head_hit = in_head[lasts] if len(lasts) else np.zeros(0, dtype=bool)
        head = self._count_matrix(head_rows[in_head_hit], cols[in_head_hit], shape)
        return head, whole

    def _word_counts(self, tokens: _Tokenised, word_map: Callable[[str], str] | None = None) -> sp.csr_matrix:
        words, doc, _ = self._word_stream(tokens, word_map)
        starts, _, cols = self._ngram_hits(words, doc)
        return self._count_matrix(doc[starts], cols, (tokens.n_docs, len(self.word_vocabulary)))

    @staticmethod
    def _count_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
        counts = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=shape)
        counts.sum_duplicates()
        return counts

    def _word_stream(
        self, tokens: _Tokenised, word_map: Callable[[str], str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tokens of >= 2 characters (after ``word_map``) in text order: vocabulary word ids (T',) (-1: not a
        word of any feature), their documents (T',), and which of the batch's tokens they are (T,) bool."""
        types = tokens.types if word_map is None else map(word_map, tokens.types)
        word_of_type = np.array([self._words.get(t, -1) if len(t) >= 2 else -2 for t in types], dtype=np.int64)
        stream = word_of_type[tokens.ids] if len(tokens.ids) else tokens.ids  # (T,)
        keep = stream != -2
        return stream[keep], tokens.doc[keep], keep

    def _ngram_hits(self, words: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every occurrence of a word n-gram feature in a word stream: (first position, last position, column),
        by order, then by position. Only the positions whose (order - 1)-gram is a known prefix are followed."""
        found_starts, found_lasts, found_cols = [], [], []
        pos = np.flatnonzero(words >= 0)  # (P,) positions whose n-gram so far is a known prefix
        codes = words[pos]  # (P,)
        for order in range(1, self.config.ngram_max + 1):
            table_codes, table_cols, prefix_codes = self._tables[order - 1]
            if order > 1:
                # extend each followed (order-1)-gram by its next word: its prefix rank and that word
                inside = pos + order - 1 < len(words)
                pos, codes = pos[inside], codes[inside]
                if order == 2:
                    rank = self._word_prefix_rank[codes]
                    found = rank >= 0
                else:
                    rank = np.searchsorted(prefix_codes, codes)
                    rank_clipped = np.minimum(rank, max(len(prefix_codes) - 1, 0))
                    found = (
                        (rank < len(prefix_codes)) & (prefix_codes[rank_clipped] == codes)
                        if len(prefix_codes)
                        else rank < 0
                    )
                last = words[pos + order - 1]
                known = found & (last >= 0) & (doc[pos + order - 1] == doc[pos])
                pos, codes = pos[known], rank[known] * self._n_words + last[known]
                col = self._find(table_codes, table_cols, codes, np.ones(len(codes), dtype=bool))
            else:
                col = self._word_column[codes]
            hit = col >= 0
            found_starts.append(pos[hit])
            found_lasts.append(pos[hit] + order - 1)
            found_cols.append(col[hit])
        return np.concatenate(found_starts), np.concatenate(found_lasts), np.concatenate(found_cols)

    @staticmethod
    def _find(table_codes: np.ndarray, table_cols: np.ndarray, codes: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Column of each code in the sorted table, -1 where absent or not ``known``."""
        if len(table_codes) == 0 or len(codes) == 0:
            return np.full(len(codes), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(table_codes, codes), len(table_codes) - 1)
        return np.where(known & (table_codes[pos] == codes), table_cols[pos], -1)

    def _combine(self, word_counts: sp.csr_matrix, char_counts: sp.csr_matrix | None) -> sp.csr_matrix:
        """Counts -> the final (N, F) matrix: TF-IDF per block, char block weighted, rows normalised."""
        words = _tfidf_block(word_counts, self.word_idf, self.config.sublinear_tf)  # (N, Fw)
        if char_counts is None:
            words.sort_indices()
            return words
        chars = _tfidf_block(char_counts, self.char_idf, self.config.sublinear_tf)  # (N, Fc)
        chars.data *= np.float32(self.config.char_weight)
        matrix = sp.hstack([words, chars], format="csr", dtype=np.float32)  # (N, Fw + Fc)
        _normalize_rows(matrix)
        matrix.sort_indices()
        return matrix

    # ------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tfidf.json`` (config, vocabularies) and ``idf.npy`` to ``directory``, atomically."""
        payload = {
            **header(FORMAT, FORMAT_VERSION),
            "config": self.config.to_dict(),
            "n_train_documents": self.n_train_documents,
            "word_vocabulary": self.word_vocabulary,
            "char_vocabulary": self.char_vocabulary,
        }
        idf = np.concatenate([self.word_idf, self.char_idf]).astype(np.float32)

        def write(folder: Path) -> None:
            write_json(folder / CONFIG_FILE, payload)
            np.save(folder / IDF_FILE, idf, allow_pickle=False)
            if self.title is not None:
                self.title.save(folder / "title")

        target = write_folder(directory, write)
        logger.info("saved TF-IDF featurizer (%d features) to %s", self.n_features, target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Restore a featurizer written by ``save``; ``ValueError`` if the folder is missing or corrupt."""
        folder = Path(directory)
        config_path, idf_path = folder / CONFIG_FILE, folder / IDF_FILE
        if not config_path.is_file() or not idf_path.is_file():
            raise ValueError(f"no saved TF-IDF featurizer in {folder}: {CONFIG_FILE} and {IDF_FILE} are required")
        try:
            payload = read_header(config_path, FORMAT, FORMAT_VERSION)
            idf = np.load(idf_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"corrupt TF-IDF featurizer in {folder}: {exc}") from exc
        try:
            config = TfidfConfig.from_dict(payload["config"])
            words = list(payload["word_vocabulary"])
            chars = list(payload["char_vocabulary"])
            n_train = int(payload["n_train_documents"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"corrupt TF-IDF featurizer config {config_path}: {exc}") from exc
        if idf.ndim != 1 or len(idf) != len(words) + len(chars):
            raise ValueError(f"{idf_path}: expected {len(words) + len(chars)} idf values; got shape {idf.shape}")
        featurizer = cls(config, words, idf[: len(words)], chars, idf[len(words) :], n_train)
        if config.title_weight > 0:
            featurizer.title = cls.load(folder / "title")
        return featurizer

    def vocabulary(self) -> Iterable[str]:
        """The feature names in column order (word n-grams, then char n-grams, then "title:" + title features)."""
        yield from self.word_vocabulary
        yield from self.char_vocabulary
        if self.title is not None:
            yield from (f"title:{name}" for name in self.title.vocabulary())

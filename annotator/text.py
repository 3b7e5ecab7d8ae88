"""Text helpers shared by services and selectors."""

from __future__ import annotations

import itertools
import unicodedata


def fold(text: str) -> str:
    """Case- and diacritics-insensitive key: "Künstliche Intelligenz" -> "kunstliche intelligenz".

    NFKD splits letters from their combining marks, which are dropped; casefold handles ß -> ss.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


# German transliteration: a query may spell an umlaut out (ue, oe, ae) or type it (ü, ö, ä); a name holds either.
# ß needs nothing: `fold` already makes it "ss" on both sides.
UMLAUTS = {"ä": "a", "ö": "o", "ü": "u"}
JOINERS = (" ", "-")  # word separators a query may use, leave out or swap: "non-profit" = "nonprofit" = "non profit"
MAX_VARIANTS = 64


def query_variants(query: str, *, joiners: bool = True) -> list[str]:
    """The folded spellings a name may use for what `query` means, the query's own first (at most MAX_VARIANTS).

    Each "ue"/"oe"/"ae" typed may be an umlaut ("kuenstliche" -> also "kunstliche", as "Künstliche" is folded); each
    umlaut typed may be spelled out in the name ("müller" -> also "mueller"); with `joiners`, each space or hyphen
    between words may be a space, a hyphen or nothing ("non-profit" -> also "non profit", "nonprofit"). Searching
    every variant on the stored folded key (`Label.search_key`) makes the search insensitive to these spellings
    without a second stored key."""
    marked = unicodedata.normalize("NFC", query).casefold()
    for umlaut, base in UMLAUTS.items():
        marked = marked.replace(umlaut, base + "\0")  # a typed umlaut: its letter and a mark
    key = fold(marked)
    options: list[list[str]] = []
    i = 0
    while i < len(key):
        pair = key[i : i + 2]
        if len(pair) == 2 and pair[1] == "\0":
            options.append([pair[0], pair[0] + "e"])
            i += 2
            continue
        if pair in ("ue", "oe", "ae"):
            options.append([pair, pair[0]])
            i += 2
            continue
        if joiners and key[i] in JOINERS and 0 < i < len(key) - 1:
            options.append([key[i], *(j for j in (*JOINERS, "") if j != key[i])])
        else:
            options.append([key[i]])
        i += 1
    variants = ("".join(parts) for parts in itertools.product(*options))
    return list(dict.fromkeys(itertools.islice(variants, MAX_VARIANTS)))


# The compact key (`Label.search_compact`, a generated column: `models.compact_of`): the folded key without these
# separators, then each spelled-out umlaut as its letter. Both sides get it, so a query matches however the name joins
# its words or spells its umlauts ("nonprofit" ~ "Non-Profit-Organisation", "muller" ~ "Mueller").
COMPACT_DROP = (" ", "-", "(", ")", ",", ".", "/", "'", "&", ":")
COMPACT_PAIRS = (("ue", "u"), ("oe", "o"), ("ae", "a"))


def compact(text: str) -> str:
    """The compact key of `text`, as the database computes it from the folded key."""
    key = fold(text)
    for ch in COMPACT_DROP:
        key = key.replace(ch, "")
    for pair, letter in COMPACT_PAIRS:
        key = key.replace(pair, letter)
    return key


def query_words(variant: str) -> list[str]:
    """A variant's words, split at spaces and hyphens: each must occur in a matching name."""
    return variant.replace("-", " ").split()

"""Text helpers shared by services and selectors."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Case- and diacritics-insensitive key: "Künstliche Intelligenz" -> "kunstliche intelligenz".

    NFKD splits letters from their combining marks, which are dropped; casefold handles ß -> ss.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())

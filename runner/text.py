"""Small text idioms written once: a message on one line, a first sentence, a shape as text, a natural sort key."""

from __future__ import annotations

import re


def one_line(text: object, limit: int | None = None, more: str = "") -> str:
    """`text` (an exception, or any message) with every run of whitespace made one space; past `limit` characters
    cut there, with `more` after it."""
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[:limit] + more


def first_sentence(text: str | None, limit: int) -> str:
    """The first sentence on one line, cut to `limit` characters (its last one an ellipsis): a cell, not the story."""
    text = one_line(text or "")
    cut = text.find(". ")
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dims(shape) -> str:
    """A shape as a size, e.g. 28x28x1; an unknown dimension is a question mark."""
    return "x".join("?" if d is None else str(d) for d in shape)


def shape_tuple(shape) -> str:
    """A shape as Keras prints it, e.g. (None, 28, 28, 1)."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def natural_key(text: str, ignore_case: bool = False) -> tuple:
    """A sort key that puts model2 before model10: the digit runs compare as numbers."""
    text = text.lower() if ignore_case else text
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))

""""Did you mean ...?": the one place that finds the closest known name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest_match", "did_you_mean"]


def closest_match(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The most similar of ``choices`` to ``name``, if any is close.

    A difflib ratio of at least ``cutoff`` counts as close; failing that, a choice that
    is a prefix of ``name`` (or has it as a prefix) is offered.

    Examples
    --------
    >>> closest_match("dino_dr", ["dino", "dino_dro", "mae"])
    'dino_dro'
    """
    options = [str(c) for c in choices]
    matches = difflib.get_close_matches(name, options, n=1, cutoff=cutoff)
    if not matches:
        matches = [c for c in options if name and (c.startswith(name) or name.startswith(c))][:1]
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """``" Did you mean 'x'?"`` for the closest choice, or ``""`` when none is close.

    Meant to follow a sentence: ``f"unknown backbone 'x'.{did_you_mean(...)} Backbones: ..."``.
    """
    guess = closest_match(name, choices, cutoff)
    return f" Did you mean {guess!r}?" if guess else ""

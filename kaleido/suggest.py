"""A "did you mean" hint for a mistyped name: the closest of the names that exist (difflib)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def did_you_mean(given: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean 'epochs'?)`` when ``given`` is close to one of ``choices``, else ``""``:
    a list of twenty allowed keys hides the one a typo missed."""
    if not isinstance(given, str):
        return ""
    close = difflib.get_close_matches(given, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

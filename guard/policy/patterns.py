"""Name and URL patterns: shell globs by default, regular expressions with a ``re:`` prefix.

Globs are matched case-sensitively (``fnmatchcase``) so a policy means the same on every OS.
A regex must match the whole string (``re.fullmatch``), like a glob does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache

REGEX_PREFIX = "re:"


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern[len(REGEX_PREFIX) :])


def check_pattern(pattern: str) -> str:
    """Validate a pattern (for pydantic validators): a bad regex is a ValueError."""
    if pattern.startswith(REGEX_PREFIX):
        try:
            _compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


def matches(pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    if pattern.startswith(REGEX_PREFIX):
        return _compile(pattern).fullmatch(value) is not None
    return fnmatchcase(value, pattern)


def matches_any(patterns: Iterable[str], value: str | None) -> bool:
    return any(matches(p, value) for p in patterns)


def as_list(patterns: str | list[str] | None) -> list[str]:
    if patterns is None:
        return []
    return [patterns] if isinstance(patterns, str) else list(patterns)

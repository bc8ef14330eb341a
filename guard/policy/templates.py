"""Reason templates: ``str.format`` syntax rendered so that a bad template never crashes.

A missing key is rendered literally (``{nope}`` stays ``{nope}``), attribute and index
lookups are never performed (a template names values, it does not walk objects), and one that is
not valid format syntax is returned as written: a reason must always be produced, since the
guard reports every decision.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any


class _SafeFormatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        # no attribute or index access: a template only names values, never walks objects
        if "." in field_name or "[" in field_name:
            return _Missing(field_name), field_name
        return super().get_field(field_name, args, kwargs)

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str) and key in kwargs:
            return kwargs[key]
        return _Missing(str(key))

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, _Missing):
            return "{" + value.key + (":" + format_spec if format_spec else "") + "}"
        try:
            formatted: str = super().format_field(value, format_spec)  # typeshed: Any
            return formatted
        except (ValueError, TypeError):
            return str(value)


class _Missing:
    def __init__(self, key: str) -> None:
        self.key = key


_FORMATTER = _SafeFormatter()


def render(template: str, values: Mapping[str, Any]) -> str:
    try:
        return _FORMATTER.vformat(template, (), values)
    except Exception:  # malformed braces, attribute errors...: show the template itself
        return template

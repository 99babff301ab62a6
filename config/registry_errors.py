"""Registry errors as one line each: ``file: entry (id=...): field: reason``.

Turns pydantic's validation errors on the registry file into lines an operator reads
without knowing pydantic: TOML type names, the entry's index and id, the field path
without pydantic's internal parts (a union's tag).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from config.registry_ids import is_redox_id
from config.secret_sources import KINDS

__all__ = ["describe_error", "duplicate_ids", "one_line", "toml_type"]


def duplicate_ids(data: Mapping[str, Any]) -> list[str]:
    """One line per ``[[destinations]]`` entry whose id an earlier entry already has."""
    entries = data.get("destinations")
    if not isinstance(entries, list):
        return []
    first: dict[str, int] = {}
    lines: list[str] = []
    for index, entry in enumerate(entries):
        ident = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(ident, str):
            continue
        if ident in first:
            lines.append(
                f"destinations[{index}] (id={ident}): id: duplicate of destinations[{first[ident]}]"
            )
        else:
            first[ident] = index
    return lines


_KINDS = {*KINDS, "aws-secrets-manager"}
_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def describe_error(err: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """One pydantic error as ``entry: field: reason``."""
    entry, field = _split_loc(err.get("loc", ()), data)
    kind = str(err.get("type", ""))
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        parent, _, key = field.rpartition(".")
        return f"{entry}: {parent + ': ' if parent else ''}unknown key '{key}'"
    if kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_not_found":
        message = f"missing 'kind' (one of {', '.join(KINDS)})"
    elif kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        message = f"unknown kind {tag!r} (one of {', '.join(KINDS)})"
    elif kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        message = f"must be one of {expected.replace(' or ', ', ')}, got {err.get('input')!r}"
    elif kind == "too_short":
        message = "must not be empty"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {toml_type(err.get('input'))}"
    elif kind.endswith(("_type", "_parsing")):
        message = f"{message.rstrip('.')}, got {toml_type(err.get('input'))}"
    if field in ("", "[key]") or message.startswith("interval/cron:"):
        return f"{entry}: {message}"
    return f"{entry}: {field}: {message}"


def _split_loc(loc: Sequence[str | int], data: Mapping[str, Any]) -> tuple[str, str]:
    """``("destinations", 3, "interval")`` -> ``("destinations[3] (id=x)", "interval")``."""
    if not loc:
        return "top level", ""
    head, rest = str(loc[0]), list(loc[1:])
    if head == "destinations" and rest and isinstance(rest[0], int):
        index = int(rest.pop(0))
        entries = data.get("destinations")
        raw = entries[index] if isinstance(entries, list) and index < len(entries) else None
        ident = raw.get("id") if isinstance(raw, dict) else None
        entry = f"destinations[{index}]"
        if is_redox_id(ident):
            entry += f" (id={ident})"
    elif head == "environments" and rest:
        entry = f'environments."{rest.pop(0)}"'
    elif head in ("defaults", "environments", "destinations"):
        entry = head
    else:
        entry, rest = "top level", [head, *rest]
    field = ""
    for i, part in enumerate(rest):
        if i > 0 and rest[i - 1] in ("secret_source", "sink") and part in _KINDS:
            continue  # the discriminated-union tag pydantic puts in the path
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += f".{part}" if field else str(part)
    return entry, field


def one_line(text: str) -> str:
    """Escape control characters (a key or value may hold a newline) to keep one line."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def toml_type(value: object) -> str:
    """The TOML name of a parsed value's type (``table``, ``array``, ``string``...)."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    names.update({dict: "table", list: "array"})
    return names.get(type(value), type(value).__name__)

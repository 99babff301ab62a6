"""Human durations ("30d", "1d12h", "90m") and daily UTC windows ("02:00-05:00").

Used by the registry file and anywhere a person writes a length of time. Parsing is strict:
anything that is not clearly a positive duration is a ``ValueError`` with a one-line reason.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "MINUTES_PER_DAY",
    "format_duration",
    "format_window",
    "in_window",
    "parse_duration",
    "parse_window",
]

MINUTES_PER_DAY = 24 * 60

#: Seconds per unit, largest first (the order a combined duration must use).
_UNITS: dict[str, int] = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)\s*([wdhms])")
_COMBO = re.compile(r"(?:\d+\s*[wdhms]\s*)+")
_PLAIN = re.compile(r"\d+")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


def _bad_duration(text: str) -> ValueError:
    return ValueError(f"bad duration '{text}' (use e.g. 30d, 12h, 90m)")


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds in ``text``: ``45s``, ``90m``, ``12h``, ``30d``, ``2w``, ``1d12h``, or plain seconds.

    Units must appear largest first and at most once. Zero is rejected unless ``allow_zero``.
    """
    if not isinstance(text, str):
        raise _bad_duration(str(text))
    stripped = text.strip().lower()
    if _PLAIN.fullmatch(stripped):
        total = int(stripped)
    elif _COMBO.fullmatch(stripped):
        total = 0
        last_rank = -1
        for number, unit in _PART.findall(stripped):
            rank = list(_UNITS).index(unit)
            if rank <= last_rank:  # repeated or out of order: "1h1d", "1d1d"
                raise _bad_duration(text)
            last_rank = rank
            total += int(number) * _UNITS[unit]
    else:
        raise _bad_duration(text)
    if total == 0 and not allow_zero:
        raise ValueError(f"bad duration '{text}' (must be more than zero)")
    return float(total)


def format_duration(seconds: float) -> str:
    """``seconds`` as ``"1d 12h"`` (whole seconds; ``parse_duration`` reads it back)."""
    if not math.isfinite(seconds):
        return str(seconds)
    rest = round(abs(seconds))
    if rest == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    sign = "-" if seconds < 0 else ""
    return sign + " ".join(parts)


def _parse_clock(text: str, whole: str, *, allow_24: bool) -> int:
    match = _CLOCK.fullmatch(text.strip())
    if not match:
        raise ValueError(f"bad window '{whole}' (use HH:MM-HH:MM in UTC, e.g. 02:00-05:00)")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if allow_24 and hours == 24 and minutes == 0:
        return 0
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad window '{whole}' ({text.strip()} is not a time of day)")
    return hours * 60 + minutes


def parse_window(text: str) -> tuple[int, int]:
    """``"02:00-05:00"`` as minutes of the UTC day ``(120, 300)``; may wrap midnight.

    The end is exclusive; ``24:00`` is accepted as an end. Start and end must differ.
    """
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f"bad window '{text}' (use HH:MM-HH:MM in UTC, e.g. 02:00-05:00)")
    start_text, end_text = text.split("-")
    start = _parse_clock(start_text, text, allow_24=False)
    end = _parse_clock(end_text, text, allow_24=True)
    if start == end:
        raise ValueError(f"bad window '{text}' (start and end are the same time)")
    return start, end


def format_window(window: tuple[int, int]) -> str:
    """``(120, 300)`` as ``"02:00-05:00"``."""
    start, end = window
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def in_window(ts: float, window: tuple[int, int]) -> bool:
    """Whether unix time ``ts`` falls inside the daily UTC ``window`` (end exclusive)."""
    start, end = window
    minute = (ts % 86400.0) / 60.0
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end

"""Durations ("30d", "1d12h") and daily UTC windows ("22:00-02:00")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.durations import (
    format_duration,
    format_window,
    in_window,
    parse_duration,
    parse_window,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43200),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
        ("1d12h", 129600),
        ("1d 12h", 129600),
        ("1w2d3h4m5s", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("3600", 3600),
        (" 10m ", 600),
        ("30D", 30 * 86400),
    ],
)
def test_parse_duration_valid(text: str, seconds: int) -> None:
    assert parse_duration(text) == float(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "3x",
        "",
        " ",
        "0",
        "0s",
        "0d0h",
        "-5",
        "-5m",
        "1.5h",
        "d",
        "1h1d",
        "1d1d",
        "ten",
        "1 2h",
        "5mm",
    ],
)
def test_parse_duration_invalid(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad duration"):
        parse_duration(text)


def test_parse_duration_message_is_one_precise_line() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("3x")
    assert str(info.value) == "bad duration '3x' (use e.g. 30d, 12h, 90m)"


def test_zero_allowed_only_when_asked() -> None:
    assert parse_duration("0s", allow_zero=True) == 0.0
    assert parse_duration("0", allow_zero=True) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(129600, "1d 12h"), (45, "45s"), (0, "0s"), (14 * 86400, "2w"), (3661, "1h 1m 1s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**10))
def test_parse_format_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("02:00-04:00", (120, 240)),
        ("22:00-02:00", (1320, 120)),
        ("00:00-00:01", (0, 1)),
        ("23:59-00:00", (1439, 0)),
        ("22:00-24:00", (1320, 0)),
        ("2:30-3:30", (150, 210)),
    ],
)
def test_parse_window_valid(text: str, window: tuple[int, int]) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize(
    "text",
    [
        "",
        "02:00",
        "02:00-02:00",
        "25:00-02:00",
        "02:60-03:00",
        "24:00-01:00",
        "a-b",
        "2-3",
        "1:00-2:00-3:00",
    ],
)
def test_parse_window_invalid(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad window"):
        parse_window(text)


def test_format_window_round_trip() -> None:
    assert format_window((1320, 120)) == "22:00-02:00"
    assert parse_window(format_window((75, 1439))) == (75, 1439)


@pytest.mark.parametrize(
    ("minute", "window", "inside"),
    [
        (120, (120, 240), True),
        (239, (120, 240), True),
        (240, (120, 240), False),
        (119, (120, 240), False),
        (1320, (1320, 120), True),
        (0, (1320, 120), True),
        (119, (1320, 120), True),
        (120, (1320, 120), False),
        (600, (1320, 120), False),
    ],
)
def test_in_window(minute: int, window: tuple[int, int], inside: bool) -> None:
    ts = 10 * 86400 + minute * 60.0
    assert in_window(ts, window) is inside

"""Date cues: "what did we decide on 25 May 2022?" points at messages sent around then."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
_MON = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DAY_MON_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON}\.?,?\s+(\d{{4}})\b", re.I)
_MON_DAY_YEAR = re.compile(rf"\b{_MON}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_MON_YEAR = re.compile(rf"\b{_MON}\.?,?\s+(\d{{4}})\b", re.I)
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
# Messages often tell of an event a few days later ("last week I..."): look a little past the date.
AFTER = timedelta(days=8)
BEFORE = timedelta(days=1)


def _month(name: str) -> int:
    name = name.lower()[:3]
    for full, num in _MONTHS.items():
        if full.startswith(name):
            return num
    return 0


def query_periods(query: str) -> list[tuple[date, date]]:
    """Date ranges (inclusive) a query mentions, widened to catch messages about them."""
    out: list[tuple[date, date]] = []
    spans: list[tuple[int, int]] = []

    def add(m: re.Match[str], start: date, end: date) -> None:
        if any(s <= m.start() < e for s, e in spans):
            return
        spans.append((m.start(), m.end()))
        out.append((start - BEFORE, end + AFTER))

    try:
        for m in _DAY_MON_YEAR.finditer(query):
            d = date(int(m.group(3)), _month(m.group(2)), int(m.group(1)))
            add(m, d, d)
        for m in _MON_DAY_YEAR.finditer(query):
            d = date(int(m.group(3)), _month(m.group(1)), int(m.group(2)))
            add(m, d, d)
        for m in _MON_YEAR.finditer(query):
            y, mo = int(m.group(2)), _month(m.group(1))
            end = date(y + (mo == 12), mo % 12 + 1, 1) - timedelta(days=1)
            add(m, date(y, mo, 1), end)
        for m in _YEAR.finditer(query):
            y = int(m.group(1))
            add(m, date(y, 1, 1), date(y, 12, 31))
    except ValueError:  # "31 February": no cue
        pass
    return out


def to_date(ts: Any) -> date | None:
    """The calendar date of a message timestamp (datetime, ISO string or None)."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts.date()
    if isinstance(ts, date):
        return ts
    if isinstance(ts, str) and ts:
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def to_seconds(ts: Any) -> float | None:
    """A message timestamp as POSIX seconds (naive times read as UTC), or None."""
    if isinstance(ts, str) and ts:
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).timestamp()
    return None

"""The listing index's file format and freshness rule, in plain Python (no pydantic).

Kept apart from `index.py` so that `tether sessions list` can print a listing from a
current index without loading the session models, while the store and the CLI
share one definition of "current".
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .replay import read_regular, time_key

INDEX_NAME = ".index.json"
INDEX_VERSION = 1
SUFFIX = ".jsonl"


def session_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(id, stat) of every session file; hidden files (index, temp files) are not sessions."""
    with os.scandir(root) as it:
        for entry in it:
            name = entry.name
            if name.endswith(SUFFIX) and not name.startswith("."):
                try:
                    yield name[: -len(SUFFIX)], entry.stat(follow_symlinks=False)  # a link is judged as one
                except FileNotFoundError:
                    continue


def read_entries(root: Path) -> dict[str, Any]:
    """The index's entries; raises OSError/ValueError if it is missing or unreadable."""
    data = json.loads(read_regular(root / INDEX_NAME))  # a planted FIFO would hang every listing
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or not isinstance(data.get("entries"), dict):
        raise ValueError("unknown index format")
    return data["entries"]


def is_fresh(entry: dict[str, Any] | None, st: os.stat_result) -> bool:
    """An entry is current while its file keeps the inode, size and modification time it was
    made from. Inode and size alone are not enough: a session deleted and created again
    under the same id often gets the freed inode back, with a header of the same size."""
    return (bool(entry) and entry.get("ino") == st.st_ino and entry.get("size") == st.st_size  # type: ignore[union-attr]
            and entry.get("mt") == st.st_mtime_ns)  # type: ignore[union-attr]


def fresh_rows(root: Path) -> list[dict[str, Any]] | None:
    """Every session's summary dict if the index is current for all files, else None."""
    try:
        entries = read_entries(root)
        rows = []
        for sid, st in session_files(root):
            entry = entries.get(sid)
            if not is_fresh(entry, st):
                return None
            rows.append(entry["s"])
        return rows
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _recency(row: dict[str, Any]) -> tuple[str, str]:
    return time_key(row.get("updated_at") or ""), row.get("id") or ""


def select_rows(rows: list[dict[str, Any]], limit: int | None = None, user_id: str | None = None,
                status: str | None = None) -> list[dict[str, Any]]:
    """Filter, order by last use (newest first) and cut, as every listing does."""
    if user_id is not None:
        rows = [r for r in rows if r.get("user_id") == user_id]
    if status is not None:
        rows = [r for r in rows if r.get("status", "active") == status]
    rows = sorted(rows, key=_recency, reverse=True)
    return rows[: max(0, limit)] if limit is not None else rows

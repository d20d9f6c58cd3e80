"""The listing index: one small JSON file of session summaries beside the transcripts.

Listing must not open every transcript. Each entry remembers the file's inode, size
and how many bytes it has folded in; a file that only grew (the common case: new
messages) is brought up to date by reading just the new lines. A file whose inode
changed (compacted, imported) or that saw edits/removals is re-read whole. The
index is a cache: deleting it only costs one rebuild.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout
from pydantic import TypeAdapter

from ..errors import SessionCorrupt
from .indexfile import INDEX_NAME, INDEX_VERSION, is_fresh, read_entries, select_rows, session_files
from .models import SessionSummary
from .records import Fold, extend_summary, gc_paused, valid_summary

if TYPE_CHECKING:
    from .jsonl import JsonlStore

log = logging.getLogger("tether.sessions")

_summaries = TypeAdapter(list[SessionSummary])


class SessionIndex:
    def __init__(self, store: "JsonlStore") -> None:
        self.store = store
        self.path = store.root / INDEX_NAME
        # the entries as last read or written, with the index file's signature then: an app
        # listing sessions again (a page view) skips parsing an unchanged index (~30 ms at 10,000)
        self._memo: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._swept = False

    def _signature(self) -> tuple[int, int, int] | None:
        from .jsonl import signature  # jsonl imports this module

        try:
            return signature(os.stat(self.path))
        except OSError:
            return None

    def _read(self) -> dict[str, Any]:
        """The index's entries (never mutated: refresh builds a new dict, extend_summary copies)."""
        sig = self._signature()
        memo = self._memo
        if sig is not None and memo is not None and memo[0] == sig:
            return memo[1]
        try:
            entries = read_entries(self.store.root)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("rebuilding unreadable session index %s: %s", self.path, e)
            return {}
        # read after the stat: a rewrite in between shows as a new signature next time
        self._memo = (sig, entries) if sig is not None else None
        return entries

    def _write(self, entries: dict[str, Any]) -> None:
        from .jsonl import remove_stale_temps, write_atomic

        lock = FileLock(str(self.store.locks / ".index.lock"), timeout=5, mode=0o600)
        try:
            with lock:
                payload = json.dumps({"version": INDEX_VERSION, "entries": entries}, separators=(",", ":"))
                write_atomic(self.path, payload.encode(), durable=False)  # a cache: rebuilt if lost
                if not self._swept:  # once per process: temp files of writers killed mid-write
                    self._swept = True
                    remove_stale_temps(self.path)
                sig = self._signature()  # under the lock: no other writer can replace it now
            self._memo = (sig, entries) if sig is not None else None
        except (Timeout, OSError) as e:  # the index is a cache; the next listing retries
            log.warning("could not write session index %s: %s", self.path, e)

    def refresh(self) -> dict[str, Any]:
        """Bring every entry up to date with the files; returns the entries."""
        entries = self._read()
        fresh: dict[str, Any] = {}
        changed = False
        problems: dict[str, str] = {}
        for sid, st in session_files(self.store.root):
            entry = entries.get(sid)
            if is_fresh(entry, st) and entry["s"].get("id") == sid:  # an older index may list a copied file
                fresh[sid] = entry
                continue
            changed = True
            path = self.store.root / f"{sid}.jsonl"
            try:
                new = None
                if entry and entry.get("ino") == st.st_ino and st.st_size > entry.get("off", 0):
                    new = _extend(entry, path)
                fresh[sid] = new or _full(path, st)
            except SessionCorrupt as e:
                problems[sid] = str(e)
                log.warning("%s", e)
            except FileNotFoundError:
                continue
        if changed or set(entries) != set(fresh):
            self._write(fresh)
        self.store.problems = problems
        return fresh

    def forget(self, session_id: str) -> None:
        """Drop a deleted session's entry, so that a session created again under its id (which
        may get the same inode, size and, within a clock tick, modification time) is read anew."""
        entries = self._read()
        if session_id in entries:
            self._write({k: v for k, v in entries.items() if k != session_id})

    def list(self, limit: int | None = None, user_id: str | None = None, status: str | None = None) -> list[SessionSummary]:
        rows = select_rows([e["s"] for e in self.refresh().values()], limit, user_id, status)
        with gc_paused():
            return _summaries.validate_python(rows)


def _full(path: Path, st: os.stat_result) -> dict[str, Any]:
    from .replay import check_file_id, read_session_file, split_records

    if not stat.S_ISREG(st.st_mode):  # a link or a FIFO planted under a session's name: never read through
        raise SessionCorrupt(path, "not a regular file")
    data = read_session_file(path)  # and not if one is swapped in since the listing's lstat
    records, end = split_records(data, path)
    try:
        summary = Fold(path, records).summary()
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # odd usage or cost values
        raise SessionCorrupt(path, f"malformed record ({type(e).__name__}: {e})") from None
    try:
        valid_summary(summary)
    except ValueError as e:
        raise SessionCorrupt(path, f"invalid header ({e.__class__.__name__})") from None
    check_file_id(path, summary["id"])
    head = data[: data.find(b"\n") + 1] or data
    return {"s": summary, "ino": st.st_ino, "size": len(data), "mt": st.st_mtime_ns,
            "off": end, "h": _head_hash(head)}


def _head_hash(line: bytes) -> str:
    """A file's first line (its header, with the session's creation time) identifies it: lines
    are only ever appended to a file, and a rewrite is a new file (a new inode)."""
    return hashlib.blake2b(line, digest_size=8).hexdigest()


def _extend(entry: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """Fold only the lines appended since the entry was made; None if that is not enough."""
    from .replay import split_records

    off = entry["off"]
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if entry.get("h") != _head_hash(f.readline()):
            return None  # another file under the same inode: a session deleted and created again
        f.seek(max(off - 1, 0))
        if off > 0 and f.read(1) != b"\n":
            return None
        tail = f.read()
    try:
        records, end = split_records(tail, path)
    except SessionCorrupt:
        return None
    s = extend_summary(entry["s"], records)
    if s is None:
        return None
    return {"s": s, "ino": st.st_ino, "size": off + len(tail), "mt": st.st_mtime_ns,
            "off": off + end, "h": entry["h"]}

#!/usr/bin/env python3
"""Session store figures, each beside a baseline measured in the same run.

Baseline = the Oblix approach: the session is one JSON document, rewritten whole on
every message, and listing parses every file.

    python bench/store.py [--sessions 10000] [--messages 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tether.sessions import Message, Session  # noqa: E402
from tether.sessions.jsonl import JsonlStore  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog while the session keeps growing. " * 3


def make_messages(n: int) -> list[Message]:
    return [Message(role="user" if i % 2 == 0 else "assistant", content=f"{i} {TEXT}") for i in range(n)]


def time_appends(store: JsonlStore, sid: str, k: int = 200) -> float:
    times = []
    for i in range(k):
        m = Message(role="user", content=f"extra {i} {TEXT}")
        t0 = time.perf_counter()
        store.append_message(sid, m)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class RewriteBaseline:
    """One JSON document per session, rewritten on every message (no lock, no fsync)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def create(self, sid: str, messages: list[Message]) -> None:
        doc = {"id": sid, "title": None, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "messages": [m.to_dict() for m in messages], "context": {}, "metadata": {}}
        (self.root / f"{sid}.json").write_text(json.dumps(doc))

    def append(self, sid: str, m: Message) -> None:
        path = self.root / f"{sid}.json"
        doc = json.loads(path.read_text())
        doc["messages"].append(m.to_dict())
        path.write_text(json.dumps(doc, indent=2))

    def load(self, sid: str) -> Session:
        doc = json.loads((self.root / f"{sid}.json").read_text())
        return Session.model_validate(doc)

    def list(self) -> list[dict]:
        out = []
        for p in self.root.glob("*.json"):
            doc = json.loads(p.read_text())
            out.append({"id": doc["id"], "title": doc["title"], "n": len(doc["messages"])})
        return out


def median_time(fn, k: int) -> float:
    ts = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=10_000)
    args = ap.parse_args()
    big = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"tether session store benchmark (medians; {os.cpu_count()} cores)")
        for fsync in (True, False):
            store = JsonlStore(root / f"jsonl-{fsync}", fsync=fsync)
            small_id, big_id = f"small{fsync}", f"big{fsync}"
            store.create(Session(id=small_id, messages=make_messages(10)))
            store.create(Session(id=big_id, messages=make_messages(big)))
            a_small = time_appends(store, small_id)
            a_big = time_appends(store, big_id)
            print(f"append, fsync={fsync!s:5}: {a_small*1e6:8.1f} us at 10 msgs, {a_big*1e6:8.1f} us at {big:,} msgs, ratio {a_big/a_small:.2f} (target <= 1.5)")
            if fsync:
                a_big_fsync = a_big
            else:
                a_big_nofsync = a_big
                load_t = median_time(lambda: store.load(big_id), 7)
        base = RewriteBaseline(root / "baseline")
        base.create("small", make_messages(10))
        base.create("big", make_messages(big))
        b_small = median_time(lambda: base.append("small", Message(role="user", content=TEXT)), 50)
        b_big = median_time(lambda: base.append("big", Message(role="user", content=TEXT)), 15)
        b_load = median_time(lambda: base.load("big"), 5)
        print(f"append, rewrite baseline: {b_small*1e6:8.1f} us at 10 msgs, {b_big*1e6:8.1f} us at {big:,} msgs, ratio {b_big/b_small:.1f}")
        print(f"append at {big:,} msgs, tether vs rewrite: {b_big/a_big_fsync:.0f}x faster with fsync, {b_big/a_big_nofsync:.0f}x without (target >= 100x)")
        print(f"load {big:,}-message session: tether {load_t*1000:.1f} ms (target <= 100 ms), rewrite baseline {b_load*1000:.1f} ms")

        # listing N sessions
        n = args.sessions
        store = JsonlStore(root / "many", fsync=False)
        base = RewriteBaseline(root / "many-baseline")
        few = make_messages(20)
        for i in range(n):
            sid = f"s{i:06d}"
            store.create(Session(id=sid, title=f"session {i}", messages=few))
            base.create(sid, few)
        t0 = time.perf_counter()
        rows = store.list()
        cold = time.perf_counter() - t0
        assert len(rows) == n
        warm = median_time(store.list, 5)
        store.append_message("s000001", Message(role="user", content="new"))
        t0 = time.perf_counter()
        rows = store.list()
        one_stale = time.perf_counter() - t0
        assert rows[0].id == "s000001"
        limited = median_time(lambda: store.list(limit=20), 5)
        # a new store (as in a new process, but imports and the file cache are warm here): its
        # first listing parses the index file; later ones reuse the parse
        first = median_time(lambda: JsonlStore(root / "many", fsync=False).list(), 5)
        b_list = median_time(base.list, 3)
        print(f"list {n:,} sessions: tether {warm*1000:.1f} ms (target <= 200 ms; first by a new store: "
              f"{first*1000:.1f} ms; limit=20: {limited*1000:.1f} ms; after one append: {one_stale*1000:.1f} ms; cold index build: {cold*1000:.0f} ms), "
              f"parse-every-file baseline {b_list*1000:.0f} ms ({b_list/warm:.0f}x)")


if __name__ == "__main__":
    main()

"""Session and message ids: short, time-sortable, and safe as file names."""
from __future__ import annotations

import os
import random
import re
import threading
import time

from ..errors import InvalidSessionId  # errors.py imports nothing of ours

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
MAX_ID_LENGTH = 128

_lock = threading.Lock()
_last = (0, "")
# ids need uniqueness, not secrecy: a per-process generator seeded from the OS (one
# urandom read, not one per id), reseeded in forked children so they never share a stream
_rng = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(16)))


def _b36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_id() -> str:
    """14 chars: 8 of milliseconds (sortable until 2059) + 6 random, monotonic per process."""
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_rand = _last
        if ms <= last_ms:
            # same millisecond (or clock step back): keep order by bumping the random part
            ms = last_ms
            bumped = int(last_rand, 36) + 1 + _rng.randrange(1000)
            if bumped >= 36**6:
                ms, bumped = ms + 1, _rng.randrange(36**5)
            rand = _b36(bumped, 6)
        else:
            rand = _b36(_rng.randrange(36**5), 6)
        _last = (ms, rand)
        return _b36(ms, 8) + rand


def validate_id(session_id: object) -> str:
    """Return the id if it is a plain file-safe name, else raise InvalidSessionId."""
    if not isinstance(session_id, str):
        raise InvalidSessionId(f"session id must be a string, got {type(session_id).__name__}")
    if not _ID_RE.fullmatch(session_id):
        if not session_id:
            why = "it is empty"
        elif len(session_id) > MAX_ID_LENGTH:
            why = f"it is longer than {MAX_ID_LENGTH} characters"
        elif session_id.startswith("."):
            why = "it starts with a dot"
        else:
            why = "only letters, digits, '-', '_' and '.' are allowed"
        raise InvalidSessionId(f"invalid session id {session_id[:80]!r}: {why}")
    return session_id

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
_last = (0, 0)
_RAND_SPACE = 36**8
# ids need uniqueness, not secrecy: a per-process generator seeded from the OS (one
# urandom read, not one per id), reseeded in forked children so they never share a stream
_rng = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(16)))


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 1,296 two-digit strings


def _b36(n: int, width: int) -> str:
    """n in base 36, zero-padded to `width` (even) digits: two digits per step (ids are hot)."""
    out = []
    for _ in range(width // 2):
        n, r = divmod(n, 1296)
        out.append(_PAIRS[r])
    return "".join(reversed(out))


def new_id() -> str:
    """16 chars: 8 of milliseconds (sortable until 2059) + 8 random (41 bits), monotonic per process.

    Within one millisecond the random part grows by a random step (up to 2**20), so ids
    stay ordered in a process while ids made at once by other processes do not collide.
    """
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_rand = _last
        if ms <= last_ms:  # same millisecond (or the clock stepped back): keep order
            ms = last_ms
            rand = last_rand + 1 + _rng.randrange(1 << 20)
            if rand >= _RAND_SPACE:
                ms, rand = ms + 1, _rng.randrange(_RAND_SPACE // 2)
        else:
            rand = _rng.randrange(_RAND_SPACE // 2)  # leave room to count up within the millisecond
        _last = (ms, rand)
        return _b36(ms, 8) + _b36(rand, 8)


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
        elif session_id.startswith("-"):
            why = "it starts with '-' (it would read as an option on a command line)"
        else:
            why = "only letters, digits, '-', '_' and '.' are allowed"
        raise InvalidSessionId(f"invalid session id {session_id[:80]!r}: {why}")
    return session_id

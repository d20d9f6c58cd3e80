"""The default store: one JSON Lines file per session.

Line 1 is a header record; every later line is one change (a message, an edit, a
header update, an event). An append writes one line under an inter-process lock, so
its cost does not grow with the session. A line is only ever written whole by one
`write`; a process killed mid-write leaves at most a torn last line without its
newline, which readers ignore and the next writer cuts off. Rewrites (create,
import, compaction) go through a temp file, fsync and an atomic rename.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import SessionCorrupt, SessionExists, SessionNotFound
from ..home import make_private_dirs
from .ids import validate_id
from .index import SessionIndex
from .indexfile import SUFFIX
from .models import Message, Session, SessionEvent, SessionSummary, utcnow
from .records import Fold, at_default, edit_record, message_record, record_json, session_records, update_record
from .replay import LINK_REFUSED, check_file_id, is_record, read_session_file, split_records
from .store import SessionStore, search_session

log = logging.getLogger("tether.sessions")

COMPACT_MIN_DEAD = 256  # dead records tolerated before load() compacts a file

# Whoever can write to the folder (a shared or group-writable home) could plant a link there and
# have the chat written into, or read from, any file the user can reach: every file tether opens
# in its folders is opened without following a link (O_NOFOLLOW), and its own files are created
# only where nothing is (O_EXCL). A session file is a regular file, never a link, even one that
# points inside the folder (its header would name another id anyway).
_APPEND = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW


def private_dir(path: Path) -> Path:
    make_private_dirs(path)  # JsonlStore(root) given directly: its missing parents are private too
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def dumps(record: dict[str, Any]) -> bytes:
    return (record_json(record) + "\n").encode("utf-8")


def message_line(message: Message) -> bytes:
    """The JSON of dumps(message_record(message)) in half the time (pydantic's own writer;
    only float spellings differ, 1.5e-6 for 1.5e-06): one is made per message stored."""
    try:
        body = message.__pydantic_serializer__.to_json(message, exclude=at_default(message))
    except ValueError:  # lone surrogates: dumps escapes them
        return dumps(message_record(message))
    return b'{"type":"message","message":' + body + b"}\n"


def write_atomic(path: Path, data: bytes, *, exclusive: bool = False, durable: bool = True) -> None:
    """Write a whole file so that readers see the old one or the new one, never a mix.

    durable=False skips the fsyncs: for caches that can be rebuilt (the listing index).
    """
    for attempt in range(8):  # a name never used before: O_EXCL refuses anything already there, links too
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            break
        except FileExistsError:
            if attempt == 7:
                raise
    try:
        with os.fdopen(fd, "wb", closefd=True) as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails if the target exists: atomic create-if-absent
            except FileExistsError:
                raise SessionExists(f"a session with id {path.stem!r} already exists") from None
        else:
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    if durable:
        _fsync_dir(path.parent)


def _refused(path: str | Path, e: OSError) -> Exception:
    """What to raise when a session file could not be opened: a link, a folder or anything else
    that is not a regular file is a SessionCorrupt naming it; other errors stay as they are."""
    if os.path.islink(path):
        return SessionCorrupt(path, LINK_REFUSED)
    if isinstance(e, IsADirectoryError):
        return SessionCorrupt(path, "not a regular file")
    return e


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


Signature = tuple[int, int, int]


def signature(st: os.stat_result) -> Signature:
    """What says a file changed: inode (compaction renames), size (appends), mtime."""
    return st.st_ino, st.st_size, st.st_mtime_ns


class JsonlStore(SessionStore):
    """SessionStore over `<root>/<id>.jsonl` files."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool | None = None) -> None:
        self.root = private_dir(Path(root))
        self._root = str(self.root)
        self.locks = private_dir(self.root / ".locks")  # the listing index's lock only
        # Every append survives the process being killed once it returns (the line is in
        # the OS's hands). fsync=True also makes it survive a power cut, at ~0.3-4 ms per write.
        self.fsync = fsync if fsync is not None else os.environ.get("TETHER_FSYNC", "") not in ("", "0")
        self.index = SessionIndex(self)
        self.problems: dict[str, str] = {}  # files skipped by the last listing, and why
        self._ends: dict[str, Signature] = {}  # each session file as our last append left it

    # -- paths and locks ------------------------------------------------------------
    def path(self, session_id: str) -> Path:
        return self.root / f"{validate_id(session_id)}{SUFFIX}"

    def file(self, session_id: str) -> str:
        """path() as a plain string, for the per-turn syscalls (pathlib costs more than they do).
        A subclass that moves files must override both."""
        return f"{self._root}{os.sep}{validate_id(session_id)}{SUFFIX}"

    @contextmanager
    def locked(self, session_id: str) -> Iterator[tuple[int, os.stat_result]]:
        """The session file, open for appending, under an exclusive flock, with its stat."""
        fd, st = self._open_locked(session_id)
        try:
            yield fd, st
        finally:
            os.close(fd)  # releases the lock

    def _open_locked(self, session_id: str) -> tuple[int, os.stat_result]:
        """Open the session file for appending and take its exclusive flock; the caller closes it.

        The lock is on the data file itself, so no lock files pile up. A compaction
        replaces the file by rename while holding the old file's lock; whoever waited
        on that old file sees its inode is no longer the path's, and locks the new one.
        (The old file's link count is not enough: a hard link or an NFS silly-rename
        keeps it above 0.)
        """
        path = self.file(session_id)
        for _ in range(1000):
            try:
                fd = os.open(path, _APPEND)  # never through a link (see _APPEND)
            except FileNotFoundError:
                raise SessionNotFound(session_id) from None
            except OSError as e:
                raise _refused(path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):  # a FIFO or device planted under a session's name
                    raise SessionCorrupt(path, "not a regular file")
                current = st.st_nlink > 0 and os.stat(path).st_ino == st.st_ino
            except FileNotFoundError:  # deleted while we waited
                os.close(fd)
                raise SessionNotFound(session_id) from None
            except BaseException:
                os.close(fd)
                raise
            if current:
                return fd, st
            os.close(fd)  # replaced (compaction) while we waited: look again
        raise OSError(f"session file {path} kept being replaced while waiting for its lock")

    # -- reading --------------------------------------------------------------------
    def read_fold(self, session_id: str) -> Fold:
        path = self.path(session_id)
        try:
            data = read_session_file(path)
        except FileNotFoundError:
            raise SessionNotFound(session_id) from None
        records, _ = split_records(data, path)
        fold = Fold(path, records)  # a malformed record is SessionCorrupt, naming the file
        check_file_id(path, fold.header.get("id"))
        return fold

    def has_message(self, session_id: str, message_id: str) -> bool:
        return message_id in self.read_fold(session_id).messages  # the records only: no models built

    def load(self, session_id: str) -> Session:
        fold = self.read_fold(session_id)
        session = fold.session(self.path(session_id))
        if fold.dead > max(COMPACT_MIN_DEAD, len(fold.messages)):
            self.compact(session_id)
        return session

    def exists(self, session_id: str) -> bool:
        return self.path(session_id).exists()

    # -- writing --------------------------------------------------------------------
    def create(self, session: Session) -> None:
        write_atomic(self.path(session.id), b"".join(dumps(r) for r in session_records(session)), exclusive=True)

    def append(self, session_id: str, *records: dict[str, Any]) -> tuple[Signature, Signature]:
        """Append whole lines under the session's lock, repairing a torn tail first.

        Returns the file's (inode, size, mtime) just before and just after the write, taken
        under the lock: a cache holding exactly "before" knows nobody else wrote in between.
        """
        return self._append_bytes(session_id, b"".join(dumps(r) for r in records))  # serialised before locking

    def _append_bytes(self, session_id: str, data: bytes) -> tuple[Signature, Signature]:
        fd, st = self._open_locked(session_id)  # not locked(): no generator on the hot path
        try:
            before = signature(st)
            if self._ends.get(session_id) != before:  # not exactly as our last append left it
                if _repair_tail(fd, st.st_size):
                    before = signature(os.fstat(fd))
            n = os.write(fd, data)
            if n < len(data):  # a short write (a full disk, a signal): write the rest
                view = memoryview(data)[n:]
                while view:
                    view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
            after = signature(os.fstat(fd))
        finally:
            os.close(fd)  # releases the lock
        if len(self._ends) >= 4096:
            self._ends.clear()
        self._ends[session_id] = after  # ends with a whole line: the next append can skip the check
        return before, after

    def append_message(self, session_id: str, message: Message) -> tuple[Signature, Signature]:
        return self._append_bytes(session_id, message_line(message))

    def update_message(self, session_id: str, message_id: str, fields: dict[str, Any]) -> None:
        self.append(session_id, edit_record(message_id, fields))

    def claim(self, session_id: str, message_id: str) -> Callable[[], None] | None:
        # a flock, freed by the kernel if the process dies mid-turn; the small file stays (a lock
        # file removed while another process waits on it would let two holders in)
        key = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        path = self.locks / f"{validate_id(session_id)}.{key}.turn"  # an imported id may be any text
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            if os.path.islink(path):
                raise OSError(e.errno, f"lock file {path} is {LINK_REFUSED}") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return lambda: os.close(fd)

    def save_counts(self, session_id: str, counts: dict[str, dict[str, int]]) -> tuple[Signature, Signature]:
        # one append for them all (an imported 20,000-message session: one 1.5 MB write, once)
        return self.append(session_id, *({"type": "edit", "id": mid, "fields": {"tokens": {k: int(n) for k, n in t.items()}}}
                                         for mid, t in counts.items()))

    def remove_message(self, session_id: str, message_id: str) -> None:
        self.append(session_id, {"type": "remove", "id": message_id})

    def update_header(self, session_id: str, fields: dict[str, Any]) -> None:
        self.append(session_id, update_record(fields))

    def add_event(self, session_id: str, event: SessionEvent) -> None:
        self.append(session_id, {"type": "event", "event": event.to_dict()})

    def clear(self, session_id: str) -> None:
        self.append(session_id, {"type": "clear", "at": utcnow().isoformat()})
        self.compact(session_id)

    def compact(self, session_id: str) -> None:
        """Rewrite the file with only live records (atomic; appends wait on the lock)."""
        with self.locked(session_id):
            fold = self.read_fold(session_id)
            data = b"".join(dumps(r) for r in fold.records())
            path = self.path(session_id)
            write_atomic(path, data)
            remove_stale_temps(path)

    def delete(self, session_id: str) -> bool:
        path = self.path(session_id)
        try:
            with self.locked(session_id):
                path.unlink()
        except SessionNotFound:
            return False
        except SessionCorrupt:
            if not path.is_symlink():
                raise
            path.unlink()  # a link is no session: removing it leaves what it points to alone
        self.index.forget(session_id)
        return True

    def replace(self, session: Session) -> None:
        """Write a whole session over any existing one (import with overwrite)."""
        data = b"".join(dumps(r) for r in session_records(session))
        try:
            with self.locked(session.id):
                write_atomic(self.path(session.id), data)
        except SessionNotFound:
            write_atomic(self.path(session.id), data)

    # -- listing --------------------------------------------------------------------
    def list(self, limit: int | None = None, user_id: str | None = None, status: str | None = None) -> list[SessionSummary]:
        return self.index.list(limit=limit, user_id=user_id, status=status)

    def search(self, text: str, limit: int | None = None) -> list[tuple[SessionSummary, list[Message]]]:
        """Reads each file's raw text once and parses only files that can contain a match."""
        needle = text.casefold()
        # JSON escapes quotes, backslashes and control characters, so only plain text can prefilter raw bytes
        raw_ok = not any(c in text for c in '"\\') and all(c >= " " for c in text)
        # a line holding a lone surrogate is written all-ASCII (é as \u00e9): such a file is parsed
        escaped = b"\\u" if not text.isascii() else None
        hits = []
        for row in self.list():
            if raw_ok and needle not in (row.title or "").casefold():
                try:
                    data = read_session_file(self.path(row.id))
                except (OSError, SessionCorrupt):
                    continue
                if needle not in data.decode("utf-8", "replace").casefold() and not (escaped and escaped in data):
                    continue
            hit = search_session(self, row, text)
            if hit:
                hits.append(hit)
                if limit is not None and len(hits) >= limit:
                    break
        return hits

    def close(self) -> None:
        pass


STALE_TEMP_SECONDS = 3600.0


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed rewrite of this session left behind.

    Only those of dead processes, or older than an hour: once a rewrite has renamed its
    file into place, the new file is unlocked, so another process (or thread) may already be
    writing its own temp file for the next rewrite, and deleting that would fail its rename.
    """
    now = time.time()
    # exactly write_atomic's names: ".<file>.<pid>.<hex>.tmp" (ids may hold dots, so a
    # looser pattern would also catch the temp files of a session "<id>.jsonl.<n>")
    mine = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]+\.tmp")
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        m = mine.fullmatch(tmp.name)
        if m is None:
            continue
        try:
            pid = int(m.group(1))
            age = now - tmp.stat().st_mtime
        except (ValueError, OSError):
            continue
        if age < STALE_TEMP_SECONDS and _alive(pid):
            continue
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def _repair_tail(fd: int, size: int) -> bool:
    """End the file with a whole line before appending: cut a torn last line (a write killed
    midway), or end a whole record that lacks its newline with one; True if changed."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return False
    pos, chunk, cut = size, 4096, 0
    while pos > 0:
        start = max(0, pos - chunk)
        buf = os.pread(fd, pos - start, start)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            cut = start + nl + 1
            break
        pos = start
    if is_record(os.pread(fd, size - cut, cut)):
        os.pwrite(fd, b"\n", size)
    else:
        os.ftruncate(fd, cut)
    return True


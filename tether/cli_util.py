"""Small helpers shared by the commands and the chat loop (neither imports the other)."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._text import printable
from .errors import InvalidSessionId, SessionNotFound, TetherError

if TYPE_CHECKING:
    from .client import Tether


class AmbiguousSessionId(TetherError, LookupError):
    """A prefix that matches more than one session."""


def echo(text: str = "", **kwargs: Any) -> None:
    """click.echo for text that may hold a model's words, a title or a provider's message:
    its control characters are shown, not sent to the terminal (JSON output has none)."""
    import click

    click.echo(printable(text), **kwargs)


def echo_json(text: str, **kwargs: Any) -> None:
    """JSON output whole: json escapes C0 controls itself; DEL and C1, which it leaves raw, are
    escaped here as \\u007f.. (the same data, re-importable), not drawn as echo() would."""
    import click

    click.echo(_RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text), **kwargs)


_RAW_IN_JSON = re.compile("[\x7f-\x9f]")
_EXPORT_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "markdown", ".json": "json"}


def export_format(path: Path) -> str | None:
    """"markdown" or "json" as the file's suffix says; None when it says neither."""
    return _EXPORT_SUFFIXES.get(path.suffix.lower())


def write_export(path: Path, text: str, *, replace: bool = True) -> None:
    """Write an export as the session files are kept: a new file is 0600 (it holds the chat).
    `replace=False` refuses an existing file (FileExistsError names it)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    st = os.fstat(fd)
    # an existing file keeps its mode otherwise (0644: readable by all); only a regular file of
    # ours is tightened, never a device (-o /dev/null as root) or another user's file
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def client() -> Tether:
    """A client on the current home; built only by commands that need one (it loads pydantic)."""
    from .client import Tether

    return Tether()


def resolve_session_id(client: Tether, text: str) -> str:
    """An exact id, else a unique prefix of one: ids are long and people type the start."""
    text = text.strip()
    if not text:
        raise SessionNotFound(text)
    try:
        if client.session_exists(text):
            return text
    except InvalidSessionId:
        raise SessionNotFound(text) from None
    matches = [s.id for s in client.list_sessions() if s.id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        raise AmbiguousSessionId(f"session id prefix {text!r} matches {len(matches)} sessions: {shown}")
    raise SessionNotFound(text)


def most_recent_session(client: Tether) -> str | None:
    """The most recently USED active session (last message or change), which `-c` continues:
    an archived or closed session is one its owner put away."""
    rows = client.list_sessions(limit=1, status="active")
    return rows[0].id if rows else None


def quick_resume(home: Path, session_id: str | None, cont: bool) -> tuple[str, Any] | None:
    """The session to resume and its replayed records, read without pydantic or the client.

    Only for the plain cases: `-c` with a current listing index, or an exact id. Anything
    else (a prefix, a stale index, an unreadable file) returns None and the caller takes
    the full path, which also reports errors properly.
    """
    from .sessions.indexfile import SUFFIX, fresh_rows, select_rows
    from .sessions.replay import Replay, read_regular, split_records

    root = home / "sessions"
    if cont:
        rows = fresh_rows(root)
        if not rows:
            return None
        active = select_rows(rows, limit=1, status="active")
        if not active:
            return None
        sid = active[0]["id"]
    else:
        sid = session_id or ""
    path = root / f"{sid}{SUFFIX}"
    try:
        from .sessions.ids import validate_id

        validate_id(sid)
        records, _ = split_records(read_regular(path), path)  # a link or FIFO: the full load names it
        replay = Replay(path, records)
        return (sid, replay) if replay.header.get("id") == sid else None
    except (OSError, TetherError, ValueError, KeyError, TypeError, AttributeError):
        return None

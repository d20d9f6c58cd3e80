"""The chat's line editor pieces: saved history, key bindings, completion.

Kept apart from the loop so each can be tested alone and the loop reads plainly.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

if TYPE_CHECKING:
    from filelock import FileLock

HISTORY_FILE = "chat_history"


class LockedFileHistory(FileHistory):
    """prompt_toolkit's FileHistory with an inter-process lock.

    Two terminals chatting at once both append to the same file; without a lock
    their entries can interleave mid-line and corrupt each other.
    """

    def __init__(self, filename: str | Path, warn: Callable[[str], None] | None = None) -> None:
        super().__init__(str(filename))
        self._lock_path = f"{filename}.lock"
        self._warn = warn
        self._warned = False

    def _lock(self) -> FileLock:
        from filelock import FileLock

        return FileLock(self._lock_path, timeout=5, mode=0o600)

    def _failed(self, doing: str, e: Exception) -> None:
        """The typed-line history is a convenience: a full disk or a read-only home must not
        stop the chat (prompt_toolkit would print a traceback on every Enter). Said once."""
        if not self._warned and self._warn is not None:
            self._warned = True
            self._warn(f"(could not {doing} the input history {self.filename}: {getattr(e, 'strerror', None) or e})")

    def load_history_strings(self) -> Iterable[str]:
        try:
            with self._lock():
                _regular_or_absent(Path(self.filename))  # prompt_toolkit reads through links and FIFOs
                items = list(super().load_history_strings())
        except (OSError, TimeoutError) as e:  # filelock's Timeout is a TimeoutError
            self._failed("read", e)
            return []
        return items

    def store_string(self, string: str) -> None:
        try:
            with self._lock():
                _private_file(Path(self.filename))  # what the user typed is as private as the sessions
                super().store_string(string)
        except (OSError, TimeoutError) as e:
            self._failed("save", e)


_NOT_FOLLOWED = "it is a symbolic link, which tether does not follow"


def _private_file(path: Path) -> None:
    """Create the file 0600, or tighten it: the home may be a shared folder (0755).

    Never through a link, nor on anything but a regular file (OSError instead): whoever can write
    to the home could point chat_history at a file outside it, and what is typed would land there.
    prompt_toolkit then opens it again by name: a link swapped in between the two opens would still
    be followed (a race to win each time; a link planted beforehand never is).
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as e:
        if os.path.islink(path):
            raise OSError(e.errno, _NOT_FOLLOWED, str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(path))
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # the file opened, not whatever the name points to now
    finally:
        os.close(fd)


def _regular_or_absent(path: Path) -> None:
    """OSError unless the file is missing or a regular file (a link or a FIFO is not read)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, _NOT_FOLLOWED, str(path))
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "it is not a regular file", str(path))


def key_bindings() -> KeyBindings:
    """Enter sends; Esc-Enter / Alt-Enter (the same keys to a terminal) insert a newline."""
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return kb


class ChatCompleter(Completer):
    """Slash commands, then their arguments: session ids, model names, export formats."""

    def __init__(self, commands: dict[str, str], session_ids: Callable[[], list[tuple[str, str]]],
                 model_names: Callable[[], list[str]]) -> None:
        self.commands = commands
        self.session_ids = session_ids
        self.model_names = model_names

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        if " " not in text:
            for name, help_text in self.commands.items():
                if name.startswith(text):
                    yield Completion(name, start_position=-len(text), display_meta=help_text)
            return
        cmd, _, arg = text.partition(" ")
        if " " in arg and cmd != "/export":
            return
        if cmd == "/switch":
            for sid, title in self.session_ids():
                if sid.startswith(arg):
                    yield Completion(sid, start_position=-len(arg), display_meta=title)
        elif cmd == "/model":
            for name in self.model_names():
                if name.startswith(arg):
                    yield Completion(name, start_position=-len(arg))
        elif cmd == "/export" and " " not in arg:
            for fmt in ("md", "json"):
                if fmt.startswith(arg):
                    yield Completion(fmt, start_position=-len(arg))
        elif cmd == "/clear" and "history".startswith(arg):
            yield Completion("history", start_position=-len(arg))

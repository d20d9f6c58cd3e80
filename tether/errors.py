"""tether's exceptions: each names what was wrong, so the CLI can print one line."""
from __future__ import annotations

from typing import Any


class TetherError(Exception):
    """Base of every error tether raises on purpose."""


class InvalidSessionId(TetherError, ValueError):
    """A session id that could escape the sessions folder or is not a plain name."""


class SessionNotFound(TetherError, LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session with id {session_id!r}")
        self.session_id = session_id

    def __str__(self) -> str:  # LookupError would repr() the args
        return self.args[0]


class MessageNotFound(TetherError, LookupError):
    """update_message/remove_message with an id the session does not hold (nothing was written)."""

    def __init__(self, session_id: str, message_id: str) -> None:
        super().__init__(f"session {session_id} has no message with id {message_id!r}")
        self.session_id = session_id
        self.message_id = message_id

    def __str__(self) -> str:  # LookupError would repr() the args
        return self.args[0]


class InvalidField(TetherError, ValueError):
    """A session or message field given a value of the wrong kind (nothing was written)."""


class SessionExists(TetherError, ValueError):
    """create_session with an id that is already taken."""


class SessionClosed(TetherError, ValueError):
    """A turn on a session whose status is "closed": nothing is written. Reopen it first."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} is closed: reopen it with "
                         f"update_session({session_id!r}, status=\"active\") or `tether sessions reopen {session_id}`")
        self.session_id = session_id

    @property
    def cli_message(self) -> str:
        """What the CLI and the chat say: their user has a shell, not the Python API."""
        return f"session {self.session_id} is closed: `tether sessions reopen {self.session_id}` opens it again"


class SessionCorrupt(TetherError):
    """A session file that cannot be read; the message names the file."""

    def __init__(self, path: Any, reason: str) -> None:
        where = path if isinstance(path, str) and path.startswith("redis key") else f"file {path}"
        super().__init__(f"session {where} is corrupt: {reason}")
        self.path = path
        self.reason = reason


class ConfigError(TetherError, ValueError):
    """Bad configuration; the message names the key or file."""


class UnknownModel(TetherError, ValueError):
    """A model name that is neither configured nor known to litellm."""


class ImportFormatError(TetherError, ValueError):
    """import_session was given something that is not a session."""


class ContextOverflow(TetherError, ValueError):
    """The new message alone does not fit the model's context window."""


class AllModelsFailed(TetherError):
    """Every model in the chain failed; `attempts` says how, one per try."""

    def __init__(self, message: str, attempts: list[Any] | None = None, session_id: str | None = None) -> None:
        super().__init__(message)
        self.attempts = list(attempts or [])
        self.session_id = session_id


class PromptTooLarge(AllModelsFailed, ContextOverflow):
    """No model in the chain (or larger) can take the turn: its message, system prompt and
    context alone overflow each window. Caught as either parent; the message names the sizes."""

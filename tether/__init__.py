"""tether: an LLM chat router with session-persistent model selection.

Importing tether is cheap: litellm loads only when a model is first called, and the
client and session models (pydantic) load on first attribute access (PEP 562), so
`tether --help` and other light CLI paths pay for neither.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import _env
from ._lazy import lazy_attributes

_env.setup()

from . import errors  # noqa: E402
from .errors import (  # noqa: E402
    AllModelsFailed,
    ConfigError,
    ContextOverflow,
    ImportFormatError,
    InvalidField,
    InvalidSessionId,
    MessageNotFound,
    PromptTooLarge,
    SessionClosed,
    SessionCorrupt,
    SessionExists,
    SessionNotFound,
    TetherError,
    UnknownModel,
)

if TYPE_CHECKING:
    from .aclient import AsyncTether
    from .client import Tether
    from .context import Window
    from .sessions import Message, Session, SessionEvent, SessionSummary, Totals, Usage
    from .turn.stream import AsyncStream, OpeningStream, Restart, Stream
    from .turn.types import ChatResult

__version__ = "0.1.0"

# public name -> submodule that defines it, imported on first access
_LAZY = {
    "AsyncTether": "aclient", "Tether": "client", "Window": "context",
    "Message": "sessions", "Session": "sessions", "SessionEvent": "sessions",
    "SessionSummary": "sessions", "Totals": "sessions", "Usage": "sessions",
    "AsyncStream": "turn.stream", "OpeningStream": "turn.stream", "Restart": "turn.stream", "Stream": "turn.stream",
    "ChatResult": "turn.types",
}

__all__ = [
    "Tether", "AsyncTether", "ChatResult", "Stream", "AsyncStream", "OpeningStream", "Restart", "Window",
    "Session", "SessionSummary", "SessionEvent", "Message", "Totals", "Usage", "errors",
    "TetherError", "AllModelsFailed", "ConfigError", "ContextOverflow", "ImportFormatError", "InvalidField",
    "InvalidSessionId", "MessageNotFound", "PromptTooLarge", "SessionClosed", "SessionCorrupt", "SessionExists", "SessionNotFound",
    "UnknownModel",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

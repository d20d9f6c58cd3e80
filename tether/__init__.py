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
    InvalidSessionId,
    PromptTooLarge,
    SessionClosed,
    SessionCorrupt,
    SessionNotFound,
    TetherError,
    UnknownModel,
)

if TYPE_CHECKING:
    from .aclient import AsyncTether
    from .client import Tether
    from .sessions import Message, Session, SessionEvent, SessionSummary, Totals, Usage
    from .turn.stream import AsyncStream, Restart, Stream
    from .turn.types import ChatResult

__version__ = "0.1.0"

# public name -> submodule that defines it, imported on first access
_LAZY = {
    "AsyncTether": "aclient", "Tether": "client",
    "Message": "sessions", "Session": "sessions", "SessionEvent": "sessions",
    "SessionSummary": "sessions", "Totals": "sessions", "Usage": "sessions",
    "AsyncStream": "turn.stream", "Restart": "turn.stream", "Stream": "turn.stream", "ChatResult": "turn.types",
}

__all__ = [
    "AllModelsFailed", "AsyncTether", "ConfigError", "ContextOverflow", "InvalidSessionId", "Message",
    "PromptTooLarge", "Session", "SessionClosed", "SessionCorrupt", "SessionEvent", "SessionNotFound", "SessionSummary", "Tether",
    "TetherError", "Totals", "UnknownModel", "Usage", "errors",
    "AsyncStream", "ChatResult", "Restart", "Stream",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

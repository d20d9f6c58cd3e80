"""tether: an LLM chat router with session-persistent model selection.

Importing tether is cheap: litellm loads only when a model is first called.
"""
from __future__ import annotations

from . import _env

_env.setup()

from . import errors  # noqa: E402
from .client import AsyncTether, Tether  # noqa: E402
from .errors import (  # noqa: E402
    AllModelsFailed,
    ConfigError,
    ContextOverflow,
    InvalidSessionId,
    SessionCorrupt,
    SessionNotFound,
    TetherError,
    UnknownModel,
)
from .sessions import Message, Session, SessionEvent, SessionSummary, Totals, Usage  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AllModelsFailed", "AsyncTether", "ConfigError", "ContextOverflow", "InvalidSessionId", "Message",
    "Session", "SessionCorrupt", "SessionEvent", "SessionNotFound", "SessionSummary", "Tether",
    "TetherError", "Totals", "UnknownModel", "Usage", "errors",
]
__all__ += ["AsyncStream", "ChatResult", "Restart", "Stream"]


def __getattr__(name: str) -> object:
    """The turn types load on first use: `import tether` stays as cheap as the session API."""
    if name in ("AsyncStream", "Restart", "Stream"):
        from . import turn_stream

        return getattr(turn_stream, name)
    if name == "ChatResult":
        from .turns import ChatResult

        return ChatResult
    raise AttributeError(f"module 'tether' has no attribute {name!r}")

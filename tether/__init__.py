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

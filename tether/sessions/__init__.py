"""Session models and stores. Imports nothing else of tether's but its errors.

Names load on first access (PEP 562), so light paths such as `tether sessions list`
can read the index without importing pydantic and the models.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .ids import new_id, validate_id
    from .models import SCHEMA_VERSION, Message, Session, SessionEvent, SessionSummary, Totals, Usage
    from .store import SessionStore

_LAZY = {
    "new_id": "ids", "validate_id": "ids",
    "SCHEMA_VERSION": "models", "Message": "models", "Session": "models", "SessionEvent": "models",
    "SessionSummary": "models", "Totals": "models", "Usage": "models",
    "SessionStore": "store",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

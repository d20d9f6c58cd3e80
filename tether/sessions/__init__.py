"""Session models and stores. Imports nothing else of tether's."""
from .ids import new_id, validate_id
from .models import SCHEMA_VERSION, Message, Session, SessionEvent, SessionSummary, Totals, Usage
from .store import SessionStore

__all__ = [
    "SCHEMA_VERSION", "Message", "Session", "SessionEvent", "SessionStore", "SessionSummary",
    "Totals", "Usage", "new_id", "validate_id",
]

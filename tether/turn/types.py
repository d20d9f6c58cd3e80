"""What a turn passes around: its result, its start, and the app's event callbacks.

Kept apart from `core.py` (the turn's logic) so the data a caller sees reads in one place.
"""
from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..router.engine import Attempt
from ..sessions import Message, Session

log = logging.getLogger("tether")
EVENTS = ("message", "fallback", "pin_changed", "error")


@dataclass
class ChatResult:
    """One answered turn. `model` answered; `fallback_from` names the model that failed first."""

    text: str
    session_id: str
    model: str
    pinned_model: str
    fallback_from: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    latency_ms: float = 0.0        # the answering call: request to last token
    turn_ms: float = 0.0           # the whole turn from the saved question: failed tries, back-offs, window
    window_tokens: int = 0
    window_dropped: int = 0
    litellm_model: str | None = None
    message_id: str | None = None
    user_message_id: str | None = None
    restarts: int = 0

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["attempts"] = [a.to_dict() for a in self.attempts]
        return d


class Events:
    """`on(event, callback)`; a callback that raises is logged, never breaks a turn."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Callable[[dict[str, Any]], Any]]] = {e: [] for e in EVENTS}

    def on(self, event: str, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        if event not in self._subs:
            raise ValueError(f"unknown event {event!r}: expected one of {', '.join(EVENTS)}")
        if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(getattr(callback, "__call__", None)):
            # it would never run: events fire inside the turn, often in a worker thread
            raise TypeError("event callbacks are called synchronously and must not be async def; "
                            "from one, hand the work to your loop (loop.call_soon_threadsafe)")
        self._subs[event].append(callback)
        return lambda: self._subs[event].remove(callback) if callback in self._subs[event] else None

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        for cb in list(self._subs.get(event, ())):
            try:
                out = cb(payload)
            except Exception:  # noqa: BLE001
                log.exception("tether %s callback failed", event)
                continue
            if inspect.iscoroutine(out):
                out.close()  # not awaited by anyone: say so once, not as "never awaited" noise
                log.warning("tether %s callback returned a coroutine, which never runs: callbacks are synchronous", event)


@dataclass
class TurnStart:
    """A turn in progress: the session as loaded and the user message already on disk."""

    session: Session
    user: Message
    chain: list[str]
    history: list[Message]
    reused: bool = False
    started: float = field(default_factory=time.perf_counter)  # the question is on disk from here
    replaces: list[Message] = field(default_factory=list)  # earlier answers a regeneration replaces
    uncounted: list[Message] = field(default_factory=list)  # history stored without token counts
    unclaim: Any = None  # frees the store's cross-process claim on a question answered again

    @property
    def keeps_answer(self) -> bool:
        """A regeneration of an answered question: until a new answer is stored, the old one stands."""
        return any(m.role == "assistant" and m.status == "ok" for m in self.replaces)


def sendable(messages: list[Message]) -> list[Message]:
    """History a model may see: questions no model answered stay in the session (for retry)
    but are not sent with later turns, where they would read as asked again. The list itself
    when none is unanswered (most turns): callers do not change it."""
    for m in messages:
        if m.status == "unanswered":
            return [m for m in messages if m.status != "unanswered"]
    return messages

"""The client: tether's public entry point for apps.

`Tether` is synchronous (`AsyncTether`, in aclient.py, wraps it for event loops). Session
operations never import litellm.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from . import _env
from .errors import InvalidField, MessageNotFound
from .home import ensure_dir, resolve_home
from .sessions import Message, Session, SessionEvent, SessionStore, SessionSummary
from .sessions.exchange import export_json, export_markdown, parse_import
from .sessions.jsonl import JsonlStore
from .sessions.models import HEADER_FIELDS, STATUSES, SessionStatus

log = logging.getLogger("tether")

if TYPE_CHECKING:
    from .context import Window
    from .router.config import ConfigReport, RouterConfig
    from .turn.core import Turns
    from .turn.stream import Stream
    from .turn.types import ChatResult

_ROLES = ("system", "user", "assistant", "tool")


def open_store(store: SessionStore | str | None, home: Path) -> SessionStore:
    """A store object as given, a Redis URL, or the JSON Lines files under `<home>/sessions`."""
    if isinstance(store, SessionStore):
        return store
    if isinstance(store, str) and store.split("://", 1)[0] in ("redis", "rediss", "unix"):
        from .sessions.redis_store import RedisStore

        return RedisStore(store)
    if store is not None:
        raise ValueError(f"store must be a SessionStore or a redis:// URL, got {store!r}")
    return JsonlStore(home / "sessions")


class Tether:
    """Sessions, context windows and model routing behind one object."""

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        config: dict[str, Any] | str | os.PathLike[str] | None = None,
        store: SessionStore | str | None = None,
    ) -> None:
        _env.setup()
        self.home: Path = ensure_dir(resolve_home(home))
        self.store: SessionStore = open_store(store, self.home)
        self._owns_store = not isinstance(store, SessionStore)  # a store the app made is the app's to close
        self._config_source = config
        self.current_session_id: str | None = None
        self._turns: Turns | None = None

    def close(self, timeout: float | None = None) -> None:
        """Wait for rolling summaries still being made (up to `timeout` seconds, default 15),
        then release the connections of a store tether opened (a Redis URL). For apps that
        shut a client down before the process ends; `with Tether() as t:` calls it."""
        if self._turns is not None:
            from .turn.summaries import SUMMARY_EXIT_WAIT

            self._turns.summaries.wait(SUMMARY_EXIT_WAIT if timeout is None else timeout)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "Tether":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions -----------------------------------------------------------------
    def create_session(
        self,
        title: str | None = None,
        context: dict[str, Any] | None = None,
        model: str | None = None,
        system: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> str:
        """Create a session and make it the current one; returns its id."""
        fields: dict[str, Any] = {
            "title": title, "context": context or {}, "system": system,
            "user_id": user_id, "metadata": metadata or {},
        }
        if model is not None:
            # a typo of a configured name must not pin every turn to a failing call
            model = self.turns.pins.check_model(model, ask_litellm=False)
            fields["pinned_model"] = model
            fields["pin_reason"] = "explicit"
        if session_id is not None:
            fields["id"] = session_id
        session = Session(**fields)
        if model is not None:  # the first pin is recorded like every later change
            session.events.append(SessionEvent.pin_changed(None, model, "explicit", model in self.turns.config.models))
        self.store.create(session)
        if model:
            self.turns.events.emit("pin_changed", {"session_id": session.id, **session.events[-1].data})
        self.current_session_id = session.id
        return session.id

    def load_session(self, session_id: str) -> Session:
        return self.store.load(session_id)

    def list_sessions(
        self, limit: int | None = None, user_id: str | None = None, status: SessionStatus | None = None,
        offset: int = 0,
    ) -> list[SessionSummary]:
        """Most recently used first; `offset` skips that many (a page: offset=40, limit=20)."""
        _check_limit(limit)
        _check_limit(offset, "offset")
        if status is not None and status not in STATUSES:
            raise InvalidField(f"invalid status {status!r}: expected one of {', '.join(STATUSES)}")
        rows = self.store.list(limit=None if limit is None else offset + limit, user_id=user_id, status=status)
        return rows[offset:] if offset else rows

    def delete_session(self, session_id: str) -> bool:
        deleted = self.store.delete(session_id)
        if self.current_session_id == session_id:
            self.current_session_id = None
        return deleted

    def rename_session(self, session_id: str, title: str) -> None:
        self.store.update_header(session_id, {"title": title})

    def update_session(self, session_id: str, **fields: Any) -> None:
        """Change title, system, context, metadata, user_id or status (active/archived/closed)."""
        bad = set(fields) - (HEADER_FIELDS - {"updated_at", "pinned_model", "pin_reason"})
        if bad:
            raise InvalidField(f"update_session cannot change: {', '.join(sorted(bad))} (it changes title, "
                               "system, context, metadata, user_id and status; the pin: pin_model)")
        self.store.update_header(session_id, fields)

    def add_message(self, session_id: str, role: str, content: str, **fields: Any) -> Message:
        """Append one message; it is on disk when this returns."""
        if role not in _ROLES:
            raise ValueError(f"invalid role {role!r}: expected one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise TypeError(f"message content must be a string, got {type(content).__name__}")
        message = Message(role=role, content=content, **fields)  # type: ignore[arg-type]
        # its count goes on disk with it when the tokenizer is loaded (for the default model's
        # family: the session's own model would mean reading the session first). A count is
        # a cache: a bad config must not stop the message being saved.
        try:
            message = self.turns.counted(message, None)
        except Exception as e:  # noqa: BLE001
            log.debug("message %s saved without a token count: %s", message.id, e)
        self.store.append_message(session_id, message)
        return message

    def update_message(self, session_id: str, message_id: str, **fields: Any) -> None:
        """Patch fields of one message (content, pinned, metadata...). An id the session does
        not hold raises MessageNotFound: a silent no-op would hide a typo in an app."""
        self._require_message(session_id, message_id)
        self.store.update_message(session_id, message_id, fields)

    def remove_message(self, session_id: str, message_id: str) -> None:
        """Take one message out of the session (for undo and retry); recorded, not rewritten."""
        self._require_message(session_id, message_id)
        self.store.remove_message(session_id, message_id)

    def _require_message(self, session_id: str, message_id: str) -> None:
        # a read of the records per edit (not a load: 10,000 messages as models took ~100 ms)
        if not self.store.has_message(session_id, message_id):
            raise MessageNotFound(session_id, message_id)

    def get_history(self, session_id: str, limit: int | None = None) -> list[Message]:
        _check_limit(limit)
        messages = self.store.load(session_id).messages
        return messages[max(0, len(messages) - limit):] if limit is not None else messages

    def clear_history(self, session_id: str) -> None:
        self.store.clear(session_id)

    def export_session(self, session_id: str, format: Literal["json", "markdown", "md"] = "json") -> str:
        session = self.store.load(session_id)
        if format == "json":
            return export_json(session)
        if format in ("markdown", "md"):
            return export_markdown(session)
        raise ValueError(f"unknown export format {format!r}: use 'json' or 'markdown'")

    def import_session(self, data_or_path: str | bytes | Path | dict[str, Any], *, overwrite: bool = False) -> str:
        """Import a tether export, an Oblix session file or a tether .jsonl file; returns the id."""
        session = parse_import(data_or_path)
        if overwrite:
            replace = getattr(self.store, "replace", None)
            if replace is not None:
                replace(session)
                return session.id
            self.store.delete(session.id)
        self.store.create(session)
        return session.id

    def search_sessions(self, text: str, limit: int | None = None) -> list[tuple[SessionSummary, list[Message]]]:
        """Sessions whose title or messages contain `text` (case-insensitive), newest first, with the matching messages."""
        if not text:
            raise ValueError("search text is empty")
        _check_limit(limit)
        return self.store.search(text, limit=limit)

    def session_exists(self, session_id: str) -> bool:
        return self.store.exists(session_id)

    # -- routing and turns (tether/turn/ does the work) ------------------------------
    @property
    def turns(self) -> Turns:
        """Loaded on first use, so a bad config does not stop session management."""
        if self._turns is None:
            from .router.config import load_config
            from .turn.core import Turns
            from .turn.settings import check_config

            cfg = load_config(self.home, self._config_source, check_config)
            self._turns = Turns(self.store, cfg)
        return self._turns

    @property
    def config(self) -> RouterConfig:
        """The validated router config (raises ConfigError naming the bad key)."""
        return self.turns.config

    def config_report(self) -> ConfigReport:
        """Where the config is, whether it validates, the effective default model; never raises."""
        from .router.config import inspect_config
        from .turn.settings import check_config

        return inspect_config(self.home, self._config_source, check_config)

    def on(self, event: str, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        """Subscribe to "message", "fallback", "pin_changed" or "error"; returns an unsubscribe function."""
        return self.turns.events.on(event, callback)

    def preload(self) -> None:
        """Start importing litellm (3-4 s) in a background thread, e.g. while the user types."""
        from .router._lite import preload_in_background

        preload_in_background()

    def chat_once(self, prompt: str, session_id: str | None = None, model: str | None = None, **params: Any) -> ChatResult:
        """One turn: save the prompt, route it (pinned model first, then fallbacks), save the answer.

        `session_id=None` creates a session (titled from the prompt) and makes it current;
        `model=` picks a new session's model, or re-pins an existing session (recorded);
        other keyword arguments (temperature, max_tokens...) go to litellm.
        """
        _check_params(params)
        with self.turns.claims.turn(session_id):  # after the session's turn in progress, if any
            ts = self.turns.start(prompt, session_id, model)
            self.current_session_id = ts.session.id
            return self.turns.run(ts, params)

    def execute(self, prompt: str, **params: Any) -> ChatResult:
        """A turn on the current session (created on first use), as in Oblix."""
        return self.chat_once(prompt, session_id=self.current_session_id, **params)

    def stream(self, prompt: str, session_id: str | None = None, model: str | None = None, **params: Any) -> Stream:
        """Like chat_once but yields text pieces; see tether.turn.stream for restarts and close()."""
        from .turn.stream import Stream

        _check_params(params)
        with self.turns.claims.turn(session_id):
            ts = self.turns.start(prompt, session_id, model)
        self.current_session_id = ts.session.id
        return Stream(self.turns, ts, params)

    def retry(self, session_id: str | None = None, *, replace: bool = False, **params: Any) -> ChatResult:
        """Answer the last unanswered user message in place (no duplicate). `replace=True`:
        answer the last question again even if answered; its old answer is removed only once
        the new one is stored (a failure or a stop leaves it standing)."""
        _check_params(params)
        sid = session_id or self._current()
        with self.turns.claims.turn(sid):
            ts = self.turns.start_retry(sid, replace)
            return self.turns.run(ts, params)

    def retry_stream(self, session_id: str | None = None, *, replace: bool = False, **params: Any) -> Stream:
        """`retry` as a stream (see `stream`)."""
        from .turn.stream import Stream

        _check_params(params)
        sid = session_id or self._current()
        with self.turns.claims.turn(sid):
            ts = self.turns.start_retry(sid, replace)
        return Stream(self.turns, ts, params)

    def pin_model(self, session_id: str, model: str) -> str:
        """Pin a session to a model (config name or litellm string); recorded as a pin_changed event."""
        return self.turns.pins.pin_model(session_id, model)

    def models(self) -> list[dict[str, Any]]:
        """Configured models with context window, price per token and circuit-breaker state."""
        return self.turns.models()

    def preview_window(self, session_id: str, prompt: str, model: str | None = None) -> Window:
        """The context window (tether.context.Window) the next turn would send."""
        return self.turns.preview_window(session_id, prompt, model)

    def _current(self) -> str:
        if self.current_session_id is None:
            raise ValueError("no current session: pass session_id")
        return self.current_session_id


def _check_limit(limit: object, what: str = "limit") -> None:
    """A negative or fractional limit would quietly cut the wrong end (Python slicing): refuse it."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"{what} must be a whole number, 0 or more" + (" (or None for all)" if what == "limit" else "")
                         + f"; got {limit!r}")


# what a turn decides itself: passed through to litellm they would break the turn
_RESERVED = {"messages": "the window is built from the session", "stream": "use stream() for pieces",
             "model": "pass model= (or pin_model) to choose the model", "fallbacks": "set fallbacks in the config",
             **dict.fromkeys(("system", "title", "user_id", "context"),
                             "it is a session field: set it with create_session(...) or update_session(...)")}


def _check_params(params: dict[str, Any]) -> None:
    bad = [k for k in params if k in _RESERVED]
    if bad:
        raise TypeError("; ".join(f"{k}= cannot be passed to litellm here: {_RESERVED[k]}" for k in bad))

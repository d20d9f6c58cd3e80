"""`AsyncTether`: the same API as `Tether`, as coroutines, for apps on an event loop.

Disk work runs in a worker thread so the loop never waits on a file, except a turn's
start when it is one small append to a session already in memory (a thread hop would
cost more than the write). Turn endings run to completion even when the caller's task
is cancelled (see `_aio.settled`), so a cancel never loses an answer that has arrived.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ._aio import settled
from .client import Tether, _check_params
from .sessions import Message, Session, SessionStore, SessionSummary
from .sessions.models import SessionStatus

if TYPE_CHECKING:
    from .context import Window
    from .router.config import ConfigReport, RouterConfig
    from .turn.stream import AsyncStream, OpeningStream
    from .turn.types import ChatResult, TurnStart


class AsyncTether:
    """The same API as `Tether`, awaitable; disk work runs in a thread."""

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        config: dict[str, Any] | str | os.PathLike[str] | None = None,
        store: SessionStore | str | None = None,
    ) -> None:
        self.sync = Tether(home=home, config=config, store=store)

    async def close(self, timeout: float | None = None) -> None:
        """`Tether.close` off the loop: waits for summaries, releases a store tether opened."""
        await asyncio.to_thread(self.sync.close, timeout)

    async def __aenter__(self) -> "AsyncTether":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def home(self) -> Path:
        return self.sync.home

    @property
    def store(self) -> SessionStore:
        return self.sync.store

    @property
    def current_session_id(self) -> str | None:
        return self.sync.current_session_id

    @current_session_id.setter
    def current_session_id(self, value: str | None) -> None:
        self.sync.current_session_id = value

    async def create_session(
        self,
        title: str | None = None,
        context: dict[str, Any] | None = None,
        model: str | None = None,
        system: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> str:
        return await asyncio.to_thread(self.sync.create_session, title, context, model, system, user_id,
                                       metadata, session_id)

    async def load_session(self, session_id: str) -> Session:
        return await asyncio.to_thread(self.sync.load_session, session_id)

    async def list_sessions(self, limit: int | None = None, user_id: str | None = None,
                            status: SessionStatus | None = None, offset: int = 0) -> list[SessionSummary]:
        return await asyncio.to_thread(self.sync.list_sessions, limit, user_id, status, offset)

    async def delete_session(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.sync.delete_session, session_id)

    async def rename_session(self, session_id: str, title: str) -> None:
        await asyncio.to_thread(self.sync.rename_session, session_id, title)

    async def update_session(self, session_id: str, **fields: Any) -> None:
        await asyncio.to_thread(self.sync.update_session, session_id, **fields)

    async def add_message(self, session_id: str, role: str, content: str, **fields: Any) -> Message:
        return await asyncio.to_thread(self.sync.add_message, session_id, role, content, **fields)

    async def update_message(self, session_id: str, message_id: str, **fields: Any) -> None:
        await asyncio.to_thread(self.sync.update_message, session_id, message_id, **fields)

    async def remove_message(self, session_id: str, message_id: str) -> None:
        await asyncio.to_thread(self.sync.remove_message, session_id, message_id)

    async def get_history(self, session_id: str, limit: int | None = None) -> list[Message]:
        return await asyncio.to_thread(self.sync.get_history, session_id, limit)

    async def clear_history(self, session_id: str) -> None:
        await asyncio.to_thread(self.sync.clear_history, session_id)

    async def export_session(self, session_id: str, format: Literal["json", "markdown", "md"] = "json") -> str:
        return await asyncio.to_thread(self.sync.export_session, session_id, format)

    async def import_session(self, data_or_path: str | bytes | Path | dict[str, Any], *, overwrite: bool = False) -> str:
        return await asyncio.to_thread(self.sync.import_session, data_or_path, overwrite=overwrite)

    async def search_sessions(self, text: str, limit: int | None = None) -> list[tuple[SessionSummary, list[Message]]]:
        return await asyncio.to_thread(self.sync.search_sessions, text, limit)

    async def session_exists(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.sync.session_exists, session_id)

    # -- routing and turns -----------------------------------------------------------
    def on(self, event: str, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        return self.sync.on(event, callback)

    @property
    def config(self) -> RouterConfig:
        return self.sync.config

    def config_report(self) -> ConfigReport:
        """As Tether.config_report(): reads one small file, never raises."""
        return self.sync.config_report()

    def preload(self) -> None:
        """Start importing litellm in a background thread (returns at once)."""
        self.sync.preload()

    async def _start(self, prompt: str, session_id: str | None, model: str | None) -> TurnStart:
        """Put the prompt on disk: inline when that is one small append to a cached session,
        else in a thread (a load, a create, or a model check that may import litellm)."""
        turns = self.sync.turns
        loaded = turns.cheap_start(session_id, model)
        if loaded is not None:
            ts = turns.start(prompt, session_id, model, loaded)
        else:  # a cancel meanwhile leaves the prompt saved, unanswered, its session current
            ts = await settled(turns.start, prompt, session_id, model, on_cancel=self._abandon)
        self.sync.current_session_id = ts.session.id
        return ts

    def _abandon(self, ts: TurnStart) -> None:
        self.sync.current_session_id = ts.session.id
        self.sync.turns.abandon(ts)

    async def chat_once(self, prompt: str, session_id: str | None = None, model: str | None = None, **params: Any) -> ChatResult:
        _check_params(params)
        async with self.sync.turns.claims.aturn(session_id):  # after the session's turn in progress
            ts = await self._start(prompt, session_id, model)
            return await self.sync.turns.arun(ts, params)

    async def execute(self, prompt: str, **params: Any) -> ChatResult:
        return await self.chat_once(prompt, session_id=self.sync.current_session_id, **params)

    def stream(self, prompt: str, session_id: str | None = None, model: str | None = None,
               **params: Any) -> OpeningStream:
        """`st = await t.stream(...)` (the prompt is on disk when the await returns), or
        straight `async with t.stream(...) as st:` / `async for piece in t.stream(...)`."""
        from .turn.stream import OpeningStream

        _check_params(params)
        return OpeningStream(self._open_stream(prompt, session_id, model, params))

    async def _open_stream(self, prompt: str, session_id: str | None, model: str | None,
                           params: dict[str, Any]) -> AsyncStream:
        from .turn.stream import AsyncStream

        async with self.sync.turns.claims.aturn(session_id):
            ts = await self._start(prompt, session_id, model)
        return AsyncStream(self.sync.turns, ts, params)

    async def retry(self, session_id: str | None = None, *, replace: bool = False, **params: Any) -> ChatResult:
        _check_params(params)
        turns = self.sync.turns
        sid = session_id or self.sync._current()
        async with turns.claims.aturn(sid):
            ts = await settled(turns.start_retry, sid, replace, on_cancel=turns.abandon)
            return await turns.arun(ts, params)

    def retry_stream(self, session_id: str | None = None, *, replace: bool = False, **params: Any) -> OpeningStream:
        """`retry` as a stream (see `stream`)."""
        from .turn.stream import OpeningStream

        _check_params(params)
        return OpeningStream(self._open_retry(session_id or self.sync._current(), replace, params))

    async def _open_retry(self, session_id: str, replace: bool, params: dict[str, Any]) -> AsyncStream:
        from .turn.stream import AsyncStream

        turns = self.sync.turns
        async with turns.claims.aturn(session_id):
            ts = await settled(turns.start_retry, session_id, replace, on_cancel=turns.abandon)
        return AsyncStream(turns, ts, params)

    async def pin_model(self, session_id: str, model: str) -> str:
        return await asyncio.to_thread(self.sync.pin_model, session_id, model)

    async def models(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sync.models)

    async def preview_window(self, session_id: str, prompt: str, model: str | None = None) -> Window:
        return await asyncio.to_thread(self.sync.preview_window, session_id, prompt, model)

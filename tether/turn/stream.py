"""Stream objects returned by `Tether.stream` / `AsyncTether.stream`.

Iterate for text pieces as they arrive. When an answer is cut after some of its
text was shown and a retry (of the same model, or the next one) takes over, the
stream yields one `tether.Restart` marker: a `str` subclass equal to "" (printing it prints
nothing) carrying `from_model`, `to_model`, `discarded` (the text already shown
that is NOT part of the answer) and `reason`; the pieces after it are the new
model's answer from its beginning. `stream.text` and `stream.result.text` hold
only the final answer. A failure before any text falls back
silently. `.result` is the ChatResult once the stream is exhausted; `.close()`
(or leaving a `with` block, or cancelling the task) before then stores the
text shown so far as an assistant message marked "interrupted". So does starting
another turn on the same session while the stream is still open (say, after
breaking out of the loop): the partial answer is stored before the new question,
and the old stream ends.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine, Generator
from typing import Any

from .._aio import settled
from ..router.engine import Outcome
from ..router.streaming import Restart, StreamState, astream_turn, stream_turn
from .core import Turns
from .types import ChatResult, TurnStart

__all__ = ["AsyncStream", "OpeningStream", "Restart", "Stream"]


class _Base:
    def __init__(self, turns: Turns, ts: TurnStart, params: dict[str, Any]) -> None:
        self._turns = turns
        self._ts = ts
        self._params = params
        self._state = StreamState()
        self.result: ChatResult | None = None
        self.error: BaseException | None = None
        self._done = False
        self._announced = False
        turns.claims.track_stream(ts.session.id, self)

    @property
    def session_id(self) -> str:
        return self._ts.session.id

    @property
    def text(self) -> str:
        """The answer so far (after a restart: only the new model's text)."""
        return self._state.text

    @property
    def model(self) -> str | None:
        """The model currently streaming (or that answered)."""
        return self._state.model

    @property
    def restarts(self) -> list[Restart]:
        return list(self._state.restarts)

    @property
    def done(self) -> bool:
        return self._done

    def waiting(self) -> str:
        """What the stream waits for before its next text (for a progress line): the model
        being asked, and while retrying, what went wrong and when the next try is."""
        import time

        s = self._state
        failed = [a for a in s.attempts if a.kind not in ("ok", "circuit_open")]
        last = f"{failed[-1].model}: {failed[-1].kind.replace('_', ' ')}" if failed else ""
        if s.retry_at is not None:
            return f"{last}; trying again in {max(0.0, s.retry_at - time.monotonic()):.0f}s"
        return f"waiting for {s.model or self._ts.chain[0]}" + (f" (after {last})" if last else "")

    def _seen(self, piece: str) -> str:
        """Emit the fallback event once, when a fallback model's first text arrives."""
        if not self._announced and self._state.model != self._ts.chain[0]:
            self._announced = True
            self._turns.announce_fallback(self._ts, self._state.model or "", bool(self._state.restarts),
                                          self._state.attempts)
        return piece

    def _build(self) -> Any:
        return self._turns.builder(self._ts.session, self._ts.history, self._ts.user.content)

    def _interrupt(self) -> None:
        if self._done:
            return
        self._done = True
        st = self._state
        text, model, window = st.text, st.model, st.prompt_tokens
        if not text and st.dropped:  # closed while waiting to retry an answer cut short
            (model, text), window = st.dropped, None  # priced already, as that failed attempt
        self._turns.interrupted(self._ts, text, model, st.started_at, window, st.attempts)

    def supersede(self) -> None:
        """A new turn started on this session: store the text so far as interrupted; the loop
        over this stream then ends (a piece already on its way is dropped)."""
        self._interrupt()


class Stream(_Base):
    """Sync stream: `for piece in stream`, then `stream.result`."""

    def __init__(self, turns: Turns, ts: TurnStart, params: dict[str, Any]) -> None:
        super().__init__(turns, ts, params)
        self._gen: Generator[str, None, Outcome] = stream_turn(
            turns.router, ts.chain, self._build(), params, self._state)

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        try:
            piece = next(self._gen)
        except StopIteration as stop:
            if self._done:  # superseded meanwhile: its text is stored already
                raise StopIteration from None
            self._done = True
            self.result = self._turns.finish(self._ts, stop.value, len(self._state.restarts), self._announced)
            raise StopIteration from None
        except BaseException as e:
            if self._done:  # superseded meanwhile: its text is stored already
                raise
            self._done = True
            self.error = e
            if isinstance(e, Exception):
                self._turns.failed(self._ts, e, self._state.dropped)
            else:  # KeyboardInterrupt and friends: keep what was shown
                self._done = False
                self._interrupt()
            raise
        if self._done:
            self._gen.close()
            raise StopIteration
        return self._seen(piece)

    def read(self) -> ChatResult:
        """Consume the rest and return the result."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result

    def close(self) -> None:
        """Stop early: close the connection, store the partial answer marked interrupted."""
        if self._done:
            return
        self._gen.close()
        self._interrupt()

    def supersede(self) -> None:
        try:
            self.close()
        except ValueError:  # being read in another thread right now: it stops at its next piece
            self._interrupt()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # an abandoned stream still records what was shown
        try:
            if not self._done:
                self.close()
        except Exception:
            pass


class AsyncStream(_Base):
    """Async stream: `async for piece in stream`, then `stream.result`; cancel-safe."""

    def __init__(self, turns: Turns, ts: TurnStart, params: dict[str, Any]) -> None:
        super().__init__(turns, ts, params)
        self._out: list[Outcome] = []
        self._agen: AsyncGenerator[str, None] = astream_turn(
            turns.router, ts.chain, self._build(), params, self._state, self._out)
        self._loop = asyncio.get_running_loop()
        self._closing: asyncio.Task[None] | None = None
        self._warmed = False

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        try:
            if not self._warmed:
                self._warmed = True
                if self._turns.cold(self._ts):
                    await asyncio.to_thread(self._turns.warm, self._ts)  # not on the event loop
            piece = await self._agen.__anext__()
        except StopAsyncIteration:
            if self._done:  # superseded meanwhile: its text is stored already
                raise
            self._done = True
            self.result = await settled(
                self._turns.finish, self._ts, self._out[0], len(self._state.restarts), self._announced)
            raise
        except asyncio.CancelledError:
            self._interrupt()  # blocking but short: a cancelled task may not await again
            raise
        except Exception as e:
            if self._done:  # superseded meanwhile: its text is stored already
                raise
            self._done = True
            self.error = e
            await settled(self._turns.failed, self._ts, e, self._state.dropped)
            raise
        if self._done:
            await self._agen.aclose()
            raise StopAsyncIteration
        return self._seen(piece)

    async def read(self) -> ChatResult:
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    async def aclose(self) -> None:
        if self._done:
            return
        try:
            await self._agen.aclose()
        except Exception:
            pass
        await settled(self._interrupt)

    close = aclose

    def supersede(self) -> None:
        """As for a sync stream; the connection is closed on the stream's loop (from any thread),
        or, if a piece is being awaited right now, when that piece arrives."""
        self._interrupt()

        def close() -> None:
            if self._agen.ag_running:
                return
            self._closing = self._loop.create_task(self._agen.aclose())
            self._closing.add_done_callback(lambda t: t.cancelled() or t.exception())

        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(close)

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:  # abandoned without aclose(): still record what was shown
        try:
            if not self._done:
                self._interrupt()
        except Exception:
            pass


class OpeningStream(Coroutine[Any, Any, "AsyncStream"]):
    """What `AsyncTether.stream()` returns: `await` it for the AsyncStream (the prompt is then
    on disk), or use it directly in `async with` / `async for`, which open it first. It is a
    coroutine, so `asyncio.create_task(t.stream(...))` works too; awaited again, it gives the
    same stream (or raises the same error)."""

    def __init__(self, opening: Coroutine[Any, Any, AsyncStream]) -> None:
        self._opening = opening
        self._run = self._open()
        self._stream: AsyncStream | None = None
        self._error: BaseException | None = None
        self._started = False

    async def _open(self) -> AsyncStream:
        try:
            self._stream = await self._opening
        except BaseException as e:
            self._error = e
            raise
        return self._stream

    async def _opened(self) -> AsyncStream:
        if self._error is not None:
            raise self._error
        assert self._stream is not None
        return self._stream

    # the coroutine protocol, delegated to the one run that opens the stream
    def send(self, value: Any) -> Any:
        self._started = True
        return self._run.send(value)

    def throw(self, *args: Any) -> Any:
        return self._run.throw(*args)

    def close(self) -> None:
        self._run.close()
        if not self._started:
            self._opening.close()  # never started: no "never awaited" warning for its inner step

    def __await__(self) -> Generator[Any, None, AsyncStream]:
        if self._stream is not None or self._error is not None:
            return self._opened().__await__()
        self._started = True
        return self._run.__await__()

    async def __aenter__(self) -> AsyncStream:
        return await (await self).__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        if self._stream is not None:
            await self._stream.__aexit__(*exc)

    def __aiter__(self) -> "OpeningStream":
        return self

    async def __anext__(self) -> str:
        return await (await self).__anext__()

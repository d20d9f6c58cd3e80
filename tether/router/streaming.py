"""Streaming runners over the same policy as `Router.complete`.

litellm's Router falls back only before the first chunk and its sync
`completion(stream=True, fallbacks=...)` is broken (notes), so the streaming
fallback lives here: an error before any text falls back invisibly; an error
after text was shown yields a `Restart` marker, then the next model's text.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass, field
from typing import Any

from .engine import Attempt, Call, Outcome, Router, Sleep
from .errors import MidStreamError


class Restart(str):
    """Yielded (as an empty string) when a model failed mid-answer and another takes over.

    The text shown so far (`discarded`) is not part of the answer; the pieces
    that follow are the new model's answer from its beginning. Printing the
    marker prints nothing; code that displays pieces should check
    `isinstance(piece, Restart)` and clear or mark what it showed.
    """

    from_model: str
    to_model: str
    discarded: str
    reason: str

    def __new__(cls, from_model: str, to_model: str, discarded: str, reason: str) -> "Restart":
        obj = super().__new__(cls, "")
        obj.from_model, obj.to_model, obj.discarded, obj.reason = from_model, to_model, discarded, reason
        return obj

    def __repr__(self) -> str:
        return f"Restart(from_model={self.from_model!r}, to_model={self.to_model!r}, reason={self.reason!r})"


@dataclass
class StreamState:
    """Live view of a stream for whoever must store a partial answer on cancel."""

    model: str | None = None  # the model whose text is being streamed
    litellm_model: str | None = None
    pieces: list[str] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)  # so far, for the fallback event
    dropped: tuple[str, str] | None = None  # (model, text) of the last answer cut short mid-stream
    started_at: float = field(default_factory=time.perf_counter)
    retry_at: float | None = None  # time.monotonic() of the next try, during a back-off
    prompt_tokens: int | None = None  # the window sent to the model now streaming

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class _Incomplete(ConnectionError):
    """The stream ended without a finish reason: the connection was cut."""


def _piece(chunk: Any) -> tuple[str, bool]:
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return "", False
    ch = choices[0]
    delta = getattr(ch, "delta", None)
    return (getattr(delta, "content", None) or ""), bool(getattr(ch, "finish_reason", None))


def _ended(resp: Any, finished: bool) -> bool:
    """Whether the provider ended the answer. litellm's stream wrapper adds a last chunk with
    finish_reason "stop" to every stream that runs out, cut short or not; the reason the
    provider itself sent (or None) is kept on the wrapper."""
    if hasattr(resp, "received_finish_reason"):
        return bool(resp.received_finish_reason or getattr(resp, "intermittent_finish_reason", None))
    return finished


def _close(resp: Any) -> None:
    for name in ("close",):
        fn = getattr(resp, name, None)
        if callable(fn):
            try:
                fn()
            except Exception:
                pass
    inner = getattr(resp, "completion_stream", None)
    fn = getattr(inner, "close", None)
    if callable(fn):
        try:
            fn()
        except Exception:
            pass


_SAID = {"timeout": "it stopped sending", "connection": "the connection dropped", "server": "server error",
         "malformed": "a garbled reply", "rate_limit": "rate limited"}


def _why(e: BaseException) -> str:
    """Why an answer stopped, for the person who watched it stop (not an exception's class)."""
    if isinstance(e, _Incomplete):
        return "the answer ended early"
    if "MidStream" in type(e).__name__:  # litellm's wrapper of a stream cut off (it says 500)
        return "the connection dropped"
    from .errors import classify

    c = classify(e)
    why = _SAID.get(c.kind, c.kind.replace("_", " "))
    return why + (f" ({c.status})" if c.status and c.kind != "connection" else "")


def _fail(state: StreamState, step: Call, e: BaseException, pending: list[Any]) -> tuple[str, BaseException]:
    if state.pieces:
        pending[:] = [step.spec.name, state.text, _why(e)]
        state.dropped = (step.spec.name, state.text)
        err: BaseException = MidStreamError(e, state.text)
        state.pieces.clear()
        return "err", err
    return "err", e


def _take(chunk: Any, chunks: list[Any], state: StreamState, pending: list[Any], model: str
          ) -> tuple[list[Any], bool]:
    """One streamed chunk: what to yield (a Restart marker first if an earlier model failed
    mid-answer, then the text) and whether it finished the answer. Shared by both runners."""
    chunks.append(chunk)
    text, fin = _piece(chunk)
    out: list[Any] = []
    if text:
        if pending:
            r = Restart(pending[0], model, pending[1], pending[2])
            pending.clear()
            state.dropped = None  # another answer is on screen now
            state.restarts.append(r)
            out.append(r)
        state.pieces.append(text)
        out.append(text)
    return out, fin


def stream_turn(router: Router, chain: list[str], build: Any, params: dict[str, Any] | None,
                state: StreamState) -> Generator[str, None, Outcome]:
    """Sync: yields text pieces (and Restart markers); returns the Outcome."""
    from ._lite import litellm

    lm = litellm()
    drive = router._drive(chain, build, params or {}, stream=True, attempts=state.attempts)
    reply: Any = None
    pending: list[Any] = []  # [from_model, discarded, reason] of a mid-stream failure
    try:
        while True:
            try:
                step = drive.send(reply)
            except StopIteration as stop:
                return stop.value
            reply = None
            if isinstance(step, Sleep):
                state.retry_at = time.monotonic() + step.seconds
                time.sleep(step.seconds)
                state.retry_at = None
                continue
            state.model, state.litellm_model = step.spec.name, step.spec.model
            state.prompt_tokens = step.prepared.tokens
            chunks: list[Any] = []
            finished = False
            resp: Any = None
            try:
                resp = lm.completion(**step.kwargs)
                for chunk in resp:
                    pieces, fin = _take(chunk, chunks, state, pending, step.spec.name)
                    finished = finished or fin
                    yield from pieces
                if not _ended(resp, finished):
                    raise _Incomplete("stream ended without a finish reason")
            except Exception as e:  # noqa: BLE001 - classified by the policy
                _close(resp)
                reply = _fail(state, step, e, pending)
                continue
            except BaseException:
                _close(resp)
                raise
            reply = ("ok", _built(router, lm, step, chunks, state.text))
    except BaseException:  # closed, Ctrl-C, in a call or a back-off: the model did not fail
        drive.close()  # frees a claimed probe slot
        raise


async def astream_turn(router: Router, chain: list[str], build: Any, params: dict[str, Any] | None,
                       state: StreamState, out: list[Outcome]) -> AsyncGenerator[str, None]:
    """Async twin of stream_turn; async generators cannot return, so the Outcome lands in `out`."""
    from ._lite import litellm

    lm = litellm()
    drive = router._drive(chain, build, params or {}, stream=True, attempts=state.attempts)
    reply: Any = None
    pending: list[Any] = []
    try:
        while True:
            try:
                step = drive.send(reply)
            except StopIteration as stop:
                out.append(stop.value)
                return
            reply = None
            if isinstance(step, Sleep):
                state.retry_at = time.monotonic() + step.seconds
                await asyncio.sleep(step.seconds)
                state.retry_at = None
                continue
            state.model, state.litellm_model = step.spec.name, step.spec.model
            state.prompt_tokens = step.prepared.tokens
            chunks: list[Any] = []
            finished = False
            resp: Any = None
            try:
                resp = await lm.acompletion(**step.kwargs)
                async for chunk in resp:
                    pieces, fin = _take(chunk, chunks, state, pending, step.spec.name)
                    finished = finished or fin
                    for piece in pieces:
                        yield piece
                if not _ended(resp, finished):
                    raise _Incomplete("stream ended without a finish reason")
            except Exception as e:  # noqa: BLE001
                await _aclose(resp)
                reply = _fail(state, step, e, pending)
                continue
            except BaseException:
                await _aclose(resp)
                raise
            reply = ("ok", _built(router, lm, step, chunks, state.text))
    except BaseException:  # closed, cancelled, Ctrl-C, in a call or a back-off: the model did not fail
        drive.close()  # frees a claimed probe slot
        raise


async def _aclose(resp: Any) -> None:
    inner = getattr(resp, "completion_stream", None)
    for obj in (resp, inner):
        fn = getattr(obj, "aclose", None) or getattr(obj, "close", None)
        if callable(fn):
            try:
                r = fn()
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                pass


def _built(router: Router, lm: Any, step: Call, chunks: list[Any], text: str) -> tuple[str, dict[str, int], float | None, Any]:
    """Usage and cost from the chunks (needs stream_options include_usage), text as streamed."""
    try:
        built = lm.stream_chunk_builder(chunks, messages=step.kwargs["messages"])
    except Exception:
        built = None
    if built is None:
        return text, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, None, None
    _, usage, cost, resp = router._finish(step.spec, step.info, built)
    return text, usage, cost, resp

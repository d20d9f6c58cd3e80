"""The chat turn: session in, routed call, answer stored, pin kept.

Glue between the session store, `tether.context.build_window` and the router.
`client.py` and `aclient.py` hold thin methods over a `Turns` object; model pins are in
`pins.py`, who answers what in `claims.py`.
Order matters and is the point of tether: the user's message is on disk before
any model is called; the answer is stored with the model that produced it; a
turn no model answers leaves the message marked unanswered, and asking again
answers that same message instead of adding a copy.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from .._text import well_formed
from ..context import Window
from ..context.tokens import content_tokens, encoding_for, encoding_loaded
from ..errors import AllModelsFailed, SessionClosed
from ..router.config import RouterConfig
from ..router.engine import Outcome, Prepared, Router
from ..sessions import Message, Session, SessionEvent, SessionStore, Usage
from .cache import SessionCache
from .claims import Claims
from .pins import AUTO_PIN, Pins, model_rows
from .settings import ContextSettings
from .summaries import Summaries
from .types import ChatResult, Events, TurnStart, sendable
from .windows import WindowBuilder

log = logging.getLogger("tether")


def title_from(prompt: str) -> str:
    """A new session's title: its first message's first line, cut at 60 characters."""
    first_line = prompt.strip().splitlines()[0] if prompt.strip() else prompt
    return first_line[:60] + ("…" if len(first_line) > 60 else "")


class Turns:
    """Everything a turn does, independent of sync/async (I/O helpers are plain functions)."""

    def __init__(self, store: SessionStore, config: RouterConfig, router: Router | None = None) -> None:
        self.store = store
        self.config = config
        self.router = router or Router(config)
        self.events = Events()
        self.cache = SessionCache(store)
        self.context = ContextSettings.from_config(config.sections.get("context"))
        self.pins = Pins(config, store, self.cache, self.events)
        self.claims = Claims(store, self.cache)
        self.summaries = Summaries(store, self.cache, self.router, config, self.context)
        self._noticed = False

    # -- windows -------------------------------------------------------------------
    def builder(self, session: Session, history: list[Message], query: str) -> Callable[[Any, int | None], Prepared]:
        """Builds the window per tried model, with that model's own window size and tokenizer."""
        return WindowBuilder(self.config, session, sendable(history), query, self.context.window_options(session))

    def preview_window(self, session_id: str, prompt: str, model: str | None = None) -> Window:
        """The window the next turn would send to its first model (for `/context`)."""
        session = self.cache.load(session_id)
        name = model or self.pins.usable_pin(session) or self.pins.pick_model(prompt, None)[0]
        return WindowBuilder(self.config, session, sendable(session.messages), prompt,
                             self.context.window_options(session)).window(self.router.catalogue.info(name), None)

    # -- turn start ------------------------------------------------------------------
    def start(self, prompt: str, session_id: str | None, model: str | None,
              loaded: Session | None = None) -> TurnStart:
        """Load or create the session, pin it if new, and put the user's message on disk.
        `loaded`: the session as cheap_start() just loaded it."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("prompt must be a non-empty string")
        prompt = well_formed(prompt)
        if session_id is not None and self.claims.end_open_stream(session_id):
            loaded = None  # the stream's partial answer was just stored: read the session again
        if session_id is None:
            name, reason = self.pins.pick_model(prompt, model)
            # created with its pin event: one write, not a create and then an append
            session = Session(pinned_model=name, pin_reason=reason, title=title_from(prompt),
                              events=[SessionEvent.pin_changed(None, name, reason, name in self.config.models)])
            self.store.create(session)
            self.events.emit("pin_changed", {"session_id": session.id, **session.events[0].data})
        else:
            session = loaded if loaded is not None else self.cache.load(session_id)
            if session.status == "closed":
                raise SessionClosed(session.id)
            self.pins.pin_for_turn(session, prompt, model)
        msgs = session.messages
        last = msgs[-1] if msgs else None
        # asking again after a failed turn answers the same message; the same words while a turn
        # is still answering them (a double submit, another thread or process) are a new question
        unclaim = None
        if (last is not None and last.role == "user" and last.content == prompt
                and last.status == "unanswered" and self.claims.claim(last.id)):
            unclaim, session = self.claims.claim_stored(session, last)
            msgs = session.messages
        if unclaim is not None:
            user, history, reused = last, msgs[:-1], True
        else:
            user = self.counted(Message(role="user", content=prompt), session.pinned_model)
            history = list(msgs)
            self.claims.claim(user.id)
            self.cache.append_message(session, user)
            self.events.emit("message", {"session_id": session.id, "message": user})
            reused = False
        chain = self.pins.chain_for(session)
        if self.config.notice and not self._noticed and chain[0] == self.config.default_model:
            self._noticed = True
            log.warning(self.config.notice)  # once per client: how to configure a real model
        return TurnStart(session, user, chain, history, reused, uncounted=[m for m in history if not m.tokens],
                         unclaim=unclaim)

    def start_retry(self, session_id: str, replace: bool = False) -> TurnStart:
        """The last user message with no answer after it, answered in place. `replace`: the
        last user message even if answered (`/retry`); what followed it is removed once the new
        answer is stored, so a failed or stopped regeneration leaves the old answer standing."""
        self.claims.end_open_stream(session_id)
        session = self.cache.load(session_id)
        if session.status == "closed":
            raise SessionClosed(session.id)
        msgs = session.messages
        for i in range(len(msgs) - 1, -1, -1):
            if msgs[i].role == "assistant" and msgs[i].status == "ok" and not replace:
                break
            if msgs[i].role == "user":
                if not self.claims.claim(msgs[i].id):
                    raise ValueError(f"session {session_id}: its last question is being answered already")
                unclaim, fresh = self.claims.claim_stored(session, msgs[i], tail=len(msgs) - i)
                if unclaim is None:
                    raise ValueError(f"session {session_id}: its last question is being answered already")
                session, msgs = fresh, fresh.messages
                chain = self.pins.chain_for(session)
                return TurnStart(session, msgs[i], chain, msgs[:i], True,
                                 replaces=list(msgs[i + 1:]) if replace else [],
                                 uncounted=[m for m in msgs[:i] if not m.tokens], unclaim=unclaim)
        what = "no question to answer again" if replace else "no unanswered message to retry"
        raise ValueError(f"session {session_id} has {what}")

    # -- turn end ----------------------------------------------------------------------
    def _streak(self, ts: TurnStart) -> int:
        """Consecutive earlier turns the pinned model failed, kept in the metadata of the last
        turn's outcome: its answer, or its question left unanswered. A partial answer kept
        after a failure, or a note the app added since, carries none and is passed over."""
        prev = next((m for m in islice(reversed(ts.history), 64)  # a few notes at most, not a whole session
                     if (m.role == "assistant" and m.status == "ok") or (m.role == "user" and m.status == "unanswered")),
                    None)
        before = int(prev.metadata.get("pin_failures", 0)) if prev is not None else 0
        # a retried question carries the count of the turn that failed on it
        return max(before, int(ts.user.metadata.get("pin_failures", 0)) - 1) if ts.reused else before

    def finish(self, ts: TurnStart, out: Outcome, restarts: int = 0, announced: bool = False) -> ChatResult:
        """Store the answer; `announced`: a stream already emitted the fallback event."""
        s, pinned = ts.session, ts.chain[0]
        pin_failed = pinned in out.failed_models
        streak = self._streak(ts) + 1 if pin_failed else 0
        meta: dict[str, Any] = {"litellm_model": out.spec.model, "attempts": len(out.attempts)}
        if out.model != pinned:
            meta["fallback_from"] = pinned
        if streak:
            meta["pin_failures"] = streak
        if restarts:
            meta["restarts"] = restarts
        usage = Usage(**out.usage)
        cut = _cut_cost(out.attempts)
        if cut is not None:
            meta["cut_cost_usd"] = cut
        # the turn's cost, cut answers too; unpriced (None) if the answer itself could not be priced
        cost = out.cost_usd + (cut or 0.0) if out.cost_usd is not None else None
        answer = Message(role="assistant", content=out.text, model=out.model, usage=usage,
                         cost_usd=cost, latency_ms=round(out.latency_ms, 3), metadata=meta)
        self.counted(answer, pinned)
        self.cache.append_message(s, answer)
        try:  # released once the question is marked answered: another process then sees it so
            self._drop_replaced(ts)
            self._save_counts(ts)
            if ts.user.status != "ok":
                self.cache.forget(s.id)
                self.store.update_message(s.id, ts.user.id, {"status": "ok"})
        finally:
            self.claims.release(ts)
        self.events.emit("message", {"session_id": s.id, "message": answer})
        if out.model != pinned:
            self.cache.forget(s.id)
            data = {"from": pinned, "to": out.model,
                    "attempts": [a.to_dict() for a in out.attempts], "mid_stream": bool(restarts)}
            self.store.add_event(s.id, SessionEvent(type="fallback", data=data))
            if not announced:
                self.events.emit("fallback", {"session_id": s.id, "from_model": pinned, "to_model": out.model, **data})
        n = self.config.repin_after_failures
        if n and streak >= n and out.model != pinned:
            self.pins.set_pin(s.id, out.model, f"{AUTO_PIN}{pinned} failed {streak} turns in a row", pinned)
            pinned = out.model
        w = out.prepared.window
        if self.context.summary:
            self.summaries.later(out, s, w)
        return ChatResult(
            text=out.text, session_id=s.id, model=out.model, pinned_model=pinned,
            fallback_from=ts.chain[0] if out.model != ts.chain[0] else None, attempts=out.attempts,
            usage=dict(out.usage), cost_usd=cost, latency_ms=out.latency_ms,
            turn_ms=round((time.perf_counter() - ts.started) * 1000, 3), window_tokens=out.prepared.tokens, window_dropped=getattr(w, "dropped", 0) or 0,
            litellm_model=out.spec.model, message_id=answer.id, user_message_id=ts.user.id, restarts=restarts,
        )

    def _save_counts(self, ts: TurnStart) -> None:
        """Counts this turn's window made for history stored without them (added before the
        tokenizer was read, imported, or written by an older tether): saved once, so a later
        process does not count the whole session again. A count is a cache: never fatal."""
        counts = {m.id: m.tokens for m in ts.uncounted if m.tokens}
        if counts:
            try:
                self.cache.save_counts(ts.session, counts)
            except Exception as e:  # noqa: BLE001
                log.debug("could not save token counts for session %s: %s", ts.session.id, e)

    def counted(self, message: Message, model: str | None) -> Message:
        """Count a new message's tokens for the session's model before it is written, so the
        count is stored with it: a session resumed by a new process then tokenizes only what
        it never counted (the window counts the same text this turn anyway: no extra work).
        Skipped while the model's tokenizer is not loaded yet: nothing may delay or risk
        saving the user's message, and a count is only a cache."""
        try:
            enc = encoding_for(self.config.spec(model or self.config.default_model).model)
            if encoding_loaded(enc):
                content_tokens(message, enc)
        except Exception as e:  # noqa: BLE001 - a count is a cache; the message is saved regardless
            log.debug("could not count the tokens of message %s: %s", message.id, e)
        return message

    def failed(self, ts: TurnStart, err: BaseException, dropped: tuple[str, str] | None = None) -> None:
        """No model answered: keep the question, marked unanswered; record and announce the error.
        `dropped`: (model, text) of a streamed answer cut short that the user saw last: kept,
        marked interrupted, as when a stream is closed."""
        sid = ts.session.id
        self.cache.forget(sid)
        if isinstance(err, AllModelsFailed):
            err.session_id = sid
        fields: dict[str, Any] = {} if ts.keeps_answer else {"status": "unanswered"}
        if ts.chain and self.config.repin_after_failures:
            fields["metadata"] = {**ts.user.metadata, "pin_failures": self._streak(ts) + 1}
        try:
            if fields:
                self.store.update_message(sid, ts.user.id, fields)
            if dropped and dropped[1] and not ts.keeps_answer:
                cuts = [a for a in getattr(err, "attempts", []) if a.completion_tokens is not None]
                paid = _usage(cuts[-1].window_tokens or 0, cuts[-1].completion_tokens or 0) if cuts else None
                self._keep_partial(sid, dropped[1], dropped[0], None, paid, _cut_cost(cuts))
                self._drop_replaced(ts)
            attempts = [a.to_dict() for a in getattr(err, "attempts", [])]
            self.store.add_event(sid, SessionEvent(type="error", data={"error": str(err)[:500], "attempts": attempts}))
        finally:
            self.claims.release(ts)
            self.events.emit("error", {"session_id": sid, "error": err, "message_id": ts.user.id})

    def announce_fallback(self, ts: TurnStart, to_model: str, mid_stream: bool, attempts: list[Any]) -> None:
        """A stream's first text from a fallback model: tell the app now, not after the answer
        (`attempts`: the failed ones so far; the answering one is still streaming)."""
        self.events.emit("fallback", {"session_id": ts.session.id, "from_model": ts.chain[0], "to_model": to_model,
                                      "from": ts.chain[0], "to": to_model, "attempts": [a.to_dict() for a in attempts],
                                      "mid_stream": mid_stream})

    def interrupted(self, ts: TurnStart, text: str, model: str | None, started: float,
                    prompt_tokens: int | None = None, earlier: list[Any] | None = None) -> Message | None:
        """A stream the caller abandoned: store what was shown, marked interrupted, with what it
        cost as far as it went (`prompt_tokens`: its window; `earlier`: the attempts so far,
        answers cut short among them)."""
        self.claims.release(ts)
        self.cache.forget(ts.session.id)
        if ts.keeps_answer:  # a stopped regeneration: the whole old answer stands, not a partial new one
            return None
        if not text:
            self.store.update_message(ts.session.id, ts.user.id, {"status": "unanswered"})
            return None
        paid, cost = None, _cut_cost(earlier or [])
        if model and prompt_tokens is not None:
            try:
                completion, price = self.router.spent(self.config.spec(model), self.router.catalogue.info(model),
                                                      prompt_tokens, text)
                paid = _usage(prompt_tokens, completion)
                cost = (cost or 0.0) + price if price is not None else cost
            except Exception as e:  # noqa: BLE001 - a cost estimate never stops the text being kept
                log.debug("could not price the interrupted answer: %s", e)
        kept = self._keep_partial(ts.session.id, text, model, round((time.perf_counter() - started) * 1000, 3),
                                  paid, cost)
        self._drop_replaced(ts)  # older partial answers give way to the newest
        return kept

    def _drop_replaced(self, ts: TurnStart) -> None:
        """Remove what a regeneration replaces, once its successor is on disk (crash-safe: at
        every moment the session holds the old answer, the new one, or both)."""
        for m in ts.replaces:
            self.store.remove_message(ts.session.id, m.id)
        if ts.replaces:
            self.cache.forget(ts.session.id)

    def _keep_partial(self, sid: str, text: str, model: str | None, latency_ms: float | None,
                      usage: Usage | None = None, cost_usd: float | None = None) -> Message:
        """Store the part of an answer the user saw, marked interrupted (never sent in windows),
        with its estimated usage and cost: it was paid for."""
        meta = {"estimated_usage": True} if usage is not None else {}
        m = Message(role="assistant", content=text, model=model, status="interrupted", latency_ms=latency_ms,
                    usage=usage, cost_usd=cost_usd, metadata=meta)
        self.store.append_message(sid, m)
        self.events.emit("message", {"session_id": sid, "message": m})
        return m

    # -- the turn ---------------------------------------------------------------------
    def chat_once(self, prompt: str, session_id: str | None = None, model: str | None = None,
                  **params: Any) -> ChatResult:
        ts = self.start(prompt, session_id, model)
        return self.run(ts, params)

    def run(self, ts: TurnStart, params: dict[str, Any]) -> ChatResult:
        build = self.builder(ts.session, ts.history, ts.user.content)
        try:
            out = self.router.complete(ts.chain, build, params)
        except Exception as e:
            self.failed(ts, e)
            raise
        except BaseException:  # Ctrl-C mid-call: the question stays, marked unanswered
            self.claims.release(ts)
            self.cache.forget(ts.session.id)
            self.store.update_message(ts.session.id, ts.user.id, {"status": "unanswered"})
            raise
        return self.finish(ts, out)

    def cheap_io(self) -> bool:
        """Whether storing a turn is a few page-cache writes (no fsync, no network; with summaries
        on, starting their thread is left off the event loop too)."""
        return getattr(self.store, "fsync", True) is False and not self.context.summary

    def cheap_start(self, session_id: str | None, model: str | None) -> Session | None:
        """The session, loaded, when start() is cheap enough to run on an event loop, else None.

        Cheap: the session is in memory and current, or its file is small (read inline, then
        cached), and it is already pinned to the model asked for, so start() is one append: no
        header rewrite (a pin change fsyncs), no litellm import (checking a raw model name).
        """
        if session_id is None or not self.cheap_io() or not (model is None or model in self.config.models):
            return None
        st = self.cache.cheap(session_id)
        if st is None:
            return None
        try:
            session = self.cache.load(session_id, st)  # cached, or a small file read now and cached
        except Exception:  # noqa: BLE001 - start() in a thread reports it
            return None
        if not session.pinned_model or (model is not None and model != session.pinned_model):
            return None
        return session

    def abandon(self, ts: TurnStart) -> None:
        """The caller cancelled the turn before any answer: its question stays, unanswered
        (or, for a regeneration, answered as before)."""
        self.claims.release(ts)
        self.cache.forget(ts.session.id)
        if not ts.keeps_answer:
            self.store.update_message(ts.session.id, ts.user.id, {"status": "unanswered"})

    def warm(self, ts: TurnStart) -> None:
        """Import litellm and read the first model's tokenizer: seconds, once per process,
        that an async turn spends in a thread instead of stalling its event loop."""
        from ..context.tokens import get_encoding
        from ..router._lite import litellm

        litellm()
        get_encoding(encoding_for(self.config.spec(ts.chain[0]).model))

    def cold(self, ts: TurnStart) -> bool:
        """Whether warm() has work to do for this turn."""
        from ..router._lite import loaded

        return not (loaded() and encoding_loaded(encoding_for(self.config.spec(ts.chain[0]).model)))

    async def arun(self, ts: TurnStart, params: dict[str, Any]) -> ChatResult:
        import asyncio

        from .._aio import settled

        build = self.builder(ts.session, ts.history, ts.user.content)
        try:
            if self.cold(ts):
                await asyncio.to_thread(self.warm, ts)
            # Let turns started at the same moment save their prompts first. litellm prepares
            # each call in its executor's threads, and every file syscall of a later turn's
            # save would hand those threads the GIL; saved first, the saves cost only
            # themselves (a burst of 500 turns: ~0.2 ms less CPU per turn, ~4% more throughput).
            await asyncio.sleep(0)
            out = await self.router.acomplete(ts.chain, build, params)
        except asyncio.CancelledError:
            await settled(self.abandon, ts)
            raise
        except Exception as e:
            await settled(self.failed, ts, e)
            raise
        if self.cheap_io():
            # two appends to the page cache (~50 us each): a thread hop costs more than the
            # work, and under load the worker then waits for the GIL behind the event loop
            return self.finish(ts, out)
        return await settled(self.finish, ts, out)

    def models(self) -> list[dict[str, Any]]:
        return model_rows(self.config, self.router)


def _cut_cost(attempts: list[Any]) -> float | None:
    """What the answers cut short mid-stream among `attempts` cost (estimated); None if none
    was priced (0.0 is a price: a free model's)."""
    costs = [a.cost_usd for a in attempts if a.kind != "ok" and a.cost_usd is not None]
    return sum(costs) if costs else None


def _usage(prompt: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

"""The optional rolling summary of turns the window leaves out, made after the turn.

The summary is made by the model that just answered, once its answer is stored, in a
thread of its own: the turn returns at once, not after a second model call. It is kept as a
"summary" event in the session; a failure to summarise never fails a turn (the next turn
tries again). A process exiting waits for one being made, up to SUMMARY_EXIT_WAIT seconds.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..router.config import RouterConfig
from ..router.engine import Outcome, Router
from ..router.errors import safe_error
from ..sessions import Session, SessionStore
from .cache import SessionCache
from .settings import ContextSettings

log = logging.getLogger("tether")
SUMMARY_EXIT_WAIT = 15.0  # seconds a process exiting gives rolling summaries still being made
_THREADS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


class SummaryFailed(Exception):
    """The summary's model call failed; the message is the provider's, with keys hidden."""


class Summaries:
    """Starts the summary threads of one client: at most one at a time per session."""

    def __init__(self, store: SessionStore, cache: SessionCache, router: Router, config: RouterConfig,
                 settings: ContextSettings) -> None:
        self.store, self.cache, self.router, self.config, self.settings = store, cache, router, config, settings
        self._lock = threading.Lock()
        self._running: set[str] = set()  # sessions whose summary is being extended now
        self._threads: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()  # this client's

    def later(self, out: Outcome, session: Session, window: Any) -> None:
        """Extend the session's summary if it is due, sized to the answering model's window."""
        with self._lock:
            if session.id in self._running:
                return
            self._running.add(session.id)
        window_size = out.info.context_window
        reply = min(self.settings.summary_words * 2 + 64, window_size // 4)  # the words asked for, and slack
        room = window_size - reply - 64

        def job() -> None:
            try:
                summarise(self.store, lambda msgs: self._complete(out.model, msgs, reply), session, window,
                          self.settings, room, out.spec.model, lambda: self.cache.load(session.id))
            except Exception as e:  # noqa: BLE001 - deleted meanwhile, or the store failed: a later turn retries
                log.debug("no summary for session %s: %s", session.id, safe_error(e))
            finally:
                with self._lock:
                    self._running.discard(session.id)

        th = threading.Thread(target=job, name=f"tether-summary-{session.id}", daemon=True)
        _THREADS.add(th)
        self._threads.add(th)
        th.start()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds in all for this client's summaries; True if none is left."""
        end = time.monotonic() + timeout
        for th in list(self._threads):
            th.join(max(0.0, end - time.monotonic()))
        return not any(th.is_alive() for th in list(self._threads))

    def _complete(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """One plain call to `model`: no window, no fallback, no record."""
        from ..router._lite import litellm

        spec = self.config.spec(model)
        # a cap on the reply, unless the model's params manage its length (a thinking budget must
        # stay below max_tokens; a reasoning model counts its reasoning in max_completion_tokens)
        cap = {} if {"thinking", "max_completion_tokens", "reasoning_effort"} & spec.params.keys() else {
            "max_tokens": max_tokens}
        kwargs = self.router.call_kwargs(spec, messages, cap)
        try:
            return litellm().completion(**kwargs).choices[0].message.content or ""
        except Exception as e:  # noqa: BLE001 - its text may repeat the key: only a key-free copy leaves
            raise SummaryFailed(safe_error(e, kwargs.get("api_key"))) from None


def summarise(store: SessionStore, complete: Any, session: Session, window: Any, settings: ContextSettings,
              max_tokens: int | None = None, model: str | None = None,
              current: Callable[[], Session] | None = None) -> bool:
    """Extend the session's rolling summary if enough left-out messages are uncovered.

    `complete(messages) -> str` calls the model; `max_tokens`: what its request may hold (the
    window less the summary's reply); `current()`: the session as stored now, read before the
    summary is stored (the app may have cleared or deleted it meanwhile). Returns True when a
    new summary was stored.
    """
    if not settings.summary or window is None:
        return False
    from ..context.summary import digest, pending, summary_event, summary_prompt

    todo = pending(session, window)
    if len(todo) < settings.summary_every:
        return False
    upto = todo[-1] + 1
    try:
        request, upto = summary_prompt(session, upto, settings.summary_words, max_tokens, model)
        if request is None:
            return False  # no room for any of it beside the earlier summary
        text = complete(request).strip()
    except Exception as e:  # noqa: BLE001 - the answer is stored; a summary can wait for the next turn
        log.warning("could not update the summary of session %s: %s", session.id, safe_error(e))
        return False
    if not text:
        log.warning("the summary of session %s came back empty", session.id)
        return False
    event = summary_event(session, upto, text)
    if current is not None:
        now = current().messages
        if len(now) < upto or now[upto - 1].id != event.data["upto"] or digest(now[:upto]) != event.data["digest"]:
            return False  # cleared or edited meanwhile: this summary is of text that is gone
    store.add_event(session.id, event)  # appended: never overwrites metadata an app set meanwhile
    session.events.append(event)
    return True


def _finish() -> None:
    end = time.monotonic() + SUMMARY_EXIT_WAIT
    for th in list(_THREADS):
        th.join(max(0.0, end - time.monotonic()))


# Run before concurrent.futures stops taking work at exit (its own hook is registered this way,
# earlier, and these run last-registered first): after that, litellm's calls fail with "cannot
# schedule new futures after shutdown". A plain atexit hook would run too late.
getattr(threading, "_register_atexit", atexit.register)(_finish)

"""In-process circuit breaker: later turns skip a model that keeps failing, then probe it.

litellm's Router has per-deployment cooldowns, but tether calls one model at a
time with its own window, and the CLI wants to show the state, so it is kept here.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreaker:
    """closed -> open after `failures` consecutive failed turns -> half-open after `cooldown` s.

    In half-open one caller gets to probe; success closes the circuit, failure re-opens it.
    `failures=0` disables the breaker.
    """

    def __init__(self, failures: int = 3, cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def allow(self, model: str) -> bool:
        """May this model be tried now? Claims the probe slot when the cool-down is over."""
        if self.threshold <= 0:
            return True
        with self._lock:
            st = self._states.get(model)
            if st is None or st.failures < self.threshold:
                return True
            if self._clock() < st.open_until or st.probing:
                return False
            st.probing = True
            return True

    def success(self, model: str) -> None:
        with self._lock:
            self._states.pop(model, None)

    def failure(self, model: str) -> None:
        if self.threshold <= 0:
            return
        with self._lock:
            st = self._states.setdefault(model, _State())
            st.failures += 1
            st.probing = False
            if st.failures >= self.threshold:
                st.open_until = self._clock() + self.cooldown

    def release(self, model: str) -> None:
        """A claimed probe that was never sent (e.g. cancelled) frees its slot."""
        with self._lock:
            st = self._states.get(model)
            if st:
                st.probing = False

    def state(self, model: str) -> dict[str, object]:
        """{"state": closed|open|half-open, "failures": n, "retry_in": seconds or None}."""
        with self._lock:
            st = self._states.get(model)
            if st is None or self.threshold <= 0 or st.failures < self.threshold:
                return {"state": "closed", "failures": st.failures if st else 0, "retry_in": None}
            left = st.open_until - self._clock()
            if left > 0:
                return {"state": "open", "failures": st.failures, "retry_in": round(left, 3)}
            return {"state": "half-open", "failures": st.failures, "retry_in": 0.0}

    def reset(self, model: str | None = None) -> None:
        with self._lock:
            if model is None:
                self._states.clear()
            else:
                self._states.pop(model, None)

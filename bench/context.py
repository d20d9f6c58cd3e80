#!/usr/bin/env python3
"""Context-window build time on a long session, and tokens sent per turn vs the full history.

A synthetic 10,000-message session (Message objects, as the client holds them)
grows by one user/assistant pair per turn; each turn builds the window for the
new user message. Prints figures; no pass/fail. Run: python bench/context.py
"""
from __future__ import annotations

import random
import statistics
import time

from tether.context import build_window, count_tokens
from tether.sessions import Message

WORDS = (
    "project deadline budget meeting python rust database index query cache latency deploy server "
    "client token window model prompt reply summary garden dinner recipe travel flight hotel museum "
    "concert guitar piano painting novel chapter library school course exam teacher student family "
    "weekend holiday birthday present running marathon bicycle mountain river ocean beach forest "
    "coffee tea breakfast lunch market price invoice contract lawyer doctor appointment medicine"
).split()
FILL = "the a and to of in is it that for with on as was at by this we you i my".split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) if rng.random() < 0.35 else rng.choice(FILL) for _ in range(n)).capitalize() + "."


def session(rng: random.Random, n: int) -> list[Message]:
    msgs = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append(Message(role=role, content=sentence(rng, rng.randint(8, 60))))
    return msgs


def run(n_history: int = 10_000, turns: int = 40, budgets: tuple[int | None, ...] = (4000, None)) -> None:
    rng = random.Random(7)
    base = session(rng, n_history)
    for budget in budgets:
        hist = list(base)
        label = f"budget={budget}" if budget else "budget=derived from gpt-4o-mini (128k window)"
        t0 = time.perf_counter()
        w = build_window(hist, "cold start", budget_tokens=budget, model="gpt-4o-mini")
        cold = time.perf_counter() - t0
        times, sent, full = [], [], []
        for _ in range(turns):
            q = sentence(rng, 12)
            t0 = time.perf_counter()
            w = build_window(hist, q, budget_tokens=budget, model="gpt-4o-mini")
            times.append(time.perf_counter() - t0)
            sent.append(w.tokens)
            full.append(sum(count_tokens(m, "gpt-4o-mini") for m in hist))
            hist.append(Message(role="user", content=q))
            hist.append(Message(role="assistant", content=sentence(rng, rng.randint(8, 60))))
        times.sort()
        print(f"{n_history:,}-message session, {label}")
        print(f"  first build (tokenize + index; litellm import if derived): {1000 * cold:8.1f} ms")
        print(f"  per new turn, median / p95 / max:          {1000 * statistics.median(times):8.2f} / "
              f"{1000 * times[int(0.95 * (len(times) - 1))]:.2f} / {1000 * times[-1]:.2f} ms")
        print(f"  history tokens sent per turn (median):     {statistics.median(sent):10,.0f}")
        print(f"  full history tokens (median):              {statistics.median(full):10,.0f}"
              f"  ({100 * statistics.median(sent) / statistics.median(full):.1f}% sent)")
        print(f"  messages kept / dropped (last turn):       {len(w.messages):,} / {w.dropped:,}")


if __name__ == "__main__":
    run()

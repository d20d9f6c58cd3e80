#!/usr/bin/env python3
"""Per-turn overhead of tether's chat turn beside bare litellm, measured in one run.

1. A 1,000-message session: `AsyncTether.chat_once` (save prompt, load session,
   build the window, call, save answer) versus a bare `litellm.acompletion`
   sending exactly the messages tether sent, to the same local server.
   Calls alternate so both see the same machine state. Target ratio <= 1.10.
2. 500 concurrent `AsyncTether.chat_once` over 500 sessions versus 500
   concurrent bare `acompletion` calls, in paired rounds (see `throughput`).
   The headline is throughput over the whole run: all calls over all the time
   each side took. Target ratio >= 0.9. On a 2-core machine two identical bare
   bursts differ by up to ~30% (`--calibrate` measures it), hence 8 rounds.

The OpenAI-compatible server (tests/fakeserver.py) runs in a child process so
its CPU does not count against either side.

    python bench/turn.py [--turns 40] [--history 1000] [--concurrent 500] [--rounds 8] [--calibrate]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tether import AsyncTether  # noqa: E402
from tether.router._lite import litellm  # noqa: E402
from tether.sessions import Message, Session  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog while the session keeps growing."


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakeserver.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    return proc, f"http://127.0.0.1:{port}/v1"


def config(base: str) -> dict:
    # a window big enough that the whole 1,000-message history is sent every turn
    return {"default_model": "main", "breaker_failures": 0, "models": {
        "main": {"model": "openai/main", "api_base": base, "api_key": "sk-bench", "context_window": 200_000}}}


def bare_kwargs(base: str, messages: list[dict]) -> dict:
    return {"model": "openai/main", "api_base": base, "api_key": "sk-bench", "messages": messages,
            "timeout": 120.0, "max_retries": 0}


async def overhead(t: AsyncTether, base: str, history: int, turns: int) -> dict:
    s = Session(pinned_model="main", pin_reason="bench", messages=[
        Message(role="user" if i % 2 == 0 else "assistant", content=f"{i} {TEXT}") for i in range(history)])
    t.store.create(s)
    lm = litellm()
    last: dict = {}
    real = lm.acompletion

    async def capture(**kw):  # the exact messages tether sent (a pass-through; costs nothing measurable)
        last["messages"] = kw["messages"]
        return await real(**kw)

    lm.acompletion = capture
    # warm up both paths (imports, tokenizer, connection pool, token-count caches)
    for i in range(3):
        await t.chat_once(f"warm {i}", session_id=s.id)
        await real(**bare_kwargs(base, last["messages"]))
    ours, bare, sent = [], [], []
    for i in range(turns):
        t0 = time.perf_counter()
        await t.chat_once(f"turn {i} {TEXT}", session_id=s.id)
        ours.append(time.perf_counter() - t0)
        msgs = list(last["messages"])
        sent.append(len(msgs))
        t0 = time.perf_counter()
        await real(**bare_kwargs(base, msgs))
        bare.append(time.perf_counter() - t0)
    lm.acompletion = real
    mo, mb = statistics.median(ours), statistics.median(bare)
    return {"history_messages": history, "turns": turns, "messages_sent_median": statistics.median(sent),
            "tether_ms_median": round(mo * 1000, 2), "bare_ms_median": round(mb * 1000, 2),
            "tether_ms_mean": round(statistics.mean(ours) * 1000, 2), "bare_ms_mean": round(statistics.mean(bare) * 1000, 2),
            "ratio_median": round(mo / mb, 3), "ratio_mean": round(statistics.mean(ours) / statistics.mean(bare), 3)}


async def burst(calls: Iterable[Awaitable[Any]], n: int) -> float:
    """Calls per second for n calls run at once."""
    t0 = time.perf_counter()
    await asyncio.gather(*calls)
    return n / (time.perf_counter() - t0)


async def throughput(t: AsyncTether, base: str, n: int, rounds: int) -> dict:
    """`rounds` pairs of bursts over the same n sessions: n concurrent tether turns, and n
    concurrent bare calls sending exactly the messages tether sends in that round.

    Round 1 reads the sessions from disk; later rounds find them in tether's session cache.
    Whichever side goes first in a round also pays for litellm's deferred logging of the
    round before, so the order alternates: tether first in even rounds (the bare side then
    replays what tether sent), bare first in odd ones (sending what `preview_window` says
    tether will send; the report counts any turn that then sent something else).
    """
    sids = []
    for i in range(n):
        s = Session(pinned_model="main", pin_reason="bench")
        t.store.create(s)
        sids.append(s.id)
    lm = litellm()
    real = lm.acompletion
    sent: dict[str, list] = {}

    async def capture(**kw):  # pass-through that remembers what each session's turn sent
        sent[kw["messages"][-1]["content"]] = kw["messages"]
        return await real(**kw)

    await warm_pool(base, n)
    ours: list[float] = []
    bare: list[float] = []
    mismatched = 0
    for rnd in range(rounds):
        prompts = [f"round {rnd} question {i} {TEXT}" for i in range(n)]
        turns = lambda: (t.chat_once(p, session_id=sid) for p, sid in zip(prompts, sids))  # noqa: E731
        if rnd % 2 == 0:
            lm.acompletion = capture
            ours.append(await burst(turns(), n))
            lm.acompletion = real
            planned = [sent[p] for p in prompts]
            bare.append(await burst((real(**bare_kwargs(base, fresh(m))) for m in planned), n))
        else:  # what tether will send, worked out (untimed) before either burst
            planned = [t.sync.preview_window(sid, p).to_messages() for sid, p in zip(sids, prompts)]
            bare.append(await burst((real(**bare_kwargs(base, fresh(m))) for m in planned), n))
            lm.acompletion = capture
            ours.append(await burst(turns(), n))
            lm.acompletion = real
            mismatched += sum(sent[p] != m for p, m in zip(prompts, planned))
    ratios = [o / b for o, b in zip(ours, bare)]
    # throughput over the whole run: all calls over all the time each side took
    ours_all = len(ours) * n / sum(n / x for x in ours)
    bare_all = len(bare) * n / sum(n / x for x in bare)
    return {"calls": n, "rounds": rounds, "tether_calls_per_s": [round(x, 1) for x in ours],
            "bare_calls_per_s": [round(x, 1) for x in bare], "ratio_per_round": [round(r, 3) for r in ratios],
            "tether_overall": round(ours_all, 1), "bare_overall": round(bare_all, 1),
            "throughput_ratio": round(ours_all / bare_all, 3),
            "median_round_ratio": round(statistics.median(ratios), 3),
            "turns_that_sent_other_messages": mismatched}


async def calibration(base: str, n: int, rounds: int) -> dict:
    """The same bare burst twice per round: how far apart two identical runs land here."""
    await warm_pool(base, n)
    ratios = []
    for rnd in range(rounds):
        msgs = [[{"role": "user", "content": f"round {rnd} question {i} {TEXT}"}] for i in range(n)]
        a = await burst((litellm().acompletion(**bare_kwargs(base, fresh(m))) for m in msgs), n)
        b = await burst((litellm().acompletion(**bare_kwargs(base, fresh(m))) for m in msgs), n)
        ratios.append(a / b)
    return {"rounds": rounds, "first_over_second_per_round": [round(r, 3) for r in ratios],
            "median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}


def fresh(messages: list[dict]) -> list[dict]:
    return [dict(m) for m in messages]  # new dicts, as an app would build them


async def warm_pool(base: str, n: int) -> None:
    """Open n pooled connections (and n server threads) first, so no burst pays for them."""
    warm = [f"warm {i} {TEXT}" for i in range(n)]
    for _ in range(2):
        await asyncio.gather(*(litellm().acompletion(**bare_kwargs(base, [{"role": "user", "content": p}]))
                               for p in warm))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--concurrent", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--calibrate", action="store_true", help="also time bare against bare (the noise floor)")
    args = ap.parse_args()
    proc, base = start_server()
    try:
        with tempfile.TemporaryDirectory() as home:
            t = AsyncTether(home=home, config=config(base))
            out = {"overhead": await overhead(t, base, args.history, args.turns),
                   "concurrency": await throughput(t, base, args.concurrent, args.rounds)}
            if args.calibrate:
                out["calibration"] = await calibration(base, args.concurrent, args.rounds)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)
    print(json.dumps(out, indent=2))
    o, c = out["overhead"], out["concurrency"]
    print(f"\n1,000-message session: tether {o['tether_ms_median']} ms vs bare {o['bare_ms_median']} ms per turn "
          f"(ratio {o['ratio_median']}, target <= 1.10)")
    print(f"{c['calls']} concurrent turns, {c['rounds']} rounds: tether {c['tether_overall']}/s vs bare "
          f"{c['bare_overall']}/s overall (ratio {c['throughput_ratio']}, target >= 0.9; "
          f"median of the rounds' ratios {c['median_round_ratio']})")
    if "calibration" in out:
        k = out["calibration"]
        print(f"bare vs the same bare burst: median {k['median']}, range {k['min']}-{k['max']} (noise floor)")


if __name__ == "__main__":
    asyncio.run(main())

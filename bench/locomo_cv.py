#!/usr/bin/env python3
"""Per-conversation evidence recall on LoCoMo, to judge whether a change generalises.

Uses the shared harness (../shared/bench/locomo_recall.py: its loader, token
counts and 2% slack) and prints, for each view and budget, the overall recall
(categories 1-4) per conversation, their mean, and the spread. With --compare,
a second policy (JSON of build_window policy options) is scored beside the
default, and the per-conversation differences are shown: a change that helps
in most conversations is more likely to hold on held-back data than one that
wins big on one.

    python bench/locomo_cv.py --data ../shared/bench/locomo-dev.json
    python bench/locomo_cv.py --data ... --compare '{"recency_share": 0.4}'
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "..", "..", "shared", "bench", "locomo_recall.py")


def harness(path: str = HARNESS):
    spec = importlib.util.spec_from_file_location("locomo_recall", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def score(hz, convs, view: str, budget: int, options: dict, model: str = "gpt-4o-mini"):
    """{conversation: {category: [scores]}} and the number of windows over budget."""
    from tether.context import build_window

    out: dict[str, dict[int, list[float]]] = {}
    over = 0
    for sid, msgs, session_of, ntok, qas in convs:
        per = defaultdict(list)
        for question, cat, ev in qas:
            history = hz.history_for(view, msgs, session_of, ev)
            w = build_window([dict(m) for m in history], question, budget_tokens=budget, model=model, **options)
            got = [m.get("id") for m in w.messages]
            used = sum(ntok.get(i, 10**6) for i in got)
            if used > budget * hz.SLACK:
                over += 1
                s = 0.0
            else:
                s = len(set(ev) & set(got)) / len(ev)
            per[cat].append(s)
        out[sid] = per
    return out, over


def overall(per: dict[int, list[float]]) -> float:
    items = [s for c in (1, 2, 3, 4) for s in per.get(c, [])]
    return 100 * statistics.fmean(items) if items else float("nan")


def pooled(res) -> float:
    items = [s for per in res.values() for c in (1, 2, 3, 4) for s in per.get(c, [])]
    return 100 * statistics.fmean(items)


def loo(hz, convs, grid: dict, base: dict, views: list[str], budgets: list[int]) -> int:
    """Leave one conversation out: pick the knob value on the others, score it on the one left out."""
    import itertools

    keys = sorted(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    cells = [(v, b) for v in views for b in budgets]
    # table[c][sid][cell] = overall recall of that conversation
    table = []
    for combo in combos:
        per: dict[str, dict] = {}
        for v, b in cells:
            r, _ = score(hz, convs, v, b, {**base, **combo})
            for sid in r:
                per.setdefault(sid, {})[(v, b)] = overall(r[sid])
        table.append(per)
        print(f"{json.dumps(combo)}: " + " ".join(
            f"{v}@{b} {statistics.fmean(per[s][(v, b)] for s in per):.1f}" for v, b in cells), flush=True)
    sids = list(table[0])
    ref = next((k for k, c in enumerate(combos) if all(base.get(x, None) == c[x] for x in keys)), None)
    print("held out | chosen | held-out score per cell (chosen) | minus base")
    for out in sids:
        rest = [s for s in sids if s != out]
        best = max(range(len(combos)), key=lambda k: statistics.fmean(table[k][s][c] for s in rest for c in cells))
        got = [table[best][out][c] for c in cells]
        line = f"{out} | {json.dumps(combos[best])} | " + " ".join(f"{x:5.1f}" for x in got)
        if ref is not None:
            line += " | " + " ".join(f"{x - table[ref][out][c]:+.1f}" for x, c in zip(got, cells))
        print(line)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "bench", "locomo-dev.json"))
    ap.add_argument("--budgets", default="1000,2000,4000")
    ap.add_argument("--views", default="end,soon")
    ap.add_argument("--compare", default=None, help="JSON policy options to score against the default")
    ap.add_argument("--base", default="{}", help="JSON policy options for the baseline")
    ap.add_argument("--loo", default=None,
                    help='JSON {"knob": [values]}: leave-one-conversation-out choice of the knob, chosen on the '
                         'mean of all views and budgets of the other conversations, scored on the one left out')
    args = ap.parse_args()
    hz = harness()
    convs = hz.load(args.data, hz.tiktoken_offline())
    base = json.loads(args.base)
    other = json.loads(args.compare) if args.compare else None
    if args.loo:
        return loo(hz, convs, json.loads(args.loo), base, args.views.split(","),
                   [int(x) for x in args.budgets.split(",")])
    for view in args.views.split(","):
        for b in (int(x) for x in args.budgets.split(",")):
            r0, o0 = score(hz, convs, view, b, base)
            line = f"{view:>4} {b:>5} base {pooled(r0):5.1f} over={o0} | " + " ".join(
                f"{sid}:{overall(r0[sid]):5.1f}" for sid in r0)
            if other is None:
                sp = [overall(r0[s]) for s in r0]
                print(line + f" | min {min(sp):.1f} max {max(sp):.1f}")
                continue
            r1, o1 = score(hz, convs, view, b, {**base, **other})
            diffs = [overall(r1[s]) - overall(r0[s]) for s in r0]
            wins = sum(d > 0 for d in diffs)
            print(f"{view:>4} {b:>5} base {pooled(r0):5.1f} new {pooled(r1):5.1f} "
                  f"({pooled(r1) - pooled(r0):+.1f}, over={o1}) wins {wins}/{len(diffs)} | "
                  + " ".join(f"{d:+.1f}" for d in diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

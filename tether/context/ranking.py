"""Turning relevance scores into an ordered list of units to add to the window."""
from __future__ import annotations

from .items import History
from .relevance import index_for, terms
from .select import Policy


def rank_units(h: History, query: str, policy: Policy) -> list[list[int]]:
    """Units (lists of history indices), most relevant first."""
    qterms = terms(query)
    if not qterms:
        return []
    n = len(h)
    idx = index_for(h.ids, h.contents)
    raw = idx.scores(qterms, n, policy.k1, policy.b)
    if not raw:
        return []
    nw = policy.neighbour_weight
    score: dict[int, float] = {}
    for d, s in raw.items():
        score[d] = score.get(d, 0.0) + s
        if nw:
            for e in (d - 1, d + 1):
                if 0 <= e < n:
                    score[e] = score.get(e, 0.0) + nw * s
    if policy.unit == "pair":
        gscore: dict[int, float] = {}
        for d, s in score.items():
            g = h.group_of[d]
            if s > gscore.get(g, 0.0):
                gscore[g] = s
        order = sorted(gscore, key=lambda g: -gscore[g])
        return [list(range(*h.groups[g])) for g in order]
    order = sorted(score, key=lambda d: -score[d])
    return [[d] for d in order]

"""Turning relevance scores into an ordered list of units to add to the window."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .dates import query_periods
from .items import History
from .relevance import corrected_terms, index_for, query_terms, question_cues, terms
from .select import Policy


def _speaker_terms(h: History) -> dict[str, str]:
    """Stemmed term -> speaker name, for the named speakers of a history."""
    out: dict[str, str] = {}
    for name in set(h.names):
        if name:
            for t in terms(name):
                out[t] = name
    return out


def _feedback(idx: Any, qterms: dict[str, float], raw: np.ndarray, n: int, policy: Policy) -> np.ndarray:
    """Pseudo-relevance feedback: re-score with terms the best-matching messages share."""
    k = min(policy.feedback_docs, n)
    top = np.argpartition(-raw, k - 1)[:k] if k < n else np.arange(n)
    top = [int(d) for d in top if raw[d] > 0]
    if not top:
        return raw
    best = max(raw[d] for d in top)
    weight: dict[str, float] = {}
    for d in top:
        w = raw[d] / best
        for t in set(idx.doc_terms(d)):
            weight[t] = weight.get(t, 0.0) + w
    cand = []
    for t, w in weight.items():
        if t in qterms:
            continue
        df = idx.df(t, n)
        if df < 2:
            continue  # a term from one message only re-finds that message
        cand.append((w * math.log(1 + n / df), t))
    cand.sort(reverse=True)
    query = dict(qterms)
    for _, t in cand[: policy.feedback_terms]:
        query[t] = policy.feedback_weight
    return idx.scores(query, n, policy.k1, policy.b)


def rank_units(h: History, query: str, policy: Policy, enc_name: str | None = None,
               ) -> tuple[list[range], dict[int, float]]:
    """Units (ranges of history indices: turns, or messages), most relevant first, and the
    per-message scores.
    `enc_name`: the window's encoding, whose vocabulary says how rare each query word is."""
    qterms = query_terms(query, enc_name, policy.term_rarity)
    if not qterms:
        return [], {}
    n = len(h)
    idx = index_for(h.ids, h.contents, h.timestamps)
    if policy.typo_weight:
        qterms = corrected_terms(query, qterms, idx, n, enc_name, policy.typo_weight)
    arr = idx.scores(qterms, n, policy.k1, policy.b)
    if policy.feedback_docs and arr.any():
        arr = _feedback(idx, qterms, arr, n, policy)
    if policy.passage_weight and arr.any():
        # passage BM25: query terms split between a question and its answer still match together
        r = max(0, policy.passage_reach)
        kernel = np.array([0.5 ** abs(k) for k in range(-r, r + 1)])
        pa = idx.passage_scores(qterms, n, policy.k1, policy.b, kernel)
        top = pa.max()
        if top > 0:
            arr = arr + pa * (policy.passage_weight * arr.max() / top)
    if policy.embeddings:
        from . import embeddings

        if embeddings.available():
            arr = embeddings.fuse(arr, embeddings.similarities(idx, query, n), policy.embedding_weight)
        else:
            embeddings.warn_missing()
    # only the best candidates go on: enough to fill any budget several times over
    m = policy.candidates
    if m < n:
        top = np.argpartition(-arr, m - 1)[:m]
        raw = {int(d): float(arr[d]) for d in top if arr[d] > 0}
    else:
        raw = {int(d): float(arr[d]) for d in np.flatnonzero(arr)}
    if not raw:
        return [], {}
    if policy.speaker_boost:
        spk = _speaker_terms(h)
        named = {spk[t] for t in qterms if t in spk}
        if named:
            f = 1.0 + policy.speaker_boost
            names = h.names
            raw = {d: (s * f if names[d] in named else s) for d, s in raw.items()}
    if policy.date_boost:
        periods = [(a.toordinal(), b.toordinal()) for a, b in query_periods(query)]
        if periods:
            f = 1.0 + policy.date_boost
            dates = idx.dates
            raw = {d: (s * f if any(a <= dates[d] <= b for a, b in periods) else s) for d, s in raw.items()}
    if policy.answer_boost:
        when, count = question_cues(query)
        if when or count:
            flags = idx.has_time if when else idx.has_number
            f = 1.0 + policy.answer_boost
            raw = {d: (s * f if flags[d] else s) for d, s in raw.items()}
    nw = policy.neighbour_weight
    reach = policy.neighbour_reach
    score: dict[int, float] = {}
    for d, s in raw.items():
        score[d] = score.get(d, 0.0) + s
        if nw:
            w = nw * s
            for k in range(1, reach + 1):
                if d - k >= 0:
                    score[d - k] = score.get(d - k, 0.0) + w
                if d + k < n:
                    score[d + k] = score.get(d + k, 0.0) + w
                w *= 0.5
    if policy.unit == "pair":
        gscore: dict[int, float] = {}
        group_of = h.group_of
        for d, s in score.items():  # a turn is as relevant as its best message
            g = group_of[d]
            if s > gscore.get(g, 0.0):
                gscore[g] = s
        order = sorted(gscore, key=lambda g: -gscore[g])
        groups = h.groups
        return [range(*groups[g]) for g in order], score  # ranges: most are never read
    order = sorted(score, key=lambda d: -score[d])
    return [range(d, d + 1) for d in order], score

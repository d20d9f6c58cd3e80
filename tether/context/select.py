"""The selection policy: which history messages go into the window.

Order of claims on the budget: pinned messages, the most recent whole turn,
then a recency share of recent whole turns (smaller, and kept within the
current sitting, when the query clearly points to older turns), then a
relevance fill of earlier turns ranked against the new message, then any
leftover to recency again.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from .items import SITTING_GAP_HOURS, History


@dataclass(frozen=True)
class Policy:
    """Tunable knobs of the selection; defaults are what the benchmarks were tuned with."""

    # budget shares
    recency_share: float = 0.45      # of the history budget, for the newest whole turns...
    recency_min: float = 0.10        # ...shrunk to this when the query points to older turns:
    recency_gate: int = 10           # no recent message among this many best matches (0: never shrink)
    recent_boost: float = 1.0        # then turns within recent_reach of the end rank (1 + this) x higher
    recent_reach: float = 0.25       # ...(a share of the history budget, from the newest turn back)
    session_gap: float = SITTING_GAP_HOURS  # hours of silence that end a sitting: a shrunk recency share stops there
    truncate_share: float = 0.5      # a message longer than the whole budget is cut to this share of it
    min_truncated: int = 16          # a cut message keeps at least this many tokens of text (the cut marker takes ~12)
    unit: str = "pair"               # "pair": whole user/assistant turns; "message": single messages
    # relevance
    relevance: bool = True           # fill the rest with earlier turns ranked against the query
    k1: float = 0.9                  # BM25 term-frequency saturation
    b: float = 0.4                   # BM25 length normalisation (chat turns vary little in length)
    typo_weight: float = 1.0         # a query word the history lacks also matches its word one edit away, this much
    term_rarity: float = 1.0         # weigh query words by their rarity in English (tokenizer ranks) to this power
    feedback_docs: int = 3           # pseudo-relevance feedback: expand the query from the top messages...
    feedback_terms: int = 5          # ...with this many of their terms...
    feedback_weight: float = 0.3     # ...each weighted this much (a query word weighs its rarity, ~0.5-1)
    passage_weight: float = 0.8      # fuse each message's BM25 with that of the passage around it...
    passage_reach: int = 2           # ...of this many messages either side (weights halving each step)
    neighbour_weight: float = 0.7    # share of a message's score given to its neighbours (answers follow questions)
    neighbour_reach: int = 2         # how many messages either side get that share (halving each step)
    speaker_boost: float = 0.3       # extra weight for messages by a speaker the query names
    date_boost: float = 1.5          # extra weight for messages sent around a date the query names
    answer_boost: float = 0.5        # "when"/"how many" questions favour messages with a time/number
    embeddings: bool = False         # fuse MiniLM similarity with BM25 (needs the tether[embeddings] extra)
    embedding_weight: float = 0.4    # weight of the dense score against BM25 (both scaled to [0, 1])
    candidates: int = 600            # messages ranked in full (the best by BM25); the rest fall to recency
    # extras
    summary_text: str | None = None  # a rolling summary of omitted turns (see summary.py); costs history budget

    def __post_init__(self) -> None:
        """Out-of-range values would not fail, only choose badly; say which one is wrong."""
        for name in _SHARES:
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name}: must be between 0 and 1, got {v!r}")
        for name in _NON_NEGATIVE:
            v = getattr(self, name)
            if not 0 <= v < math.inf:  # NaN fails this too
                raise ValueError(f"{name}: must be a finite number, not negative, got {v!r}")
            top = _MAXIMA.get(name, 1e6)  # past these a window takes seconds, or scores overflow to NaN
            if v > top:
                raise ValueError(f"{name}: must be at most {top:g}, got {v!r}")
        if self.candidates < 1:
            raise ValueError(f"candidates: must be at least 1, got {self.candidates!r}")
        if self.unit not in ("pair", "message"):
            raise ValueError(f"unit: must be 'pair' or 'message', got {self.unit!r}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "Policy":
        known = _FIELDS.get(cls)
        if known is None:
            known = _FIELDS[cls] = frozenset(f.name for f in fields(cls))
        unknown = options.keys() - known
        if unknown:
            raise TypeError(f"unknown context policy option(s): {', '.join(sorted(unknown))}")
        return cls(**options)


_SHARES = ("recency_share", "recency_min", "recent_reach", "truncate_share", "b", "embedding_weight")
_NON_NEGATIVE = (
    "recency_gate", "session_gap", "min_truncated", "k1", "typo_weight", "term_rarity", "feedback_docs",
    "feedback_terms", "feedback_weight", "passage_weight", "passage_reach", "neighbour_weight", "neighbour_reach",
    "speaker_boost", "date_boost", "answer_boost", "recent_boost",
)
_MAXIMA = {"passage_reach": 50, "neighbour_reach": 50, "k1": 100, "feedback_docs": 1000, "feedback_terms": 1000}
_FIELDS: dict[type, frozenset[str]] = {}  # option names per Policy class (fields() is slow per turn)


@dataclass
class Selection:
    chosen: list[int]               # indices into the history, ascending
    sizes: dict[int, int]           # tokens per chosen index (after any truncation)
    truncated: dict[int, int]       # index -> token target for messages to shorten


class _Picker:
    """Book-keeping of what is chosen and how much budget is left."""

    def __init__(self, h: History, budget: int, policy: Policy) -> None:
        self.h = h
        self.budget = budget
        self.used = 0
        self.chosen: set[int] = set()
        self.sizes: dict[int, int] = {}
        self.truncated: dict[int, int] = {}
        cut = max(policy.min_truncated, int(budget * policy.truncate_share))
        self.cut_to = min(cut, budget)
        self.min_cut = policy.min_truncated

    def size(self, i: int) -> int:
        """A message's cost; one longer than the whole budget is counted at its cut size.

        A cut keeps min_truncated tokens of text besides the message's format and tool calls
        (the cut marker alone is ~12), so under a smaller budget an oversized message keeps its
        full cost and is left out.
        """
        n = self.h.tokens[i]
        if n <= self.budget or not self.cuttable(i, self.cut_to):
            return n
        return self.cut_to

    def cuttable(self, i: int, target: int) -> bool:
        """Message i can be cut to target tokens and keep min_truncated of text (format and
        tool calls are never cut)."""
        return target - self.h.fixed[i] >= self.min_cut

    def add(self, idx: list[int], limit: int | None = None) -> bool:
        """Add all of idx (not yet chosen) if they fit under limit (default: the budget)."""
        limit = self.budget if limit is None else limit
        new = [i for i in idx if i not in self.chosen]
        cost = sum(self.size(i) for i in new)
        if self.used + cost > limit:
            return False
        for i in new:
            self.chosen.add(i)
            self.sizes[i] = self.size(i)
            if self.h.tokens[i] > self.budget:
                self.truncated[i] = self.cut_to
        self.used += cost
        return True

    def add_cut(self, idx: list[int]) -> bool:
        """Add idx with its longest message shortened so the whole fits; False if it cannot."""
        new = [i for i in idx if i not in self.chosen]
        if not new:
            return True
        longest = max(new, key=self.size)
        rest = sum(self.size(i) for i in new if i != longest)
        target = self.budget - self.used - rest
        if not self.cuttable(longest, target) or target >= self.size(longest):
            return False
        for i in new:
            self.chosen.add(i)
            self.sizes[i] = target if i == longest else self.size(i)
            if i == longest or self.h.tokens[i] > self.budget:
                self.truncated[i] = self.sizes[i]
        self.used += rest + target
        return True

    def group(self, g: int) -> list[int]:
        s, e = self.h.groups[g]
        return list(range(s, e))


def select(
    h: History, budget: int, policy: Policy, ranked: list[range] | None = None,
    scores: dict[int, float] | None = None,
) -> Selection:
    """Choose indices of h under budget; ranked are units (ranges of indices: a turn or a
    message), most relevant first."""
    p = _Picker(h, budget, policy)
    if not len(h) or budget <= 0:
        return Selection([], {}, {})
    # 1. pinned messages, whatever their age (cut if oversized); a pinned tool call or result
    # with the rest of its unit, as it can only be sent whole (taken alone, recency would fill
    # the room its other half needs and the pin would be dropped at the end)
    for i, pin in enumerate(h.pinned):
        if pin and i not in p.chosen:
            unit = h.atom(i) if h.has_atoms else [i]
            if not p.add(unit) and len(unit) > 1:
                p.add_cut(unit)
    # 2. the newest turn: whole if it fits, else its newest messages that fit
    ngroups = len(h.groups)
    last = ngroups - 1
    if not p.add(p.group(last)) and not p.add_cut(p.group(last)):
        for unit in reversed(_atoms(h, p.group(last))):
            p.add(unit)
    # 3. recency share: further whole turns, newest first
    share = _recency_share(h, budget, policy, scores)
    rec_limit = int(budget * share)
    # a query that points to older turns gets only the current sitting as recent context
    first = 0
    if policy.session_gap > 0 and share < policy.recency_share:
        first = _sitting_start(h, policy.session_gap, rec_limit)
    g = last - 1
    while g >= 0 and p.used < rec_limit and h.groups[g][0] >= first:
        if not p.add(p.group(g), rec_limit):
            break
        g -= 1
    oldest_recent = g + 1
    if ranked and scores and policy.recent_boost and share < policy.recency_share:
        ranked = _boost_recent(h, ranked, scores, int(budget * policy.recent_reach), policy.recent_boost)
    # 4. relevance fill
    # Ranked units and older turns run to thousands, and once the budget is nearly full
    # few fit: a unit's token total (a prefix-sum difference) is its exact cost when none of
    # its messages is oversized or chosen already, so most are skipped without a look inside
    exact = max(h.tokens) <= budget and not h.has_atoms
    cum, chosen = h.cum, p.chosen
    if ranked:
        start = h.groups[oldest_recent][0] if oldest_recent < ngroups else len(h)
        for unit in ranked:
            left = p.budget - p.used
            if left < 8:
                break
            if unit[0] >= start:  # a unit is a turn (or a message): all of it is recent, or none
                continue
            if exact and cum[unit[-1] + 1] - cum[unit[0]] > left and chosen.isdisjoint(unit):
                continue
            p.add(_atom_closure(h, unit) if h.has_atoms else list(unit))
    # 5. leftover goes to recency again
    groups = h.groups
    while g >= 0 and p.budget - p.used >= 8:
        s, e = groups[g]
        if not exact or cum[e] - cum[s] <= p.budget - p.used or not chosen.isdisjoint(range(s, e)):
            p.add(p.group(g))
        g -= 1
    if h.has_atoms:
        _whole_atoms(h, p, grow=True)
    chosen = _no_orphan_start(h, sorted(p.chosen), p)
    if h.has_atoms:
        chosen = _whole_atoms(h, p, grow=False)
    return Selection(chosen, {i: p.sizes[i] for i in chosen}, {i: n for i, n in p.truncated.items() if i in p.sizes and i in chosen})


def _boost_recent(h: History, ranked: list[range], scores: dict[int, float], reach: int,
                  boost: float) -> list[range]:
    """A query that points back shrinks the block of recent turns, which then misses a recent
    turn that matches (the soon view's evidence): instead of a block, the newest turns, within
    `reach` tokens, compete for the relevance fill with their matches counted (1 + boost) x."""
    g, seen = len(h.groups) - 1, 0
    while g >= 0 and seen <= reach:
        s, e = h.groups[g]
        seen += h.cum[e] - h.cum[s]
        g -= 1
    lo = h.groups[g + 1][0]
    if not any(u[0] >= lo for u in ranked):
        return ranked
    f = 1.0 + boost

    def key(u: range) -> float:  # a unit ranks as its best message (ranking.rank_units)
        m = max(scores.get(i, 0.0) for i in u)
        return -(m * f if u[0] >= lo else m)

    return sorted(ranked, key=key)  # stable: equal scores keep their order


def _sitting_start(h: History, gap_hours: float, reach: int | None = None) -> int:
    """Index of the first message of the current sitting: after the last silence of gap_hours.

    Only the newest `reach` tokens are looked at (the most recency could take); 0 if no silence there.
    """
    from .dates import to_seconds

    gap = gap_hours * 3600.0
    stamps, tokens = h.timestamps, h.tokens
    if not stamps:
        return 0
    later = to_seconds(stamps[-1])
    seen = tokens[-1] if tokens else 0
    for i in range(len(stamps) - 2, -1, -1):
        if reach is not None and seen > reach:
            return 0
        seen += tokens[i]
        t = to_seconds(stamps[i])
        if t is not None and later is not None and later - t > gap:
            return i + 1
        if t is not None:
            later = t
    return 0


def _recency_share(h: History, budget: int, policy: Policy, scores: dict[int, float] | None) -> float:
    """The full recency share, unless the query matches older turns far better than recent ones.

    A follow-up ("and then?") matches nothing and keeps the recent turns; a question
    about something said long ago matches old turns only, and gets the budget there.
    "Far better": no recent message is among the `recency_gate` best matches.
    """
    share = policy.recency_share
    if not scores or policy.recency_gate <= 0 or policy.recency_min >= share:
        return share
    limit = budget * share
    used = 0
    recent_best = 0.0
    for g in range(len(h.groups) - 1, -1, -1):
        s0, e0 = h.groups[g]
        used += sum(h.tokens[s0:e0])
        if used > limit and g < len(h.groups) - 1:
            break
        for i in range(s0, e0):
            recent_best = max(recent_best, scores.get(i, 0.0))
    if recent_best <= 0 and max(scores.values()) <= 0:
        return share
    better = sum(1 for v in scores.values() if v > recent_best)
    return share if better < policy.recency_gate else policy.recency_min


def _atoms(h: History, idx: list[int]) -> list[list[int]]:
    """idx (ascending) split into the units that must go together (a tool call and its results)."""
    out: list[list[int]] = []
    for i in idx:
        if out and h.atom_start[i] == h.atom_start[out[-1][-1]]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _atom_closure(h: History, idx: Iterable[int]) -> list[int]:
    """idx with the rest of each tool call's unit added."""
    out: set[int] = set()
    for i in idx:
        if i not in out:
            out.update(h.atom(i))
    return sorted(out)


def _drop(p: _Picker, i: int) -> None:
    p.chosen.discard(i)
    p.used -= p.sizes.pop(i)
    p.truncated.pop(i, None)


def _whole_atoms(h: History, p: _Picker, grow: bool) -> list[int]:
    """Complete each tool call chosen in part (if `grow` and it fits) or leave it out: a call
    without its results, or a result without its call, is a request providers reject.
    Pinned or not: a window must be sendable."""
    seen: set[int] = set()
    for i in sorted(p.chosen):
        start = h.atom_start[i]
        if start in seen:
            continue
        seen.add(start)
        unit = h.atom(i)
        if len(unit) == 1 or all(j in p.chosen for j in unit):
            continue
        if not (grow and p.add(unit)):
            for j in unit:
                if j in p.chosen:
                    _drop(p, j)
    return sorted(p.chosen)


def _no_orphan_start(h: History, chosen: list[int], p: _Picker) -> list[int]:
    """A window must not open on a reply (or a system note) whose question was left out.

    When that leaves nothing (a tiny budget: the question and a useful cut of its answer
    do not fit together), the question is kept (cut if it must be) rather than an empty
    window, with the newest of its turn's messages that still fit. What is dropped here goes
    a whole tool unit at a time (`chosen` holds whole units), so no call is left without its
    results or the other way round.
    """
    while chosen:
        first = chosen[0]
        start = h.groups[h.group_of[first]][0]
        if h.roles[first] == "user" or start == first:
            break  # a question, or a turn's own start (the history's first message, a system
            # message between turns, a reply after a silence); not a system note inside a turn
        if p.add(list(range(start, first))):  # whole units: those before `first` are not chosen
            return sorted(p.chosen)
        unit = h.atom(first) if h.has_atoms else [first]
        if any(h.pinned[j] for j in unit):
            break
        for j in unit:
            if j in p.chosen:
                _drop(p, j)
        chosen = [j for j in chosen if j not in unit]
        if not chosen:
            head = h.atom(start) if h.has_atoms else [start]  # the question (a unit if it is a call)
            if p.add(head) or p.add_cut(head):
                end = h.groups[h.group_of[start]][1]
                for unit in reversed(_atoms(h, list(range(head[-1] + 1, end)))):
                    p.add(unit)
                return sorted(p.chosen)
    return chosen

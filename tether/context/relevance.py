"""BM25 relevance of earlier messages to the new message, with an incremental index.

The index for a session is cached (keyed by its first message) and extended as
messages are appended, so a turn costs only the new messages' tokenization.
Statistics are computed for exactly the history passed in (postings are sorted
by position, so a prefix is a bisect away): results never depend on the cache.
"""
from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np

from .dates import to_date
from .items import bound_lru, unchanged_prefix
from .spelling import MIN_LEN, Vocabulary

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below
between both but by can could did didn't do does doesn't doing don't down during each few for from further
had has have having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm
i've if in into is isn't it it's its itself let's me more most my myself no nor not of off on once only or
other ought our ours ourselves out over own same she she'd she'll she's should so some such than that
that's the their theirs them themselves then there there's these they they'd they'll they're they've this
those through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
when's where where's which while who who's whom why why's with won't would you you'd you'll you're you've
your yours yourself yourselves s t d ll m re ve just also will shall may might must yes yeah oh ok okay
hey hi hello wow really so thanks thank kind kinds type types sort sorts thing things likely probably
possibly something anything ones
""".split())


# Irregular forms a suffix stemmer cannot join to their base ("went" / "go"), plus a few
# everyday variants; applied before stemming so "bought" matches "buy", "mum" matches "mom".
_IRREGULAR_PAIRS = """
went:go gone:go goes:go bought:buy made:make ran:run took:take taken:take saw:see seen:see met:meet
gave:give given:give got:get gotten:get felt:feel told:tell thought:think found:find began:begin begun:begin
wrote:write written:write kept:keep left:leave brought:bring taught:teach won:win lost:lose spent:spend
sold:sell built:build drove:drive driven:drive flew:fly flown:fly ate:eat eaten:eat drank:drink drunk:drink
swam:swim sang:sing sung:sing did:do done:do knew:know known:know grew:grow grown:grow threw:throw
thrown:throw caught:catch fought:fight heard:hear held:hold paid:pay said:say sent:send sat:sit slept:sleep
spoke:speak spoken:speak stood:stand understood:understand woke:wake wore:wear worn:wear chose:choose
chosen:choose broke:break broken:break fell:fall fallen:fall forgot:forget forgotten:forget hid:hide
rode:ride ridden:ride rang:ring rose:rise shook:shake stole:steal struck:strike swore:swear tore:tear
led:lead lent:lend meant:mean dealt:deal dug:dig fed:feed hung:hang shot:shoot shut:shut sought:seek
bent:bend bled:bleed bred:breed crept:creep fled:flee slid:slide spun:spin stuck:stick stung:sting swept:sweep
wept:weep wound:wind became:become came:come drew:draw drawn:draw forgave:forgive froze:freeze
children:child kids:kid mum:mom mommy:mom mother:mom daddy:dad father:dad
"""
_IRREGULAR = dict(p.split(":") for p in _IRREGULAR_PAIRS.split())


# Words that date an event: a "when" question is answered by a message that has one.
_TIME_WORDS = frozenset("""
yesterday today tonight tomorrow ago last next week weeks weekend month months year years day days
monday tuesday wednesday thursday friday saturday sunday morning evening night recently soon
january february march april may june july august september october november december
spring summer autumn fall winter christmas birthday since earlier later
""".split())
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten twelve twenty hundred dozen few couple".split())
_HAS_DIGIT = re.compile(r"\d")
_WHEN_Q = re.compile(r"\b(when|what (?:year|month|day|date|time)|how long ago|which (?:year|month|day))\b", re.I)
_COUNT_Q = re.compile(r"\bhow (?:many|much|long|old|often)\b", re.I)


def question_cues(query: str) -> tuple[bool, bool]:
    """(asks when, asks how many/much/long): the kind of answer a message must hold."""
    return bool(_WHEN_Q.search(query)), bool(_COUNT_Q.search(query))


def answer_cues(text: str) -> tuple[bool, bool]:
    """(mentions a time, mentions a number) for a message."""
    low = text.lower()
    return _cues(low, _WORD.findall(low))


def _cues(low: str, words: list[str]) -> tuple[bool, bool]:
    """answer_cues from the lower-cased text and its words (the index has them already)."""
    digit = bool(_HAS_DIGIT.search(low))
    return digit or not _TIME_WORDS.isdisjoint(words), digit or not _NUMBER_WORDS.isdisjoint(words)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    """PyStemmer's English stemmer, or None (then words are only lower-cased)."""
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover - PyStemmer is a dependency
        return None


# word (lower-cased) -> its term: irregular form joined, stemmed; "" for a stop word. One
# lookup per word instead of three: building the index of a long session is mostly this.
_term_of: dict[str, str] = {}


def _terms_of(words: list[str]) -> list[str]:
    """Terms of lower-cased words, in order, stop words left out."""
    cache = _term_of
    try:
        return [t for t in map(cache.__getitem__, words) if t]
    except KeyError:  # words not seen before: work out their terms once
        pass
    # from a snapshot: another thread may clear the shared cache meanwhile
    known = {w: cache.get(w) for w in words}
    base = {w: _IRREGULAR.get(w, w) for w, t in known.items() if t is None}
    keep = [w for w, b in base.items() if b not in STOPWORDS]
    st = _stemmer()
    stems = st.stemWords([base[w] for w in keep]) if st else [base[w] for w in keep]
    new = dict.fromkeys(base, "")
    new.update(zip(keep, stems))
    known.update(new)
    if len(cache) > 500_000:
        cache.clear()
    cache.update(new)
    return [t for t in map(known.__getitem__, words) if t]


def terms(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed words of a text."""
    return _terms_of(_WORD.findall(text.lower()))


# A word's rarity in English at large, read from the tokenizer's vocabulary: byte-pair
# merges are learned most frequent first, so a common word is one token with a small id
# ("time", "event") and a rarer one has a larger id or takes several tokens ("kayak",
# "Valorant"). Long words merge late too, so it is part frequency, part length: a prior,
# not a count. BM25's idf over one chat of a few hundred messages is a thin statistic;
# this comes from a corpus of billions of words, offline, and the window has loaded the
# encoding already to count tokens. word -> rarity, per encoding:
_RARITY: dict[str, dict[str, float]] = {}


def word_rarity(word: str, enc_name: str) -> float:
    """In (0, 1]: log of the word's token id over log of the vocabulary size; 1 for a word
    that is not a single token."""
    cache = _RARITY.get(enc_name)
    if cache is None:
        cache = _RARITY[enc_name] = {}
    r = cache.get(word)
    if r is None:
        from .tokens import get_encoding

        enc = get_encoding(enc_name)
        ids = enc.encode_ordinary(" " + word)  # as the word appears mid-sentence
        r = math.log(2 + ids[0]) / math.log(2 + enc.n_vocab) if len(ids) == 1 else 1.0
        if len(cache) > 100_000:
            cache.clear()
        cache[word] = r
    return r


def query_terms(query: str, enc_name: str | None = None, rarity: float = 0.0) -> dict[str, float]:
    """The query's terms with their weights: how often each occurs, each occurrence weighted
    by its word's rarity to the power `rarity` (0: plain counts, as BM25 has it)."""
    out: dict[str, float] = {}
    for w in _WORD.findall(query.lower()):
        found = _terms_of([w])
        if found:
            t = found[0]
            out[t] = out.get(t, 0.0) + (word_rarity(w, enc_name) ** rarity if rarity and enc_name else 1.0)
    return out


def corrected_terms(query: str, qterms: dict[str, float], idx: "Index", n: int, enc_name: str | None,
                    weight: float) -> dict[str, float]:
    """qterms plus, for each query word the first n messages never use, the history's word
    one edit away (the most used one), weighted `weight` times the word's own weight."""
    out = qterms
    for w in set(_WORD.findall(query.lower())):
        if len(w) < MIN_LEN or not w.isalpha():
            continue  # short words have too many neighbours; numbers and codes are not misspelt
        found = _terms_of([w])
        if not found or idx.df(found[0], n):
            continue
        if enc_name and word_rarity(w, enc_name) < 1.0:
            continue  # a word the tokenizer knows whole is a word, not a typo
        best, best_df = "", 0
        for near in idx.vocab.near(w):
            t = _terms_of([near])
            df = idx.df(t[0], n) if t else 0
            if df > best_df and t[0] not in qterms:
                best, best_df = t[0], df
        if best:
            if out is qterms:
                out = dict(qterms)
            out[best] = max(out.get(best, 0.0), weight * qterms.get(found[0], 1.0))
    return out


class Index:
    """Inverted index over a growing list of messages; postings sorted by position."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.contents: list[str] = []
        self.stamps: list[Any] = []  # as given: what `matches` compares (cheap, often the same objects)
        self.dates: list[int] = []  # date ordinals, 0 when unknown (date_boost reads them)
        self.has_time: list[bool] = []
        self.has_number: list[bool] = []
        self.doclen: list[int] = []
        self.cumlen: list[int] = [0]
        self.post_docs: dict[str, list[int]] = {}
        self.post_tf: dict[str, list[int]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._dl: np.ndarray = np.zeros(0)
        self.vocab = Vocabulary()
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, mid: str, text: str, stamp: Any = None) -> None:
        d = len(self.ids)
        low = text.lower()
        words = _WORD.findall(low)
        ts = _terms_of(words)
        self.vocab.add(words)
        t, num = _cues(low, words)
        self.has_time.append(t)
        self.has_number.append(num)
        day = to_date(stamp)
        self.stamps.append(stamp)
        self.dates.append(day.toordinal() if day else 0)
        self.ids.append(mid)
        self.contents.append(text)
        self.doclen.append(len(ts))
        self.cumlen.append(self.cumlen[-1] + len(ts))
        post_docs, post_tf = self.post_docs, self.post_tf
        for t, c in Counter(ts).items():
            docs = post_docs.get(t)
            if docs is None:
                post_docs[t] = [d]
                post_tf[t] = [c]
            else:
                docs.append(d)
                post_tf[t].append(c)

    def extend(self, ids: list[str], contents: list[str], stamps: list[Any] | None) -> None:
        """Index the messages past those held (the caller checked that those are unchanged)."""
        for k in range(len(self.ids), len(ids)):
            self.append(ids[k], contents[k], stamps[k] if stamps else None)

    def matches(self, ids: list[str], contents: list[str], stamps: list[Any] | None = None) -> int:
        """How many leading messages of the given history this index holds unchanged: same id,
        text and time (a moved time moves the message's date for date_boost). Without `stamps`,
        times are not compared."""
        n = unchanged_prefix(self.ids, self.contents, ids, contents)
        mine = self.stamps
        if stamps is not None and mine[:n] != stamps[:n]:  # in C, identity first: the columns hand back the same objects
            n = next(k for k in range(n) if mine[k] != stamps[k])
        return n

    def scores(
        self, qterms: list[str] | dict[str, float], n: int, k1: float = 1.2, b: float = 0.75,
    ) -> "np.ndarray":
        """BM25 of the first n documents for the (weighted) query terms, as a dense array."""
        out = np.zeros(max(n, 0), dtype=np.float64)
        if n <= 0:
            return out
        avgdl = max(self.cumlen[n] / n, 1e-9)
        norm = k1 * (1 - b + b * self._doclen()[:n] / avgdl)
        for weight, d_arr, tf_arr in self._matches(qterms, n):
            # each document appears once per term, so plain fancy-index addition is safe
            out[d_arr] += weight * tf_arr * (k1 + 1) / (tf_arr + norm[d_arr])
        return out

    def passage_scores(
        self, qterms: list[str] | dict[str, float], n: int, k1: float, b: float, kernel: "np.ndarray",
    ) -> "np.ndarray":
        """BM25 of the passage centred on each of the first n messages.

        A passage's term counts and length are its messages' counts summed with
        `kernel` weights (odd length, e.g. 0.25, 0.5, 1, 0.5, 0.25): terms spread over a
        question and its answer match together, and saturate together.
        """
        out = np.zeros(max(n, 0), dtype=np.float64)
        if n <= 0:
            return out
        r = len(kernel) // 2

        def spread(x: "np.ndarray") -> "np.ndarray":  # centred, exactly n long (mode="same" is not, for short x)
            return np.convolve(x, kernel)[r:r + n]

        dl = spread(self._doclen()[:n])
        avgdl = max(float(dl.mean()), 1e-9)
        norm = k1 * (1 - b + b * dl / avgdl)
        tf = np.zeros(n, dtype=np.float64)
        for weight, d_arr, tf_arr in self._matches(qterms, n):
            tf[:] = 0.0
            tf[d_arr] = tf_arr
            ptf = spread(tf)
            out += weight * ptf * (k1 + 1) / (ptf + norm)
        return out

    def _matches(self, qterms: list[str] | dict[str, float], n: int,
                 ) -> Iterator[tuple[float, "np.ndarray", "np.ndarray"]]:
        """For each query term found in the first n documents: idf x query weight, and its
        postings there. A list of terms weighs each by how often it occurs."""
        qtf = qterms if isinstance(qterms, dict) else Counter(qterms)
        for t, qc in qtf.items():
            docs = self.post_docs.get(t)
            if not docs:
                continue
            df = bisect_left(docs, n)
            if df == 0:
                continue
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            d_arr, tf_arr = self._postings(t)
            yield idf * qc, d_arr[:df], tf_arr[:df]

    def _postings(self, t: str) -> tuple["np.ndarray", "np.ndarray"]:
        """A term's postings as arrays, converted again only when the term got new documents."""
        docs = self.post_docs[t]
        hit = self._arrays.get(t)
        if hit is None or hit[0].shape[0] != len(docs):
            hit = (np.asarray(docs, dtype=np.int64), np.asarray(self.post_tf[t], dtype=np.float64))
            self._arrays[t] = hit
        return hit

    def _doclen(self) -> "np.ndarray":
        if self._dl.shape[0] != len(self.doclen):
            self._dl = np.asarray(self.doclen, dtype=np.float64)
        return self._dl

    def df(self, term: str, n: int) -> int:
        docs = self.post_docs.get(term)
        return bisect_left(docs, n) if docs else 0

    def doc_terms(self, d: int) -> list[str]:
        return terms(self.contents[d])


_INDEXES: "OrderedDict[tuple[str, str], Index]" = OrderedDict()
_LOCK = threading.Lock()  # an OrderedDict's reordering is not safe across threads
# an app serving many long sessions must find each one's index again next turn (a rebuild
# stems every message); ~1 KB per indexed message bounds the memory
_MAX_INDEXES = 256
_MAX_DOCS = 100_000


def index_for(ids: list[str], contents: list[str], stamps: list[Any] | None = None) -> Index:
    """The cached index of this session, extended (or rebuilt after an edit) to cover the history."""
    if not ids:
        return Index()
    key = (ids[0], contents[0])
    with _LOCK:
        idx = _INDEXES.get(key)
        if idx is not None:
            _INDEXES.move_to_end(key)
    if idx is not None:
        with idx.lock:  # threads building windows for one session extend it in turn
            if idx.matches(ids, contents, stamps) >= min(len(idx), len(ids)):
                idx.extend(ids, contents, stamps)
                return idx
    idx = Index()  # a new session, or an edit or deletion: rebuild (private until built)
    idx.extend(ids, contents, stamps)
    with _LOCK:
        _INDEXES[key] = idx
        bound_lru(_INDEXES, _MAX_INDEXES, _MAX_DOCS, len)  # checked on a miss only
    return idx

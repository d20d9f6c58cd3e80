"""Typo tolerance: a query word that the history never uses, one edit away from a word it does.

"torunament" finds "tournament", "recieved" finds "received", and a history's own
misspelling ("Xeonoblade") is found by the right spelling. Only words of five letters
or more that the tokenizer does not know as one token are corrected: a common word
that is simply absent ("north") is not turned into a neighbour ("worth").
"""
from __future__ import annotations

MIN_LEN = 5  # shorter words have too many neighbours one edit away


def one_edit(a: str, b: str) -> bool:
    """True when b is one insertion, deletion, substitution or swap of neighbours away from a."""
    la, lb = len(a), len(b)
    if a == b or abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


class Vocabulary:
    """A history's words, findable from a misspelling.

    Each word is filed twice, under its first two letters and under its last two (with its
    length): one edit of a word of five letters or more leaves one of the two pairs as it
    was, so a misspelling's candidates are a few short lists, never the whole vocabulary.
    """

    def __init__(self) -> None:
        self.words: set[str] = set()
        self._buckets: dict[str, list[str]] = {}

    def add(self, words: list[str]) -> None:
        new = set(words)
        new -= self.words  # in C: most words of a message are known already
        buckets = self._buckets
        for w in new:
            if len(w) >= MIN_LEN - 1:
                self.words.add(w)
                for key in (f"{w[:2]}<{len(w)}", f"{len(w)}>{w[-2:]}"):
                    hit = buckets.get(key)
                    if hit is None:
                        buckets[key] = [w]
                    else:
                        hit.append(w)

    def near(self, word: str) -> list[str]:
        """Words of the history one edit away from word (of MIN_LEN letters or more)."""
        if len(word) < MIN_LEN:
            return []
        found: set[str] = set()
        for n in (len(word) - 1, len(word), len(word) + 1):
            for key in (f"{word[:2]}<{n}", f"{n}>{word[-2:]}"):
                found.update(w for w in self._buckets.get(key, ()) if one_edit(word, w))
        return sorted(found)

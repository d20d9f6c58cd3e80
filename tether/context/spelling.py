"""Typo tolerance: a query word that the history never uses, one edit away from a word it does.

"torunament" finds "tournament", "recieved" finds "received", and a history's own
misspelling ("Xeonoblade") is found by the right spelling. Only words of five letters
or more that the tokenizer does not know as one token are corrected: a common word
that is simply absent ("north") is not turned into a neighbour ("worth").
"""
from __future__ import annotations

MIN_LEN = 5  # shorter words have too many neighbours one edit away


def _deletes(word: str) -> list[str]:
    return [word[:i] + word[i + 1:] for i in range(len(word))]


def one_edit(a: str, b: str) -> bool:
    """True when b is a away by one insertion, deletion, substitution or swap of neighbours."""
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
    """A history's words, findable from a misspelling (each word filed under its one-letter
    deletions, as SymSpell does: an insertion, deletion, substitution or swap shares one)."""

    def __init__(self) -> None:
        self.words: set[str] = set()
        self._by_delete: dict[str, list[str]] = {}

    def add(self, words: list[str]) -> None:
        known = self.words
        for w in words:
            if len(w) >= MIN_LEN - 1 and w not in known:
                known.add(w)
                by = self._by_delete
                for d in _deletes(w):
                    hit = by.get(d)
                    if hit is None:
                        by[d] = [w]
                    else:
                        hit.append(w)

    def near(self, word: str) -> list[str]:
        """Words of the history one edit away from word."""
        found: set[str] = set(self._by_delete.get(word, ()))  # word with a letter missing
        for d in _deletes(word):
            if d in self.words:  # word with a letter too many
                found.add(d)
            found.update(self._by_delete.get(d, ()))  # a letter changed, or two swapped
        return sorted(w for w in found if one_edit(word, w))

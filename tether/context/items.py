"""A uniform, read-only view of history items (Message objects or plain dicts).

The builder works on parallel lists (ids, roles, token counts...) rather than on
the objects themselves: it is faster, and the caller gets back exactly the
objects it passed in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tokens import content_tokens, overhead_tokens


def _get(item: Any, key: str, default: Any = None) -> Any:
    if isinstance(item, dict):
        return item.get(key, default)
    return getattr(item, key, default)


@dataclass
class History:
    """Parallel columns of a history, plus turn groups (a user message and what answers it)."""

    items: list[Any]
    ids: list[str]
    roles: list[str]
    names: list[str | None]
    contents: list[str]
    tokens: list[int]
    pinned: list[bool]
    timestamps: list[Any] = field(default_factory=list)
    group_of: list[int] = field(default_factory=list)
    groups: list[tuple[int, int]] = field(default_factory=list)  # [start, end) per turn

    @classmethod
    def of(cls, items: list[Any], enc_name: str) -> "History":
        ids: list[str] = []
        roles: list[str] = []
        names: list[str | None] = []
        contents: list[str] = []
        tokens: list[int] = []
        pinned: list[bool] = []
        stamps: list[Any] = []
        overhead: dict[tuple[str, str | None], int] = {}
        for i, it in enumerate(items):
            mid = _get(it, "id")
            mid = str(mid) if mid is not None else f"#{i}"
            role = _get(it, "role") or "user"
            name = _get(it, "name")
            content = _get(it, "content") or ""
            if not isinstance(content, str):
                content = str(content)
            key = (role, name)
            oh = overhead.get(key)
            if oh is None:
                oh = overhead[key] = overhead_tokens(role, name, enc_name)
            ids.append(mid)
            roles.append(role)
            names.append(name)
            contents.append(content)
            tokens.append(content_tokens(it, enc_name) + oh)
            pinned.append(bool(_get(it, "pinned", False)))
            stamps.append(_get(it, "timestamp"))
        h = cls(items, ids, roles, names, contents, tokens, pinned, stamps)
        h._group()
        return h

    def _group(self) -> None:
        """A turn starts at each user (or system) message; replies and tool results join it."""
        start = 0
        for i, role in enumerate(self.roles):
            if i > 0 and role in ("user", "system"):
                self.groups.append((start, i))
                start = i
        if self.roles:
            self.groups.append((start, len(self.roles)))
        self.group_of = [0] * len(self.roles)
        for g, (s, e) in enumerate(self.groups):
            for i in range(s, e):
                self.group_of[i] = g

    def __len__(self) -> int:
        return len(self.ids)

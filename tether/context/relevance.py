"""Relevance ranking of earlier turns against the new message (placeholder: none yet)."""
from __future__ import annotations

from .items import History
from .select import Policy


def rank_groups(h: History, query: str, policy: Policy) -> list[int]:
    return []

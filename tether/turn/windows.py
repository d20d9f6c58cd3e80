"""The window a turn sends to each model it tries: built per model, from that model's own
window size and tokenizer, over the session's own Message objects."""
from __future__ import annotations

from typing import Any

from ..context import Window, build_window
from ..router.config import RouterConfig
from ..router.engine import Prepared
from ..sessions import Message, Session


class WindowBuilder:
    """The router's window builder for one turn. An object with slots rather than a closure: it
    lives as long as the model call, and a closure's function and cells are six objects for
    the collector to carry (see `Router._drive`). `hist`: the session's own Message objects,
    no per-turn copies (a dict per message of a long session costs more than the window), so
    the token counts the window makes land on them."""

    __slots__ = ("config", "session", "hist", "query", "options")

    def __init__(self, config: RouterConfig, session: Session, hist: list[Message], query: str,
                 options: dict[str, Any]) -> None:
        self.config, self.session, self.hist, self.query, self.options = config, session, hist, query, options

    def window(self, info: Any, budget: int | None) -> Window:
        s = self.session
        # the reply reserve is forced only by a configured max_output_tokens (also sent as
        # max_tokens); else the builder keeps a chat-sized share, not the model's maximum
        # output (16k for gpt-4o-mini), which would starve the history for nothing
        return build_window(self.hist, self.query, budget_tokens=budget, model=info.model, system=s.system,
                            context=s.context or None, context_window=info.context_window,
                            max_output_tokens=self.config.spec(info.name).max_output_tokens, **self.options)

    def __call__(self, info: Any, budget: int | None) -> Prepared:
        w = self.window(info, budget)
        s = self.session
        msgs = w.to_messages(system=s.system, context=s.context or None, query=self.query)
        p = w.parts
        # the whole request: the summary and the notes of what was left out are sent too (the
        # notes at the size reserved for them, a few tokens over what they take)
        total = (w.tokens + p.get("system", 0) + p.get("context", 0) + p.get("query", 0) + p.get("summary", 0)
                 + (p.get("markers", 0) if w.dropped and w.budget > 0 else 0))
        return Prepared(msgs, total, w, w.tokens)

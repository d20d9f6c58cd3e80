"""`build_window`: the history a model is sent, within the budget, every time.

Pure apart from reading tokenizer files: the only state kept between calls is
caches (token counts, the relevance index), which never change the result.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tether._text import well_formed
from tether.errors import ContextOverflow
from tether.sessions.models import Message

from . import budget as _budget
from .items import History, fields_of
from .select import Policy, select
from .tokens import (
    TOKENS_PER_REPLY, _text_tokens, encoding_for, message_tokens, overhead_tokens, truncate_text,
)

# Every chat model has a window of at least 2048 tokens, and the reply reserve takes at most
# half of it: a turn this small (with any reply asked for) cannot overflow, and litellm need
# not be imported just to check.
_SURELY_FITS = 960
OMITTED_NOTE = "[Only part of the earlier conversation is shown; {n} earlier messages were left out.]"
SUMMARY_HEAD = "Summary of earlier conversation (not all of it is shown below):\n"
ORPHAN_MARKER = "[earlier conversation omitted]"
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL_KEYS = ("tool_call_id", "tool_calls")  # sent with a history message when it carries them
_NO_EXTRA: dict[str, Any] = {}


def render_context(context: dict[str, Any] | str | None) -> str:
    """The session context dict as a short block the model can read."""
    if not context:
        return ""
    if isinstance(context, str):
        return context
    lines = ["Session context:"]
    for k, v in context.items():
        val = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        lines.append(f"- {k}: {val}")
    return "\n".join(lines)


def _text_of(query: Any) -> str:
    if query is None:
        return ""
    if isinstance(query, str):
        return query
    if isinstance(query, dict):
        return str(query.get("content") or "")
    return str(getattr(query, "content", "") or "")


def _get(item: Any, key: str) -> Any:
    return fields_of(item).get(key)


@dataclass
class Window:
    """What would be sent: chosen history, its size, and what was left out and why.

    `dropped` counts every history message left out; `dropped_ids` and `truncated_ids` name
    those that have an id (a message without one has no name a caller could look up).
    """

    messages: list[Any]
    tokens: int
    dropped: int
    dropped_ids: list[str]
    budget: int
    parts: dict[str, int]
    encoding: str
    truncated_ids: list[str] = field(default_factory=list)
    model: str | None = None
    system: str | None = None
    context: dict[str, Any] | str | None = None
    query: str | None = None
    summary_text: str | None = None
    opens_mid_turn: bool = False  # the first message sent answers a question that was left out

    def to_messages(
        self,
        system: str | None = None,
        context: dict[str, Any] | str | None = None,
        query: Any = None,
        *,
        markers: bool = True,
    ) -> list[dict[str, Any]]:
        """Chat messages for litellm: system + context block, history, then the query as a user message.

        The omission note goes only with a history budget (its tokens are reserved there)."""
        system = self.system if system is None else system
        context = self.context if context is None else context
        query_text = self.query if query is None else _text_of(query)
        out: list[dict[str, Any]] = []
        head = [s for s in (system, render_context(context)) if s]
        if self.summary_text:
            head.append(SUMMARY_HEAD + self.summary_text)
        if markers and self.dropped and self.budget > 0:  # its tokens come out of the history budget
            head.append(OMITTED_NOTE.format(n=self.dropped))
        if head:  # a system prompt or context typed in a non-UTF-8 locale: see well_formed
            out.append({"role": "system", "content": well_formed("\n\n".join(head))})
        if markers and self.opens_mid_turn:  # not for a chat that opens with the assistant's greeting
            out.append({"role": "user", "content": ORPHAN_MARKER})
        for m in self.messages:
            if type(m) is Message:  # a session's own message: typed fields, tool fields only as extras
                # a message stored with a lone surrogate (add_message of undecodable text, an older
                # tether) would fail every request it is in: UTF-8 cannot carry it
                d: dict[str, Any] = {"role": m.role, "content": well_formed(m.content or "")}
                name = m.name
                f = m.__pydantic_extra__ or _NO_EXTRA
            else:
                f = fields_of(m)
                content = f.get("content") or ""
                d = {"role": f.get("role") or "user", "content": well_formed(content) if isinstance(content, str) else content}
                name = f.get("name")
            if name and _NAME_OK.match(name):
                d["name"] = name
            if f:
                for key in _TOOL_KEYS:
                    val = f.get(key)
                    if val:
                        d[key] = val
            out.append(d)
        if query_text:  # a retried question stored before questions were repaired
            out.append({"role": "user", "content": well_formed(query_text)})
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly account for `/context` and debugging."""
        return {
            "model": self.model,
            "encoding": self.encoding,
            "budget": self.budget,
            "tokens": self.tokens,
            "kept": len(self.messages),
            "dropped": self.dropped,
            "dropped_ids": list(self.dropped_ids),
            "truncated_ids": list(self.truncated_ids),
            "parts": dict(self.parts),
            "ids": [str(_get(m, "id")) for m in self.messages],
        }


_DEFAULT_POLICY = Policy()


@lru_cache(maxsize=16)
def _marker_tokens(enc: str) -> int:
    """What the omission note and the orphan marker may add (per encoding, not per turn)."""
    return _text_tokens(OMITTED_NOTE.format(n=10000), enc) + _text_tokens(ORPHAN_MARKER, enc) + overhead_tokens("user", None, enc)


def build_window(
    history: list[Any],
    query: Any,
    *,
    budget_tokens: int | None = None,
    model: str | None = None,
    system: str | None = None,
    context: dict[str, Any] | str | None = None,
    context_window: int | None = None,
    max_output_tokens: int | None = None,
    **policy_options: Any,
) -> Window:
    """Choose the history to send with `query` so that everything fits the model's window.

    `budget_tokens` is the history budget and is honoured exactly; otherwise it is
    derived from the model's window minus reply, system, context, query and margin.
    Raises ContextOverflow when the query alone cannot fit the model's window with the system
    prompt, context, reply reserve and margin. When that leaves nothing for history (or
    budget_tokens=0), the window is the question alone, without the omission note it has no
    tokens for.
    """
    policy = Policy.from_options(policy_options) if policy_options else _DEFAULT_POLICY
    enc = encoding_for(model)
    query_text = _text_of(query)
    ctx_text = render_context(context)
    sys_text = "\n\n".join(s for s in (system or "", ctx_text) if s)
    parts: dict[str, int] = {}
    sys_total = (_text_tokens(sys_text, enc) + overhead_tokens("system", None, enc)) if sys_text else 0
    ctx_tokens = _text_tokens(ctx_text, enc) if ctx_text else 0
    parts["system"] = sys_total - ctx_tokens
    parts["context"] = ctx_tokens
    parts["query"] = (message_tokens({"role": "user", "content": query_text}, enc) if query_text else 0) + TOKENS_PER_REPLY
    parts["markers"] = _marker_tokens(enc)
    fixed = sys_total + parts["query"]

    derive = budget_tokens is None
    if derive or context_window is not None or fixed + (max_output_tokens or 0) > _SURELY_FITS:
        limits = _budget.model_limits(model)
        window = int(context_window) if context_window else limits.max_input_tokens
        reply = _budget.reply_reserve(limits, max_output_tokens, window)
        margin = _budget.safety_margin(window)
        # the reply is part of the window too: a request that fills it leaves the model no room to answer
        if fixed + reply + margin > window and (derive or context_window is not None or limits.known):
            assumed = "" if context_window or limits.known else (
                f" ({window} is an assumption: litellm does not know this model; set its context_window in the config)")
            raise ContextOverflow(
                f"the new message needs {parts['query']} tokens, and with the system prompt "
                f"({parts['system']}) and context ({parts['context']}) the turn needs {fixed}, plus {reply} kept "
                f"for the reply: {fixed + reply}, more than the {window}-token window of "
                f"{model or 'the default model'} allows (margin {margin}){assumed}; "
                "shorten it, ask for a shorter reply (max_output_tokens) or use a model with a larger window"
            )
    else:
        window, reply, margin = 0, 0, 0
    parts["reply_reserve"] = reply
    parts["margin"] = margin
    parts["window"] = window
    if derive:
        hist_budget = max(0, window - reply - fixed - margin - parts["markers"])
    else:
        hist_budget = max(0, int(budget_tokens))  # type: ignore[arg-type]
    summary_text = policy.summary_text or None
    parts["summary"] = _text_tokens(SUMMARY_HEAD + summary_text, enc) if summary_text else 0
    if summary_text and parts["summary"] > hist_budget // 2:
        summary_text, parts["summary"] = None, 0  # a summary must not eat the history it stands for
    hist_budget -= parts["summary"]

    items = list(history)
    h = History.of(items, enc)
    messages, total, first, dropped_ids, truncated_ids = _choose(items, h, hist_budget, policy, query_text, enc)
    parts["history"] = total
    return Window(
        messages=messages,
        tokens=total,
        dropped=len(items) - len(messages),
        dropped_ids=dropped_ids,
        budget=hist_budget,
        parts=parts,
        encoding=enc,
        truncated_ids=truncated_ids,
        model=model,
        system=system,
        context=context,
        query=query_text,
        summary_text=summary_text,
        # by position: the history's first message opens no turn it could be cut from (with or without an id)
        opens_mid_turn=bool(messages) and first > 0 and _get(messages[0], "role") == "assistant",
    )


def _choose(items: list[Any], h: History, budget: int, policy: Policy, query_text: str, enc: str
            ) -> tuple[list[Any], int, int, list[str], list[str]]:
    """The history items to send (some shortened), their tokens, the position of the first one
    sent, and the ids dropped and cut (of items that have one)."""
    total = h.cum[len(h)]
    if total <= budget:
        return items, total, 0, [], []  # the whole history fits: nothing to rank or choose (most turns of most chats)
    ranked, scores = None, None
    if policy.relevance and query_text and len(h) > 1:
        from .ranking import rank_units

        ranked, scores = rank_units(h, query_text, policy, enc)
    sel = select(h, budget, policy, ranked, scores)
    messages: list[Any] = []
    truncated_ids: list[str] = []
    total = 0
    for i in sel.chosen:
        item = items[i]
        if i in sel.truncated:
            item, n = _shortened(item, h, i, sel.truncated[i], enc)
            if i not in h.unnamed:
                truncated_ids.append(h.ids[i])
        else:
            n = h.tokens[i]
        messages.append(item)
        total += n
    dropped_ids: list[str] = []  # the runs between chosen messages, sliced (not a scan of every message)
    prev = 0
    for i in sel.chosen:
        dropped_ids += h.ids[prev:i]
        prev = i + 1
    dropped_ids += h.ids[prev:]
    if h.unnamed:  # their ids are stand-ins ("#k"), not names a caller gave
        sent = set(sel.chosen)
        dropped_ids = [h.ids[k] for k in range(len(h)) if k not in sent and k not in h.unnamed]
    return messages, total, sel.chosen[0] if sel.chosen else 0, dropped_ids, truncated_ids


def _shortened(item: Any, h: History, i: int, target: int, enc: str) -> tuple[Any, int]:
    """A copy of item with head and tail of its content kept so that it costs at most target tokens."""
    oh = h.fixed[i]  # format and tool calls: what a cut cannot shorten
    text = truncate_text(h.contents[i], max(1, target - oh), enc)
    if isinstance(item, dict):
        copy: Any = {**item, "content": text}
    else:
        copy = item.model_copy(update={"content": text, "tokens": {}}) if hasattr(item, "model_copy") else item
    return copy, _text_tokens(text, enc) + oh

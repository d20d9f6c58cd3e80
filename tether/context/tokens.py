"""Token counting that is right offline and cheap per turn.

tiktoken is used directly (litellm.token_counter re-tokenizes everything on each
call); its BPE files come from litellm's bundled copy via `tether._env.setup()`.
Counts are cached per message, keyed by id and content, so a new turn only
tokenizes the messages that are new or edited.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from tether import _env

# OpenAI's chat-format overhead: every message costs 3 tokens plus its role,
# a name costs 1 more plus its own tokens, and the reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_REPLY = 3
DEFAULT_ENCODING = "cl100k_base"
# Encodings litellm ships; anything else would need a download.
SHIPPED = frozenset({"cl100k_base", "o200k_base", "p50k_base"})

# Bare OpenAI name prefixes that use o200k (current families); checked after the
# provider prefix is removed so "openai/gpt-4o" and "azure/gpt-4o" count right too.
_O200K_PREFIXES = (
    "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4", "gpt-oss", "codex",
)
_OPENAI_PROVIDERS = frozenset({"", "openai", "azure", "azure_ai", "openrouter/openai"})


def _split_provider(model: str) -> tuple[str, str]:
    """("openai", "gpt-4o") for "openai/gpt-4o"; provider "" for bare names."""
    if "/" not in model:
        return "", model
    provider, _, bare = model.rpartition("/")
    return provider.lower(), bare


@lru_cache(maxsize=512)
def encoding_for(model: str | None) -> str:
    """The tiktoken encoding for a model family: o200k for current OpenAI models, cl100k otherwise."""
    if not model:
        return DEFAULT_ENCODING
    provider, bare = _split_provider(model.strip())
    bare = bare.lower()
    if provider.endswith("/openai"):  # an OpenAI model served by another host: groq/openai/gpt-oss-120b
        provider = "openai"
    if provider in _OPENAI_PROVIDERS:
        if bare.startswith(_O200K_PREFIXES):
            return "o200k_base"
        try:
            from tiktoken.model import encoding_name_for_model

            name = encoding_name_for_model(bare)
        except (KeyError, ImportError):
            return DEFAULT_ENCODING
        return name if name in SHIPPED else DEFAULT_ENCODING
    return DEFAULT_ENCODING


_ENCODINGS: dict[str, Any] = {}  # read once per process (a BPE file takes ~0.1-0.2 s)


def get_encoding(name: str) -> Any:
    """A tiktoken Encoding read from the bundled BPE files (never downloaded)."""
    key = name if name in SHIPPED else DEFAULT_ENCODING
    enc = _ENCODINGS.get(key)
    if enc is None:
        _env.setup()
        import tiktoken

        enc = _ENCODINGS[key] = tiktoken.get_encoding(key)
    return enc


def encoding_loaded(name: str) -> bool:
    """Whether counting with this encoding is only the counting (its BPE file is already read)."""
    return (name if name in SHIPPED else DEFAULT_ENCODING) in _ENCODINGS


def count_tokens(text: Any, model: str | None = None, *, encoding: str | None = None) -> int:
    """Tokens of a text, or of a list of chat messages (with format overhead and reply priming)."""
    enc_name = encoding or encoding_for(model)
    if isinstance(text, str):
        return _text_tokens(text, enc_name)
    if isinstance(text, dict) or hasattr(text, "content"):
        return message_tokens(text, enc_name)
    total = sum(message_tokens(m, enc_name) for m in text)
    return total + TOKENS_PER_REPLY if total else 0


@lru_cache(maxsize=200_000)
def _text_tokens(text: str, enc_name: str) -> int:
    enc = get_encoding(enc_name)
    return len(enc.encode(text, disallowed_special=()))


# id -> (content, count) per encoding: the fast path, an identity check on the content string.
_by_id: dict[str, dict[str, tuple[str, int]]] = {}
_BY_ID_MAX = 200_000


def content_tokens(msg: Any, enc_name: str) -> int:
    """Tokens of a message's content, cached by id and content; stored on Message.tokens too."""
    is_dict = isinstance(msg, dict)
    content = (msg.get("content") if is_dict else msg.content) or ""
    if not isinstance(content, str):
        content = str(content)
    mid = msg.get("id") if is_dict else getattr(msg, "id", None)
    cache = _by_id.setdefault(enc_name, {})
    if mid is not None:
        hit = cache.get(mid)
        if hit is not None and (hit[0] is content or hit[0] == content):
            return hit[1]
    n: int | None = None
    store = None if is_dict else getattr(msg, "tokens", None)
    if isinstance(store, dict) and hasattr(msg, "content_hash"):
        key = f"{enc_name}:{msg.content_hash()}"
        n = store.get(key)
        if n is None:
            n = _text_tokens(content, enc_name)
            # keep only the current text's counts: an edit makes the old keys useless. A new
            # dict, not an edit of the old one: another thread may be serialising the message.
            fresh = {k: v for k, v in store.items() if not k.startswith(enc_name + ":")}
            fresh[key] = n
            try:
                msg.tokens = fresh
            except (AttributeError, TypeError, ValueError):  # a frozen or slotted object: keep it in place
                store.clear()
                store.update(fresh)
    if n is None:
        n = _text_tokens(content, enc_name)
    if mid is not None:
        if len(cache) >= _BY_ID_MAX:
            cache.clear()
        cache[mid] = (content, n)
    return n


def overhead_tokens(role: str, name: str | None, enc_name: str) -> int:
    """Chat-format cost of one message besides its content."""
    n = TOKENS_PER_MESSAGE + _text_tokens(role or "user", enc_name)
    if name:
        n += TOKENS_PER_NAME + _text_tokens(name, enc_name)
    return n


def tool_tokens(fields: Any, enc_name: str) -> int:
    """What a message's tool fields add when sent (`fields`: anything with .get()): the
    calls' JSON and the id a tool result answers. Serialised JSON, not the provider's exact
    rendering of a function call, which differs by a few tokens per call (the margin covers it)."""
    calls, call_id = fields.get("tool_calls"), fields.get("tool_call_id")
    if not calls and not call_id:
        return 0
    import json

    n = _text_tokens(str(call_id), enc_name) + 1 if call_id else 0
    if calls:
        n += _text_tokens(json.dumps(calls, default=str, ensure_ascii=False), enc_name)
    return n


def message_tokens(msg: Any, enc_name: str) -> int:
    """Content plus chat-format overhead (and any tool calls) of one history message."""
    if isinstance(msg, dict):
        role, name, fields = msg.get("role") or "user", msg.get("name"), msg
    else:
        from .items import fields_of

        fields = fields_of(msg)
        role, name = fields.get("role") or "user", fields.get("name")
    return content_tokens(msg, enc_name) + overhead_tokens(role, name, enc_name) + tool_tokens(fields, enc_name)


def truncate_text(text: str, max_tokens: int, enc_name: str, marker: str = "\n[... {n} tokens omitted ...]\n") -> str:
    """Head and tail of a text within max_tokens, with a marker naming what was cut.

    Head and tail are slices of the text itself, at whole characters: a token boundary can fall
    inside a character's bytes (an emoji is several tokens), and decoding such a slice of tokens
    gives U+FFFD.
    """
    enc = get_encoding(enc_name)
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text
    room = max(max_tokens - _text_tokens(marker.format(n=len(ids)), enc_name) - 2, 2)
    head = (room * 2) // 3
    tail = room - head
    while True:
        out = _head_and_tail(text, enc, ids, head, tail, marker)
        # a slice re-encodes to a few tokens more or less than it came from: trim until it fits
        if _text_tokens(out, enc_name) <= max_tokens or head + tail == 0:
            return out
        if head >= tail:
            head -= max(1, head // 10)
        else:
            tail -= max(1, tail // 10)


def _head_and_tail(text: str, enc: Any, ids: list[int], head: int, tail: int, marker: str) -> str:
    """The text's characters spelled whole by its first `head` and last `tail` tokens, around
    the marker. Counted in characters of the decoded tokens: the text's own, one for one (a lone
    surrogate, which tiktoken reads as U+FFFD, is one character either way)."""
    def chars(part: list[int]) -> int:  # an incomplete character at either end is not counted
        return len(enc.decode_bytes(part).decode("utf-8", "ignore")) if part else 0

    n_head = min(chars(ids[:head]), len(text))
    n_tail = min(chars(ids[len(ids) - tail:] if tail else []), len(text) - n_head)
    return text[:n_head] + marker.format(n=len(ids) - head - tail) + text[len(text) - n_tail:]

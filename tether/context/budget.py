"""How many tokens of history a model can take.

The input window comes from litellm's model info (imported lazily: the import
costs seconds and must never happen for `--help` or listing sessions), or from
the config's `context_window` override. From it we subtract the reply reserve,
the system prompt, the session context block, the new message and a margin.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from tether import _env

# Used when the model is unknown to litellm (or None): small enough to be safe
# for local models, large enough for a useful history.
DEFAULT_WINDOW = 8192
DEFAULT_REPLY = 1024
# The reply reserve is capped: models that may write 64k-128k tokens would
# otherwise leave little room for history; a chat reply rarely needs more.
REPLY_CAP = 4096
MARGIN_SHARE = 0.02
MARGIN_MIN = 32


@dataclass(frozen=True)
class ModelLimits:
    """A model's input window and its maximum reply; `known` is False for defaults."""

    max_input_tokens: int
    max_output_tokens: int
    known: bool = True


@lru_cache(maxsize=256)
def model_limits(model: str | None) -> ModelLimits:
    """Limits from litellm's bundled model map (no network); defaults for unknown models."""
    if not model:
        return ModelLimits(DEFAULT_WINDOW, DEFAULT_REPLY, known=False)
    _env.setup()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm  # lazy: seconds to import

        litellm.suppress_debug_info = True
    except ImportError:  # pragma: no cover - litellm is a hard dependency
        return ModelLimits(DEFAULT_WINDOW, DEFAULT_REPLY, known=False)
    for name in _candidates(model):
        try:
            info = litellm.get_model_info(name)
        except Exception:  # litellm raises various errors for unmapped names
            continue
        inp = info.get("max_input_tokens") or info.get("max_tokens")
        out = info.get("max_output_tokens") or info.get("max_tokens") or DEFAULT_REPLY
        if inp:
            return ModelLimits(int(inp), int(out), known=True)
    return ModelLimits(DEFAULT_WINDOW, DEFAULT_REPLY, known=False)


def _candidates(model: str) -> list[str]:
    """The name as given, then without its provider prefix (litellm maps some only one way)."""
    names = [model]
    if "/" in model:
        names.append(model.rsplit("/", 1)[1])
    if names[-1].startswith("ft:"):  # a fine-tune has its base model's window: ft:gpt-4o-mini-2024-07-18:org::id
        names.append(names[-1][3:].split(":", 1)[0])
    return names


def reply_reserve(limits: ModelLimits, override: int | None = None, window: int | None = None) -> int:
    """Tokens kept for the reply: the override, else the model's max output capped to a chat-sized share.

    `window` is the input window in force (a config override wins over litellm's figure):
    the share is taken of it, and never more than half of it.
    """
    if override is not None:
        return max(0, int(override))
    size = window or limits.max_input_tokens
    return min(max(256, min(limits.max_output_tokens, REPLY_CAP, size // 4)), size // 2)


def safety_margin(window: int) -> int:
    """A small cushion for tokenizer differences between providers."""
    return max(MARGIN_MIN, int(window * MARGIN_SHARE))

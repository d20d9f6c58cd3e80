"""Model routing: config, model facts, the offline model, the call + fallback engine.

Nothing here imports litellm at import time; `_lite.litellm()` does it on the
first call, after tether's environment setup. Imports of tether: sessions,
context, errors, _env only (never client or cli).

litellm mechanisms used, and why:
- `litellm.completion` / `acompletion` per attempt, with `max_retries=0` (the
  OpenAI SDK would otherwise retry twice behind our back) and `timeout=`:
  provider adapters and litellm's exception mapping (RateLimitError,
  ContextWindowExceededError, Timeout...) classify every failure.
- litellm's Retry-After parser (`_get_retry_after_from_exception_header`) on the
  headers it attaches to exceptions.
- `CustomLLM` + `custom_provider_map` for `tether/echo`, and `register_model` for
  its window and (zero) price, so the offline model takes the real code path.
- `get_model_info` for context windows and prices; `_hidden_params["response_cost"]`
  / `completion_cost` for cost; `stream_options={"include_usage": True}` and
  `stream_chunk_builder` for streamed usage; `get_llm_provider` to validate names.
Not used: `fallbacks=` and `Router`, because a session's window must be rebuilt
for each model tried (a smaller window for a smaller model), a context overflow
must shrink the window before moving on, the attempt list must survive (litellm's
fallbacks lose the original exception), sync streaming with `fallbacks=` is broken,
and Router does not fall back after the first streamed chunk.
"""
from .breaker import CircuitBreaker
from .config import ConfigReport, ModelSpec, Route, RouterConfig, inspect_config, load_config, parse_config

__all__ = [
    "CircuitBreaker", "ConfigReport", "ModelSpec", "Route", "RouterConfig", "inspect_config", "load_config",
    "parse_config",
]

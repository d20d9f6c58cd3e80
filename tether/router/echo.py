"""`tether/echo`: the built-in offline model, a litellm CustomLLM.

It answers from what it received (the last user message, how many messages and
tokens it saw) so demos and tests go through exactly the path a real provider
takes: litellm's completion/acompletion, streaming, usage and cost.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from litellm import CustomLLM, ModelResponse, token_counter
from litellm.types.utils import GenericStreamingChunk, Usage

PROVIDER = "tether"
MODEL = "tether/echo"
CONTEXT_WINDOW = 128_000
MAX_OUTPUT = 4_096


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else str(c)
    return ""


def _count(text: str) -> int:
    return token_counter(model="gpt-3.5-turbo", text=text) if text else 0


def answer(messages: list[dict[str, Any]]) -> tuple[str, int, int]:
    """(reply, prompt_tokens, completion_tokens) for a message list; deterministic."""
    prompt_tokens = token_counter(model="gpt-3.5-turbo", messages=messages)
    reply = f"echo: {_last_user(messages)} [{len(messages)} messages, {prompt_tokens} tokens]"
    return reply, prompt_tokens, _count(reply)


def _pieces(text: str) -> list[str]:
    """Word groups of alternating size (1, 2, 1, 2... words).

    litellm aborts a stream that repeats the same chunk 100 times in a row; one word
    per chunk did that for a prompt like "ha ha ha ...". Alternating sizes never
    give two equal chunks in a row, whatever the text.
    """
    words = text.split(" ")
    out, i, size = [], 0, 1
    while i < len(words):
        group = " ".join(words[i:i + size])
        out.append(group if i == 0 else " " + group)
        i, size = i + size, 3 - size
    return out


class EchoLLM(CustomLLM):
    """Sync, async and streaming completions without a network."""

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        reply, pt, ct = answer(messages)
        resp: ModelResponse = kwargs.get("model_response") or ModelResponse()
        resp.choices[0].message.content = reply  # type: ignore[union-attr]
        resp.choices[0].finish_reason = "stop"
        resp.model = MODEL
        resp.created = int(time.time())
        setattr(resp, "usage", Usage(prompt_tokens=pt, completion_tokens=ct, total_tokens=pt + ct))
        return resp

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        return self.completion(model, messages, *args, **kwargs)

    def _chunks(self, messages: list) -> list[GenericStreamingChunk]:
        reply, pt, ct = answer(messages)
        parts = _pieces(reply)
        out: list[GenericStreamingChunk] = []
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            out.append({
                "text": p, "is_finished": last, "finish_reason": "stop" if last else "", "index": 0,
                "tool_use": None,
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct} if last else None,
            })
        return out

    def streaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:  # type: ignore[override]
        yield from self._chunks(messages)

    async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        for c in self._chunks(messages):
            yield c


def register(lm: Any) -> None:
    """Add the `tether` provider to litellm's custom_provider_map and its model info."""
    handler = EchoLLM()
    existing = [p for p in (lm.custom_provider_map or []) if p.get("provider") != PROVIDER]
    lm.custom_provider_map = existing + [{"provider": PROVIDER, "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    lm.register_model({MODEL: {
        "max_input_tokens": CONTEXT_WINDOW, "max_output_tokens": MAX_OUTPUT, "max_tokens": MAX_OUTPUT,
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
        "cache_creation_input_token_cost": 0.0, "cache_read_input_token_cost": 0.0,
        "litellm_provider": PROVIDER, "mode": "chat",
    }})

"""Model facts the router needs (context window, output limit, price), read lazily from litellm.

Config overrides win; then `litellm.get_model_info`; unknown models get a
conservative default window so a window is still built for them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .config import ModelSpec, RouterConfig

DEFAULT_CONTEXT_WINDOW = 8_192


@dataclass(frozen=True)
class ModelInfo:
    name: str
    model: str
    context_window: int
    max_output_tokens: int | None
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    known: bool  # litellm knows this model


class Catalogue:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self._cache: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()

    def info(self, name: str) -> ModelInfo:
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        spec = self.config.spec(name)
        info = self._lookup(spec)
        with self._lock:
            self._cache[name] = info
        return info

    def _lookup(self, spec: ModelSpec) -> ModelInfo:
        from ._lite import litellm

        lm = litellm()
        raw: dict[str, Any] = {}
        try:
            raw = dict(lm.get_model_info(spec.model))
        except Exception:
            raw = {}
        window = spec.context_window or raw.get("max_input_tokens") or raw.get("max_tokens") or DEFAULT_CONTEXT_WINDOW
        out = spec.max_output_tokens or raw.get("max_output_tokens")
        return ModelInfo(
            name=spec.name, model=spec.model, context_window=int(window),
            max_output_tokens=int(out) if out else None,
            input_cost_per_token=spec.input_cost_per_token if spec.input_cost_per_token is not None
            else raw.get("input_cost_per_token"),
            output_cost_per_token=spec.output_cost_per_token if spec.output_cost_per_token is not None
            else raw.get("output_cost_per_token"),
            known=bool(raw),
        )

"""The call + fallback engine: one model at a time, its own window, every attempt recorded.

litellm does the calling (provider adapters, exception mapping, Retry-After
parsing, usage, cost); this module adds what litellm's `fallbacks=`/Router lack
for a pinned chat: a window rebuilt per model (a smaller window for a smaller
model), a shrink-and-retry on context overflow, attempt records, and a circuit
breaker whose state the app can show.

The policy is written once as a generator (`_drive`) that yields `Call`/`Sleep`
steps; the sync, async and streaming runners only execute those steps.
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AllModelsFailed, ContextOverflow, PromptTooLarge
from .breaker import CircuitBreaker
from .catalogue import Catalogue, ModelInfo
from .config import ModelSpec, RouterConfig
from .errors import NO_KEY, TRANSIENT, TURN_FAULTS, Classified, MidStreamError, classify, describe, remember_key

SHRINK = 0.7  # after a provider's context-length error, rebuild at 70% of what was sent


@dataclass
class Attempt:
    """One try of one model: what happened and how long it took."""

    model: str
    kind: str  # "ok" or an error kind: rate_limit, server, timeout, connection, auth, ...
    status: int | None = None
    seconds: float = 0.0
    error: str | None = None
    litellm_model: str | None = None
    window_tokens: int | None = None
    # an answer cut short mid-stream was paid for: the tokens of the text that arrived, and
    # the price of those and of the window, estimated (the provider never sent its usage)
    completion_tokens: int | None = None
    cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Prepared:
    """What a window builder returns: the litellm messages and the window object."""

    messages: list[dict[str, Any]]
    tokens: int  # whole prompt, as counted by the window builder
    window: Any = None
    history_tokens: int = 0  # the part a rebuild can shrink


# builds the messages for one model; budget=None means "the model's full budget"
WindowBuilder = Callable[[ModelInfo, "int | None"], Prepared]


@dataclass
class Call:
    spec: ModelSpec
    info: ModelInfo
    prepared: Prepared
    kwargs: dict[str, Any]


@dataclass
class Sleep:
    seconds: float


@dataclass
class Outcome:
    """A successful turn at the router level (the session layer adds ids and pins)."""

    model: str
    spec: ModelSpec
    info: ModelInfo
    text: str
    usage: dict[str, int]
    cost_usd: float | None
    latency_ms: float
    attempts: list[Attempt]
    prepared: Prepared
    response: Any = None
    failed_models: list[str] = field(default_factory=list)


class Router:
    """Routes one turn through a chain of models."""

    def __init__(self, config: RouterConfig, breaker: CircuitBreaker | None = None) -> None:
        self.config = config
        self.catalogue = Catalogue(config)
        self.breaker = breaker or CircuitBreaker(config.breaker_failures, config.breaker_cooldown)
        for spec in config.models.values():  # hidden in errors and litellm's logs before any call
            remember_key(spec.resolved_api_key())

    # -- call options -------------------------------------------------------
    def call_kwargs(self, spec: ModelSpec, messages: list[dict[str, Any]], params: dict[str, Any],
                    stream: bool = False) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": spec.model, "messages": messages,
                              "timeout": spec.timeout or self.config.timeout,
                              # we retry ourselves; the OpenAI SDK would otherwise retry twice more
                              "max_retries": 0}
        if spec.api_base:
            kw["api_base"] = spec.api_base
        key = spec.resolved_api_key()
        if key:
            kw["api_key"] = key
        if spec.max_output_tokens:
            kw["max_tokens"] = spec.max_output_tokens
        kw.update(spec.params)
        kw.update(params)
        if (kw.get("api_base") or kw.get("base_url")) and not kw.get("api_key"):
            # a server of the user's choosing gets only the key configured for it: with none,
            # litellm would send the provider's key from the environment (OPENAI_API_KEY) there;
            # local servers (llama.cpp, ollama, vLLM) take any key
            kw["api_key"] = NO_KEY
        remember_key(kw.get("api_key"))  # the variable may be set since, or the call passed its own
        if stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
        return kw

    def delay(self, c: Classified, tries: int) -> float:
        cap = self.config.retry_after_cap
        if c.retry_after is not None and c.retry_after >= 0:
            return min(c.retry_after, cap)
        return min(self.config.backoff * (2 ** tries) * (0.75 + random.random() / 2), cap)

    # -- the policy ---------------------------------------------------------
    def _drive(self, chain: list[str], build: WindowBuilder, params: dict[str, Any], stream: bool,
               attempts: list[Attempt] | None = None) -> Generator[Call | Sleep, Any, Outcome]:
        """Yields steps; a Call is answered with ("ok", result) or ("err", exception).
        `attempts`: a list to record into, for a runner that reports them while the turn runs.
        A runner that stops early (cancelled, Ctrl-C) must close() this generator: that frees
        a circuit-breaker probe slot claimed for the model being tried."""
        # Nothing here is allocated before the call that a first model answering does not
        # need: this frame lives as long as the call, and under load every object it holds
        # is promoted to the oldest GC generation, making full passes more frequent.
        attempts = [] if attempts is None else attempts
        failed: list[str] | None = None
        queue: list[str] = chain
        i = 0
        while i < len(queue):
            name = queue[i]
            i += 1
            if any(a.model == name for a in attempts):  # every model tried has an attempt
                continue
            if not self.breaker.allow(name):
                st = self.breaker.state(name)
                attempts.append(Attempt(name, "circuit_open", error=f"skipped: circuit open, retry in {st['retry_in']}s"))
                failed = (failed or []) + [name]
                continue
            spec = self.config.spec(name)
            info = self.catalogue.info(name)
            try:
                outcome = yield from self._try_model(name, spec, info, build, params, stream, attempts,
                                                     more=i < len(queue))
            except BaseException:  # closed by the runner, or the window could not be built
                self.breaker.release(name)  # a claimed probe slot must not stay claimed for good
                raise
            if outcome is not None:
                self.breaker.success(name)
                outcome.failed_models = failed or []
                return outcome
            failed = (failed or []) + [name]
            kind = attempts[-1].kind
            if kind in TURN_FAULTS:
                # the turn's fault, not the model's: the circuit stays as it was (a few long
                # pastes or one bad request must not lock every session out of a healthy model)
                self.breaker.release(name)
            else:
                self.breaker.failure(name)
            if kind == "context_overflow":
                queue, i = self._larger_first(queue[i:], {a.model for a in attempts}, info), 0
        if attempts and all(a.kind == "context_overflow" for a in attempts):
            # no model took the message even with no history: say how big it is
            raise PromptTooLarge(f"{attempts[-1].error} (no configured model with a larger window)", attempts)
        summary = "; ".join(describe(a.model, a.kind, a.status, a.error, self.key_hint(a.model) if a.kind == "auth" else None)
                            for a in attempts)
        raise AllModelsFailed(f"every model failed: {summary}", attempts)

    def _try_model(self, name: str, spec: ModelSpec, info: ModelInfo, build: WindowBuilder,
                   params: dict[str, Any], stream: bool, attempts: list[Attempt], more: bool,
                   ) -> Generator[Call | Sleep, Any, Outcome | None]:
        """One model: retries of transient errors, smaller windows after a context-length error.
        The Outcome if it answered, else None (its last attempt says why). `more`: whether other
        models are queued after this one (a long Retry-After sends the turn to them)."""
        if spec.api_key_env and not spec.resolved_api_key():
            # not called: without the key litellm would send the provider's usual one (your
            # OPENAI_API_KEY) to this model's api_base
            attempts.append(Attempt(name, "auth", error="not called: its key is missing", litellm_model=spec.model))
            return None
        budget: int | None = None
        shrinks = tries = 0
        limit = spec.retries if spec.retries is not None else self.config.retries
        while True:
            t0 = time.perf_counter()
            try:
                prepared = build(info, budget)
            except ContextOverflow as e:
                attempts.append(Attempt(name, "context_overflow", seconds=time.perf_counter() - t0,
                                        error=str(e), litellm_model=spec.model))
                return None
            kwargs = self.call_kwargs(spec, prepared.messages, params, stream)
            status, value = yield Call(spec, info, prepared, kwargs)
            secs = time.perf_counter() - t0
            if status == "ok":
                attempts.append(Attempt(name, "ok", 200, secs, None, spec.model, prepared.tokens))
                text, usage, cost, response = value
                return Outcome(name, spec, info, text, usage, cost, secs * 1000, attempts, prepared, response, [])
            c = classify(value, kwargs.get("api_key"))
            attempts.append(Attempt(name, c.kind, c.status, secs, c.message, spec.model, prepared.tokens))
            if isinstance(value, MidStreamError) and value.partial:
                attempts[-1].completion_tokens, attempts[-1].cost_usd = self.spent(
                    spec, info, prepared.tokens, value.partial)
            if c.kind == "context_overflow":
                # the model's real window is smaller than we think: less history, then none
                if prepared.history_tokens > 0 and shrinks < 2:
                    shrinks += 1
                    budget = int(prepared.history_tokens * SHRINK) if shrinks == 1 else 0
                    continue
                return None
            if c.kind not in TRANSIENT or tries >= limit:
                return None
            if more and c.retry_after is not None and c.retry_after > self.config.retry_after_cap:
                return None  # the model asks for a longer pause than we wait: the next one answers now
            tries += 1
            yield Sleep(self.delay(c, tries - 1))

    def key_hint(self, name: str) -> str:
        """Why a model refused us, in the user's terms: which variable to set, or that the key
        given was rejected. Names variables only, never a key."""
        spec = self.config.spec(name)
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            return f"{spec.api_key_env} is not set"
        if spec.resolved_api_key():
            return "the configured key was refused"
        if spec.api_base:
            return "its api_base gets no key from the environment: set api_key_env (or api_key) for it"
        try:
            from ._lite import litellm

            missing = litellm().validate_environment(model=spec.model).get("missing_keys") or []
        except Exception:  # noqa: BLE001 - only a hint
            missing = []
        if missing:
            return f"set {missing[0]}" + (f" (or {', '.join(missing[1:])})" if missing[1:] else "")
        return "the key in the environment was refused"

    def _larger_first(self, queue: list[str], tried: set[str], failed: ModelInfo) -> list[str]:
        """After an overflow only larger windows help: the chain's in order, then other configured
        ones, smallest first. When the failed model's window was a guess (unknown to litellm and
        not configured), the chain's models with the same guess may be larger in truth: kept too."""
        window = failed.context_window
        guessed = not failed.known and not self.config.spec(failed.name).context_window
        size = lambda n: self.catalogue.info(n).context_window  # noqa: E731
        big = lambda n: size(n) > window  # noqa: E731
        in_chain = (lambda n: size(n) >= window) if guessed else big
        chain = [n for n in queue if n not in tried and in_chain(n)]
        extra = [n for n in self.config.models if n not in tried and n not in chain and big(n)]
        return chain + sorted(extra, key=size)

    # -- results ------------------------------------------------------------
    def _finish(self, spec: ModelSpec, info: ModelInfo, response: Any) -> tuple[str, dict[str, int], float | None, Any]:
        text = response.choices[0].message.content or ""
        u = getattr(response, "usage", None)
        usage = {"prompt_tokens": int(getattr(u, "prompt_tokens", 0) or 0),
                 "completion_tokens": int(getattr(u, "completion_tokens", 0) or 0),
                 "total_tokens": int(getattr(u, "total_tokens", 0) or 0)}
        return text, usage, self._cost(spec, info, response, usage), response

    def spent(self, spec: ModelSpec, info: ModelInfo, prompt_tokens: int, text: str) -> tuple[int, float | None]:
        """(completion tokens, cost) of an answer stopped part-way, estimated from its text:
        the provider billed the window and what it sent, but its usage never arrived. Priced
        as `_cost` prices a whole answer without litellm's figure: config prices, else litellm's."""
        from ..context import count_tokens

        completion = count_tokens(text, spec.model)
        return completion, _at_prices(spec if _has_prices(spec) else info, prompt_tokens, completion)

    def _cost(self, spec: ModelSpec, info: ModelInfo, response: Any, usage: dict[str, int]) -> float | None:
        """litellm's cost (already computed on the response, else completion_cost); config prices win."""
        if _has_prices(spec):
            return _at_prices(spec, usage["prompt_tokens"], usage["completion_tokens"])
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        if cost is not None:
            return float(cost)
        if info.known and "response_cost" not in hidden:  # a streamed answer rebuilt from chunks
            from ._lite import litellm

            try:
                return float(litellm().completion_cost(completion_response=response, model=spec.model))
            except Exception:
                pass
        # litellm could not price it (unknown model): nothing to guess from unless prices are known
        return _at_prices(info, usage["prompt_tokens"], usage["completion_tokens"])

    # -- runners ------------------------------------------------------------
    def complete(self, chain: list[str], build: WindowBuilder, params: dict[str, Any] | None = None) -> Outcome:
        """Blocking turn: litellm.completion per attempt."""
        from ._lite import litellm

        lm = litellm()
        drive = self._drive(chain, build, params or {}, stream=False)
        reply: Any = None
        try:
            while True:
                step = drive.send(reply)
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    reply = None
                    continue
                try:
                    resp = lm.completion(**step.kwargs)
                    reply = ("ok", self._finish(step.spec, step.info, resp))
                except Exception as e:  # noqa: BLE001 - classified by the policy
                    reply = ("err", e)
        except StopIteration as stop:
            return stop.value
        except BaseException:  # Ctrl-C in a call or a back-off: the model did not fail
            drive.close()  # frees a claimed probe slot
            raise

    async def acomplete(self, chain: list[str], build: WindowBuilder, params: dict[str, Any] | None = None) -> Outcome:
        """Async turn: litellm.acompletion per attempt."""
        import asyncio

        from ._lite import litellm

        lm = litellm()
        drive = self._drive(chain, build, params or {}, stream=False)
        reply: Any = None
        try:
            while True:
                step = drive.send(reply)
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    reply = None
                    continue
                try:
                    resp = await lm.acompletion(**step.kwargs)
                    reply = ("ok", self._finish(step.spec, step.info, resp))
                except Exception as e:  # noqa: BLE001
                    reply = ("err", e)
        except StopIteration as stop:
            return stop.value
        except BaseException:  # cancelled, Ctrl-C, in a call or a back-off: the model did not fail
            drive.close()  # frees a claimed probe slot
            raise


def _has_prices(prices: ModelSpec | ModelInfo) -> bool:
    return prices.input_cost_per_token is not None or prices.output_cost_per_token is not None


def _at_prices(prices: ModelSpec | ModelInfo, prompt: int, completion: int) -> float | None:
    """Tokens at per-token prices (a missing one counts as free); None when neither is known."""
    if not _has_prices(prices):
        return None
    return prompt * (prices.input_cost_per_token or 0.0) + completion * (prices.output_cost_per_token or 0.0)

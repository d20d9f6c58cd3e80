"""Router configuration: `<home>/config.toml` or a dict, one schema, strict validation.

Errors name the offending key (`models.smart.context_window: expected an integer`)
because a typo in a config file otherwise shows up much later as a wrong model.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownModel

ECHO_MODEL = "tether/echo"
CONFIG_FILE = "config.toml"
NO_PROVIDER_NOTICE = (
    "No model configured: using the offline model tether/echo. "
    "Set OPENAI_API_KEY (or another provider key) or write <home>/config.toml to use a real one."
)
# provider key in the environment -> a sensible default model for it (checked in this order)
ENV_DEFAULTS: list[tuple[str, str]] = [
    ("OPENAI_API_KEY", "gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.0-flash"),
    ("MISTRAL_API_KEY", "mistral/mistral-small-latest"),
    ("GROQ_API_KEY", "groq/llama-3.1-8b-instant"),
]
# sections other parts of tether own; the router passes them through untouched
PASSTHROUGH = frozenset({"context"})

_MODEL_KEYS = {
    "model": str, "api_base": str, "api_key": str, "api_key_env": str, "context_window": int,
    "max_output_tokens": int, "fallbacks": list, "params": dict, "timeout": (int, float),
    "retries": int, "input_cost_per_token": (int, float), "output_cost_per_token": (int, float),
}
_TOP_KEYS = {
    "default_model": str, "fallbacks": list, "models": dict, "routes": list, "retries": int,
    "retry_after_cap": (int, float), "backoff": (int, float), "timeout": (int, float),
    "repin_after_failures": int, "breaker_failures": int, "breaker_cooldown": (int, float),
}
_WHEN_KEYS = {"min_prompt_tokens": int, "max_prompt_tokens": int, "contains": (str, list)}
# what a turn decides itself (as chat_once refuses them); a model's params must not override it
_PARAMS_RESERVED = {
    "model": "the model is the table's `model`", "messages": "the window is built from the session",
    "stream": "the caller chooses streaming", "fallbacks": "use `fallbacks`", "api_key": "use `api_key` or `api_key_env`",
    "api_base": "use `api_base`", "base_url": "use `api_base`, which gets only the key configured for it",
    "timeout": "use `timeout`", "max_retries": "use `retries`", "num_retries": "use `retries`",
}
# "os.environ/KEY" (litellm proxy configs), "$KEY", "${KEY}": meant as a reference, sent as the key
_ENV_REF = re.compile(r"(?:os\.environ/|\$\{?)([A-Za-z_][A-Za-z0-9_]*)\}?")


@dataclass(frozen=True)
class ModelSpec:
    """One callable model: its tether name and everything litellm needs to call it."""

    name: str
    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    fallbacks: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    configured: bool = True

    def resolved_api_key(self) -> str | None:
        """The key, read from the environment at call time; never stored anywhere."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "").strip() or None  # a CRLF .env leaves "\r"
        return None

    def public(self) -> dict[str, Any]:
        """What may be shown or logged: everything but the key."""
        d = {"name": self.name, "model": self.model, "api_base": self.api_base, "api_key_env": self.api_key_env,
             "context_window": self.context_window, "max_output_tokens": self.max_output_tokens,
             "fallbacks": list(self.fallbacks) if self.fallbacks is not None else None}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Route:
    """Picks the model of a NEW session when every condition in `when` holds."""

    model: str
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    contains: tuple[str, ...] = ()

    def matches(self, prompt: str, prompt_tokens: int) -> bool:
        if self.min_prompt_tokens is not None and prompt_tokens < self.min_prompt_tokens:
            return False
        if self.max_prompt_tokens is not None and prompt_tokens > self.max_prompt_tokens:
            return False
        if self.contains and not any(c.lower() in prompt.lower() for c in self.contains):
            return False
        return True


@dataclass
class RouterConfig:
    """The validated configuration plus where it came from (for `tether config`)."""

    default_model: str = ECHO_MODEL
    default_reason: str = "offline"
    fallbacks: tuple[str, ...] = ()
    models: dict[str, ModelSpec] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    retries: int = 2
    retry_after_cap: float = 30.0
    backoff: float = 0.5
    timeout: float = 120.0
    repin_after_failures: int = 0
    breaker_failures: int = 3
    breaker_cooldown: float = 60.0
    sections: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    source: str = "none"  # "file", "dict" or "none"
    notice: str | None = None

    def spec(self, name: str) -> ModelSpec:
        """A configured model by name, else a raw litellm model string used as is."""
        if name in self.models:
            return self.models[name]
        if not name or not isinstance(name, str):
            raise UnknownModel(f"invalid model name {name!r}")
        return ModelSpec(name=name, model=name, configured=False)

    def chain(self, first: str) -> list[str]:
        """The order to try for a turn: the model, then its own fallbacks or the global list."""
        spec = self.spec(first)
        rest = spec.fallbacks if spec.fallbacks is not None else self.fallbacks
        out = [first]
        for n in rest:
            if n not in out:
                out.append(n)
        return out

    def pick_route(self, prompt: str, prompt_tokens: int) -> tuple[str, int] | None:
        for i, r in enumerate(self.routes):
            if r.matches(prompt, prompt_tokens):
                return r.model, i
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None, "source": self.source,
            "default_model": self.default_model, "default_reason": self.default_reason,
            "fallbacks": list(self.fallbacks), "models": {n: s.public() for n, s in self.models.items()},
            "routes": len(self.routes), "notice": self.notice,
        }


def _check(where: str, value: Any, typ: Any) -> Any:
    if typ in (int, (int, float)) and isinstance(value, bool):  # True is an int to Python, not to a reader
        raise ConfigError(f"{where}: expected {'an integer' if typ is int else 'a number'}, got {value!r}")
    if typ == (int, float) and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if not isinstance(value, typ):
        names = {str: "a string", int: "an integer", list: "a list", dict: "a table", (int, float): "a number",
                 (str, list): "a string or a list"}
        raise ConfigError(f"{where}: expected {names.get(typ, typ)}, got {type(value).__name__}")
    if typ is int or typ == (int, float):
        if value < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return value


def _names(where: str, value: Any) -> tuple[str, ...]:
    _check(where, value, list)
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{where}[{i}]: expected a model name, got {v!r}")
    return tuple(value)


def _model(name: str, raw: Any) -> ModelSpec:
    where = f"models.{name}"
    _check(where, raw, dict)
    for k, v in raw.items():
        if k not in _MODEL_KEYS:
            raise ConfigError(f"{where}.{k}: unknown key (allowed: {', '.join(sorted(_MODEL_KEYS))})")
        _check(f"{where}.{k}", v, _MODEL_KEYS[k])
    if "model" not in raw or not raw["model"]:
        raise ConfigError(f"{where}.model: required (a litellm model string such as 'gpt-4o-mini')")
    for k in ("context_window", "max_output_tokens", "timeout"):
        if k in raw and raw[k] <= 0:
            raise ConfigError(f"{where}.{k}: must be positive, got {raw[k]!r}")
    if raw.get("max_output_tokens", 0) >= raw.get("context_window", math.inf):
        raise ConfigError(f"{where}.max_output_tokens: {raw['max_output_tokens']} leaves no room for the "
                          f"prompt in context_window {raw['context_window']}")
    for k, why in _PARAMS_RESERVED.items():
        if k in raw.get("params", {}):
            raise ConfigError(f"{where}.params.{k}: not allowed here ({why})")
    key = raw.get("api_key")
    if key is not None:
        if key != key.strip() or any(c.isspace() for c in key):
            raise ConfigError(f"{where}.api_key: has whitespace in it (a line end copied with it?)")
        ref = _ENV_REF.fullmatch(key)
        if ref:
            raise ConfigError(f"{where}.api_key: {key!r} is not read from the environment; "
                              f'write api_key_env = "{ref.group(1)}" instead')
    kw = dict(raw)
    if "fallbacks" in kw:
        kw["fallbacks"] = _names(f"{where}.fallbacks", kw["fallbacks"])
    for k in ("timeout", "input_cost_per_token", "output_cost_per_token"):
        if k in kw:
            kw[k] = float(kw[k])
    return ModelSpec(name=name, **kw)


def _route(i: int, raw: Any) -> Route:
    where = f"routes[{i}]"
    _check(where, raw, dict)
    for k in raw:
        if k not in ("when", "model"):
            raise ConfigError(f"{where}.{k}: unknown key (allowed: model, when)")
    if not isinstance(raw.get("model"), str) or not raw["model"]:
        raise ConfigError(f"{where}.model: required")
    when = _check(f"{where}.when", raw.get("when", {}), dict)
    for k, v in when.items():
        if k not in _WHEN_KEYS:
            raise ConfigError(f"{where}.when.{k}: unknown condition (allowed: {', '.join(sorted(_WHEN_KEYS))})")
        _check(f"{where}.when.{k}", v, _WHEN_KEYS[k])
    contains = when.get("contains", ())
    if isinstance(contains, str):
        contains = (contains,)
    for j, c in enumerate(contains):
        if not isinstance(c, str):
            raise ConfigError(f"{where}.when.contains[{j}]: expected a string, got {type(c).__name__}")
    if when.get("min_prompt_tokens", 0) > when.get("max_prompt_tokens", math.inf):
        raise ConfigError(f"{where}.when: min_prompt_tokens {when['min_prompt_tokens']} is above "
                          f"max_prompt_tokens {when['max_prompt_tokens']}: the route could never match")
    return Route(model=raw["model"], min_prompt_tokens=when.get("min_prompt_tokens"),
                 max_prompt_tokens=when.get("max_prompt_tokens"), contains=tuple(contains))


def env_default() -> tuple[str, str, str | None]:
    """(model, reason, notice) when no default_model is configured."""
    for var, model in ENV_DEFAULTS:
        if os.environ.get(var):
            return model, f"env:{var}", None
    return ECHO_MODEL, "offline", NO_PROVIDER_NOTICE


def parse_config(raw: dict[str, Any], *, path: Path | None = None, source: str = "dict") -> RouterConfig:
    """Validate a config dict (the parsed TOML); raises ConfigError naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table/dict, got {type(raw).__name__}")
    cfg = RouterConfig(path=path, source=source)
    for k, v in raw.items():
        if k in PASSTHROUGH:
            cfg.sections[k] = v
            continue
        if k not in _TOP_KEYS:
            raise ConfigError(f"{k}: unknown key (allowed: {', '.join(sorted(set(_TOP_KEYS) | PASSTHROUGH))})")
        _check(k, v, _TOP_KEYS[k])
    cfg.models = {n: _model(n, m) for n, m in raw.get("models", {}).items()}
    if "fallbacks" in raw:
        cfg.fallbacks = _names("fallbacks", raw["fallbacks"])
    cfg.routes = tuple(_route(i, r) for i, r in enumerate(raw.get("routes", [])))
    if raw.get("timeout", 1) <= 0:
        raise ConfigError(f"timeout: must be positive, got {raw['timeout']!r}")
    for k in ("retries", "repin_after_failures", "breaker_failures"):
        if k in raw:
            setattr(cfg, k, int(raw[k]))
    for k in ("retry_after_cap", "backoff", "timeout", "breaker_cooldown"):
        if k in raw:
            setattr(cfg, k, float(raw[k]))
    if raw.get("default_model"):
        cfg.default_model, cfg.default_reason = raw["default_model"], "config"
    elif len(cfg.models) == 1:
        cfg.default_model, cfg.default_reason = next(iter(cfg.models)), "only configured model"
    elif cfg.models:  # silently answering from tether/echo (or an env default) would hide the mistake
        raise ConfigError(f"default_model: required when several models are configured "
                          f"(configured: {', '.join(cfg.models)})")
    else:
        cfg.default_model, cfg.default_reason, cfg.notice = env_default()
    # names that refer to configured models must exist; other names are raw litellm strings
    _check_refs(cfg)
    return cfg


def _check_refs(cfg: RouterConfig) -> None:
    """A fallback or route naming a model that looks like a config name (no '/') must be configured."""
    refs = [("default_model", cfg.default_model)] + [(f"fallbacks[{i}]", n) for i, n in enumerate(cfg.fallbacks)]
    refs += [(f"routes[{i}].model", r.model) for i, r in enumerate(cfg.routes)]
    for n, s in cfg.models.items():
        refs += [(f"models.{n}.fallbacks[{i}]", f) for i, f in enumerate(s.fallbacks or ())]
    for where, name in refs:
        if not plausible_model(cfg, name):
            raise ConfigError(f"{where}: {name!r} is not a configured model (add [models.{name}]) "
                              "or a provider/model litellm string")


def plausible_model(cfg: RouterConfig, name: str) -> bool:
    """A configured name, a provider/model string, or a bare name litellm routes (no import)."""
    return name in cfg.models or "/" in name or _known_bare(name)


def _known_bare(name: str) -> bool:
    """Bare names litellm routes by itself (gpt-*, claude-*, o1...), checked without importing it."""
    return name.startswith(("gpt-", "o1", "o3", "o4", "claude-", "gemini-", "chatgpt-", "text-", "command"))


def load_config(home: Path, config: dict[str, Any] | str | os.PathLike[str] | None = None,
                check: Callable[[RouterConfig], None] | None = None) -> RouterConfig:
    """`config` as a dict or a path, else `<home>/config.toml` if present, else defaults.
    `check` validates the sections other parts own ([context]); its ConfigError is reported
    like the router's own, with the file named."""
    cfg = _load(home, config, check)
    if cfg.notice:  # say where the file goes, for library users too
        cfg.notice = cfg.notice.replace("<home>", str(home))
    return cfg


def _load(home: Path, config: dict[str, Any] | str | os.PathLike[str] | None,
          check: Callable[[RouterConfig], None] | None) -> RouterConfig:
    if isinstance(config, dict):
        cfg = parse_config(config, source="dict")
        if check:
            check(cfg)
        return cfg
    path = Path(config) if config is not None else home / CONFIG_FILE
    if not path.exists():
        if config is not None:
            raise ConfigError(f"config file {path} does not exist")
        cfg = RouterConfig(path=None, source="none")
        cfg.default_model, cfg.default_reason, cfg.notice = env_default()
        return cfg
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:  # the bare codec error named no file
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(f"config file {path}: line {line} is not UTF-8 text (byte {e.object[e.start]:#04x})") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError(f"config file {path}: nested too deeply") from None
    except ValueError as e:  # int() refuses a number of more than 4300 digits, in words about Python
        from ..sessions.replay import json_problem  # the same words as for a session file

        raise ConfigError(f"config file {path}: {json_problem(e)}") from None
    try:
        cfg = parse_config(raw, path=path, source="file")
        if check:
            check(cfg)
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


@dataclass
class ConfigReport:
    """What `tether config` shows: never raises, says whether the config validates."""

    path: Path
    exists: bool
    valid: bool
    error: str | None
    config: RouterConfig | None

    @property
    def default_model(self) -> str | None:
        return self.config.default_model if self.config else None


def inspect_config(home: Path, config: dict[str, Any] | str | os.PathLike[str] | None = None,
                   check: Callable[[RouterConfig], None] | None = None) -> ConfigReport:
    path = Path(config) if isinstance(config, (str, os.PathLike)) else home / CONFIG_FILE
    existing = next((p for p in (home, *home.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():  # the home, or a folder it needs, is a file
        return ConfigReport(path=path, exists=False, valid=False, config=None,
                            error=f"tether home {home} cannot be a directory: {existing} is a file")
    try:
        cfg = load_config(home, config, check)
        return ConfigReport(path=path, exists=path.exists(), valid=True, error=None, config=cfg)
    except ConfigError as e:
        return ConfigReport(path=path, exists=path.exists(), valid=False, error=str(e), config=None)

"""The config's `[context]` section applied to every turn (the rolling summary: summaries.py).

```toml
[context]
recency_share = 0.45      # any option of tether.context's Policy
summary = true            # keep a rolling summary of turns the window leaves out (off by default)
summary_words = 150
summary_every = 40        # re-summarise once this many left-out messages are not yet covered
```
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # `tether config` checks [context] without loading the session models
    from ..router.config import RouterConfig
    from ..sessions import Session

log = logging.getLogger("tether")

_SUMMARY = {"summary": bool, "summary_words": int, "summary_every": int}


@dataclass
class ContextSettings:
    policy: dict[str, Any] = field(default_factory=dict)
    summary: bool = False
    summary_words: int = 150
    summary_every: int = 40

    @classmethod
    def from_config(cls, section: Any) -> "ContextSettings":
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ConfigError(f"context: expected a table, got {type(section).__name__}")
        from ..context.select import Policy

        types = {f.name: type(f.default) for f in dataclasses.fields(Policy) if f.name != "summary_text"}
        types.update(_SUMMARY)
        out = cls()
        for key, value in section.items():
            want = types.get(key)
            if want is None:
                raise ConfigError(f"context.{key}: unknown option (known: {', '.join(sorted(types))})")
            ok = isinstance(value, want) or (want is float and isinstance(value, int))
            if not ok or (want is not bool and isinstance(value, bool)):
                raise ConfigError(f"context.{key}: expected {want.__name__}, got {value!r}")
            if key in _SUMMARY:
                setattr(out, key, value)
            else:
                out.policy[key] = value
        if out.summary_every < 1 or out.summary_words < 10:
            raise ConfigError("context.summary_every must be >= 1 and context.summary_words >= 10")
        try:
            Policy.from_options(out.policy)  # the ranges: a share above 1, a negative weight...
        except ValueError as e:
            raise ConfigError(f"context.{e}") from None
        return out

    def window_options(self, session: Session) -> dict[str, Any]:
        """Policy options for this session's window, with its cached summary when enabled."""
        if not self.summary:
            return self.policy
        from ..context.summary import cached_summary

        text = cached_summary(session)
        return {**self.policy, "summary_text": text} if text else self.policy


def check_config(cfg: "RouterConfig") -> None:
    """Validate the config's [context] section when the config is loaded, so `tether config`
    reports it and a turn never fails on it after its message is saved."""
    if "context" in cfg.sections:
        ContextSettings.from_config(cfg.sections["context"])

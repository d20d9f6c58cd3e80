"""Which model a session talks to: checking names, choosing a new session's model, pin
changes, and the chain of models a turn tries.

A session keeps its model across turns and processes (that is tether's point); this is
the one place that decides what the pin is and when it changes.
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import UnknownModel
from ..router.config import ECHO_MODEL, RouterConfig, plausible_model
from ..router.engine import Router
from ..sessions import Session, SessionEvent, SessionStore
from .cache import SessionCache
from .types import Events

log = logging.getLogger("tether")
AUTO_PIN = "auto: "  # how an automatic re-pin's reason starts
OFFLINE_PIN = "default (offline)"  # the reason of a pin made while no model was configured


class Pins:
    """Model names and session pins, over the client's config, store and session cache."""

    def __init__(self, config: RouterConfig, store: SessionStore, cache: SessionCache, events: Events) -> None:
        self.config = config
        self.store = store
        self.cache = cache
        self.events = events
        self._gone: set[tuple[str, str]] = set()  # (session, pin) pairs already warned about

    def check_model(self, name: str, *, ask_litellm: bool = True) -> str:
        """A configured name, or a raw litellm model string litellm can route. Without
        `ask_litellm` (session operations must not import it) a raw string only has to look
        routable, as the config's own names must."""
        if not isinstance(name, str) or not name.strip():
            raise UnknownModel(f"invalid model name {name!r}")
        if name in self.config.models:
            return name
        if ask_litellm:
            from ..router._lite import litellm

            try:
                litellm().get_llm_provider(name)
                return name
            except Exception:
                pass
        elif plausible_model(self.config, name):
            return name
        known = ", ".join(self.config.models) or "none configured"
        raise UnknownModel(f"unknown model {name!r}: not in config (configured: {known}) "
                           "and not a litellm model string like 'openai/gpt-4o-mini'")

    def pick_model(self, prompt: str, explicit: str | None) -> tuple[str, str]:
        """A new session's model: the explicit argument, else the first matching route, else the default."""
        if explicit is not None:
            return self.check_model(explicit), "explicit"
        if self.config.routes:
            tokens = 0
            if any(r.min_prompt_tokens is not None or r.max_prompt_tokens is not None for r in self.config.routes):
                from ..context import count_tokens

                tokens = count_tokens(prompt, self.config.spec(self.config.default_model).model)
            hit = self.config.pick_route(prompt, tokens)
            if hit:
                return hit[0], f"route {hit[1]}"
        return self.config.default_model, f"default ({self.config.default_reason})"

    def set_pin(self, session_id: str, model: str, reason: str, old: str | None) -> SessionEvent:
        self.cache.forget(session_id)
        self.store.update_header(session_id, {"pinned_model": model, "pin_reason": reason})
        event = SessionEvent.pin_changed(old, model, reason, model in self.config.models)
        self.store.add_event(session_id, event)
        self.events.emit("pin_changed", {"session_id": session_id, **event.data})
        return event

    def pin_model(self, session_id: str, model: str, reason: str = "user") -> str:
        name = self.check_model(model)
        session = self.cache.load(session_id)
        if session.pinned_model != name or self._stale(session):
            self.set_pin(session_id, name, reason, session.pinned_model)
        return name

    def pin_for_turn(self, session: Session, prompt: str, model: str | None) -> None:
        """Before a turn on an existing session: an explicit model is a user pin change; a
        session never pinned (made by create_session without a model) gets its model now."""
        if model is not None:
            name = self.check_model(model)
            if session.pinned_model != name or self._stale(session):
                # asked for by name again after its config entry went: now meant as a raw litellm string
                self._repin(session, name, "user")
        elif not session.pinned_model or self.stood_in(session):
            self._repin(session, *self.pick_model(prompt, None))

    def _repin(self, session: Session, name: str, reason: str) -> None:
        """Pin the session this turn has in hand too: its chain is worked out from its events."""
        session.events.append(self.set_pin(session.id, name, reason, session.pinned_model))
        session.pinned_model, session.pin_reason = name, reason

    def stood_in(self, session: Session) -> bool:
        """Whether the session is on the offline model only because nothing was configured when
        it began: once a provider is, its next turn goes there (nobody chose the echo)."""
        return (session.pinned_model == ECHO_MODEL and session.pin_reason == OFFLINE_PIN
                and self.config.default_model != ECHO_MODEL)

    def chain_for(self, session: Session) -> list[str]:
        """The models to try, in order. After an automatic re-pin the model it moved away from
        stays in the chain, last: it was the session's choice, and may have recovered."""
        chain = self.config.chain(self.usable_pin(session) or self.config.default_model)
        if (session.pin_reason or "").startswith(AUTO_PIN):
            for e in reversed(session.events):
                if e.type == "pin_changed":
                    old = e.data.get("from")
                    if isinstance(old, str) and old and old not in chain:
                        chain.append(old)
                    break
        return chain

    def usable_pin(self, session: Session) -> str | None:
        """The session's pin, unless it names a config entry the config no longer has: sent to
        litellm as a raw string, such a name fails every turn, or (a bare "gpt-4o-mini" that
        pointed at a private api_base) goes to another provider. Said once per session. The pin
        event records whether the name was a config entry; a raw litellm string stays usable."""
        pin = session.pinned_model
        if self.stood_in(session):
            return None
        if not pin or pin in self.config.models:
            return pin
        if not self._stale(session):
            return pin  # a raw litellm string (chosen, or a route's or the default's)
        if pin == self.config.default_model:
            return pin  # the default names it too: it is what the turn would use anyway
        if (session.id, pin) not in self._gone:
            self._gone.add((session.id, pin))
            log.warning("session %s is pinned to %r, which the config no longer has: using %r "
                        "(pin another model with /model or pin_model)", session.id, pin, self.config.default_model)
        return None


    def _stale(self, session: Session) -> bool:
        """Whether the session's pin named a config entry the config no longer has."""
        pin = session.pinned_model
        if not pin or pin in self.config.models:
            return False
        configured = next((e.data.get("configured") for e in reversed(session.events)
                           if e.type == "pin_changed" and e.data.get("to") == pin), None)
        if configured is None:  # pinned by a tether that did not record it
            # a config's route or default pinned it: a config name, unless it reads as provider/model
            # (a bare "gpt-4o-mini" may have been an entry on a private api_base: not sent raw)
            reason = session.pin_reason or ""
            from_config = reason.startswith(("route ", "default (config)", "default (only configured"))
            configured = (from_config and "/" not in pin) or not plausible_model(self.config, pin)
        return bool(configured)


def model_rows(config: RouterConfig, router: Router) -> list[dict[str, Any]]:
    """Configured models (plus the default and fallbacks) with window, prices and circuit
    state: what `tether models` and `/models` show."""
    names = list(config.models)
    for n in (config.default_model, *config.fallbacks):
        if n not in names:
            names.append(n)
    rows = []
    for n in names:
        info = router.catalogue.info(n)
        spec = config.spec(n)
        rows.append({
            **spec.public(), "context_window": info.context_window, "max_output_tokens": info.max_output_tokens,
            "input_cost_per_token": info.input_cost_per_token, "output_cost_per_token": info.output_cost_per_token,
            "known_to_litellm": info.known, "default": n == config.default_model,
            "circuit": router.breaker.state(n), "configured": spec.configured,
        })
    return rows

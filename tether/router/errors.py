"""Map whatever litellm raised to a small set of kinds the fallback policy acts on."""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import ContextOverflow

# a stream cut mid-answer is retried like a dropped connection (the retry restarts the answer)
TRANSIENT = frozenset({"rate_limit", "server", "timeout", "connection", "malformed", "mid_stream"})
# every other kind (auth, not_found, bad_request, content_policy, error) goes straight to the next model
# kinds caused by the turn (its size, its content), not by the model: no strike against it
TURN_FAULTS = frozenset({"context_overflow", "bad_request", "content_policy"})
# kinds whose provider message says more than the kind does
_EXPLAINED = frozenset({"bad_request", "content_policy", "error", "not_found", "connection", "malformed",
                        "circuit_open", "context_overflow"})


class MidStreamError(Exception):
    """A stream failed after text had arrived; wraps the original error."""

    def __init__(self, cause: BaseException, partial: str) -> None:
        super().__init__(f"stream failed after {len(partial)} characters: {cause}")
        self.cause = cause
        self.partial = partial


@dataclass(frozen=True)
class Classified:
    kind: str
    status: int | None
    retry_after: float | None
    message: str


def _headers(e: BaseException) -> Any:
    h = getattr(e, "litellm_response_headers", None)
    if h is None:
        resp = getattr(e, "response", None)
        h = getattr(resp, "headers", None)
    return h


def classify(e: BaseException, api_key: str | None = None) -> Classified:
    """Kind, HTTP status, Retry-After seconds (if the server sent one) and a key-free message
    (`api_key`: the key the call used, hidden wherever the provider's text repeats it)."""
    from ._lite import litellm

    lm = litellm()
    if isinstance(e, MidStreamError):
        inner = classify(e.cause, api_key)
        return Classified("mid_stream", inner.status, None, inner.message)
    status = getattr(e, "status_code", None)
    status = status if isinstance(status, int) else None
    msg = safe_error(e, api_key)
    if isinstance(e, ContextOverflow) or isinstance(e, lm.ContextWindowExceededError):
        return Classified("context_overflow", status, None, msg)
    if isinstance(e, lm.ContentPolicyViolationError):
        return Classified("content_policy", status, None, msg)
    if isinstance(e, lm.RateLimitError):
        return Classified("rate_limit", status or 429, _retry_after(e), msg)
    if isinstance(e, lm.Timeout) or isinstance(e, TimeoutError):
        return Classified("timeout", status, None, msg)
    if isinstance(e, (lm.AuthenticationError, lm.PermissionDeniedError)):
        return Classified("auth", status, None, msg)
    # the OpenAI SDK's "Missing credentials" (no key set) reaches us as a 500: retrying cannot help
    if "Missing credentials" in msg or "api_key client option must be set" in msg:
        return Classified("auth", status if status and status < 500 else 401, None, msg)
    if isinstance(e, lm.NotFoundError):
        return Classified("not_found", status, None, msg)
    # text UTF-8 cannot carry (lone surrogates from a non-UTF-8 terminal or pipe) fails before
    # any request is sent, reported as a 500: the turn's fault, and no model would take it
    if isinstance(e, UnicodeEncodeError) or "surrogates not allowed" in msg:
        return Classified("bad_request", None, None, msg)
    # litellm reports a refused connection and an unparsable body as InternalServerError(500)
    if isinstance(e, lm.APIResponseValidationError) or "JSONDecodeError" in msg or "Expecting value" in msg:
        return Classified("malformed", status, None, msg)
    if "Connection error" in msg or "Connection refused" in msg:
        return Classified("connection", None, None, msg)
    if isinstance(e, (lm.InternalServerError, lm.ServiceUnavailableError, lm.BadGatewayError)):
        return Classified("server", status, _retry_after(e), msg)
    if isinstance(e, lm.APIConnectionError) or isinstance(e, ConnectionError):
        return Classified("connection", status, None, msg)
    if isinstance(e, lm.BadRequestError) or isinstance(e, getattr(lm, "UnprocessableEntityError", ())):
        return Classified("bad_request", status, None, msg)
    if status is not None and status >= 500:
        return Classified("server", status, _retry_after(e), msg)
    if status == 429:
        return Classified("rate_limit", status, _retry_after(e), msg)
    return Classified("error", status, None, msg)


def _retry_after(e: BaseException) -> float | None:
    """Seconds from the Retry-After header, parsed by litellm's own helper."""
    h = _headers(e)
    if h is None:
        return None
    try:
        from litellm.utils import _get_retry_after_from_exception_header

        import httpx

        v = _get_retry_after_from_exception_header(httpx.Headers(dict(h)))
    except Exception:
        return None
    return float(v) if v is not None and v >= 0 else None


# key values tether was given (config, the variables api_key_env names, a call's own): hidden
# wherever they appear, in error texts and in litellm's log records. Shorter values would hide
# ordinary words. NO_KEY is what a custom api_base with no key of its own is sent (not a secret).
MIN_KEY = 4
NO_KEY = "no-key"
_keys: frozenset[str] = frozenset()
_keys_lock = threading.Lock()
# litellm's loggers (litellm/_logging.py); a filter on a logger does not cover its children
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "LiteLLM Proxy.stdout")


def remember_key(key: str | None) -> None:
    """Hide this value in every error text and litellm log record of this process from now on
    (a provider may repeat the key anywhere in its error text, glued to other characters)."""
    global _keys
    if isinstance(key, str) and len(key) >= MIN_KEY and key != NO_KEY and key not in _keys:
        with _keys_lock:
            _keys = _keys | {key}


def hide_keys(text: str, api_key: str | None = None) -> str:
    """Replace every known key value as a plain substring: the call's key, the keys tether was
    given, and provider keys in the environment (`*_API_KEY`, which litellm sends when a call
    has no key; only long ones, so a placeholder such as "not-needed" keeps its words)."""
    keys = set(_keys)
    if api_key and len(api_key) >= MIN_KEY and api_key != NO_KEY:
        keys.add(api_key)
    keys.update(v.strip() for k, v in os.environ.items() if k.endswith("_API_KEY") and len(v.strip()) >= 16)
    for key in sorted(keys, key=len, reverse=True):  # a key holding another is replaced whole
        if key in text:
            text = text.replace(key, key[:3] + "…" if len(key) >= 12 else "***")
    return text


def safe_error(e: BaseException, api_key: str | None = None) -> str:
    """The one way a model call's exception becomes text (an attempt, an event, a log line):
    providers repeat the request's key in their error texts, so it is hidden first
    (`api_key`: the key the call used; the keys tether was given are hidden too)."""
    return _scrub(str(e), api_key)


def _scrub(text: str, api_key: str | None = None) -> str:
    """Error texts sometimes echo the request; cut it short and hide anything key-like: the
    call's key and the keys tether knows by value, other keys by shape."""
    text = hide_keys(text, api_key)
    # provider key shapes: OpenAI/Anthropic sk-..., Groq gsk_..., Google AIza..., xAI xai-..., bearer tokens
    text = re.sub(r"\b((?:sk|gsk|xai|pk)[-_][A-Za-z0-9]{2})[A-Za-z0-9_\-]{8,}", r"\1…", text)
    text = re.sub(r"\b(AIza)[A-Za-z0-9_\-]{20,}", r"\1…", text)
    text = re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}", r"\1***", text)
    # "api_key=...", "API key provided: ...", "?key=..." in URLs, "x-api-key: ..."
    text = re.sub(r"(?i)(api[ _-]?key(?:\s+provided)?['\"=:\s]+)[^\s'\",]{6,}", r"\1***", text)
    text = re.sub(r"(?i)([?&](?:key|api_key|token)=)[^&\s'\"]+", r"\1***", text)
    return text[:500]


class KeyFilter(logging.Filter):
    """Hides known key values in litellm's log records: an app's DEBUG logging otherwise gets
    litellm's "Received openai error ... <the provider's text>", key and all. On the logger,
    not a handler, so it covers every handler the record reaches (an app's root handler too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report
            return True
        safe = hide_keys(msg)
        if safe != msg:
            record.msg, record.args = safe, None
        if record.exc_info and not record.exc_text:
            record.exc_text = hide_keys(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = hide_keys(record.stack_info)
        return True


_FILTER = KeyFilter()


def install_log_filter() -> None:
    """Put the key filter on litellm's loggers (once: addFilter ignores a filter already there)."""
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)


def describe(model: str, kind: str, status: int | None, error: str | None, hint: str | None = None) -> str:
    """One failed attempt for an error message: the model, the kind, and what the provider said
    when the kind alone does not tell the user what to fix."""
    if kind == "mid_stream":  # litellm reports a dropped stream as a 500 the server never sent
        return f"{model}: cut off mid-answer"
    out = f"{model}: {kind}" + (f" ({status})" if status else "")
    if hint:
        return f"{out}: {hint}"
    if kind in _EXPLAINED and error:
        return f"{out}: {short_cause(error)}"
    return out


def short_cause(error: str, limit: int = 160) -> str:
    """litellm's message without its class and provider prefixes ("litellm.BadRequestError:
    OpenAIException - ..."), first line, cut short."""
    import re

    text = error.strip().splitlines()[0] if error.strip() else error
    text = re.sub(r"^(?:litellm\.\w+:\s*)+", "", text)
    text = re.sub(r"^\w*Exception\s*-\s*", "", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"

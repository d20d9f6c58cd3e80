"""Map whatever litellm raised to a small set of kinds the fallback policy acts on."""
from __future__ import annotations

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
    msg = _scrub(str(e), api_key)
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


def _scrub(text: str, api_key: str | None = None) -> str:
    """Error texts sometimes echo the request; cut it short and hide anything key-like: the
    call's key and the provider keys in the environment by value, other keys by shape."""
    import os
    import re

    keys = [api_key] if api_key and len(api_key) >= 8 else []
    keys += [v for k, v in os.environ.items() if k.endswith("_API_KEY") and len(v) >= 16]  # not "not-needed"
    for key in keys:
        if key in text:  # whole tokens only: a short placeholder must not eat "1234567890 tokens"
            text = re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", key[:3] + "…", text)

    # provider key shapes: OpenAI/Anthropic sk-..., Groq gsk_..., Google AIza..., xAI xai-..., bearer tokens
    text = re.sub(r"\b((?:sk|gsk|xai|pk)[-_][A-Za-z0-9]{2})[A-Za-z0-9_\-]{8,}", r"\1…", text)
    text = re.sub(r"\b(AIza)[A-Za-z0-9_\-]{20,}", r"\1…", text)
    text = re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}", r"\1***", text)
    # "api_key=...", "API key provided: ...", "?key=..." in URLs, "x-api-key: ..."
    text = re.sub(r"(?i)(api[ _-]?key(?:\s+provided)?['\"=:\s]+)[^\s'\",]{6,}", r"\1***", text)
    text = re.sub(r"(?i)([?&](?:key|api_key|token)=)[^&\s'\"]+", r"\1***", text)
    return text[:500]


def describe(model: str, kind: str, status: int | None, error: str | None, hint: str | None = None) -> str:
    """One failed attempt for an error message: the model, the kind, and what the provider said
    when the kind alone does not tell the user what to fix."""
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

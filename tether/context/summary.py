"""Optional rolling summary of older turns (off by default).

build_window stays pure: it only takes a summary text (`summary_text=`). This
module keeps a summary of the session's oldest messages as a session event
(appended: nothing else in the session is rewritten, so an app's own changes made
meanwhile stay), covering a prefix of the history, and extends it (folding the old
summary in) when enough newer messages have been left out of windows. The caller
supplies the completion function: model calls belong to the router.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Awaitable, Callable

from tether.sessions.models import Message, Session, SessionEvent

from .window import Window

EVENT = "summary"
META_KEY = "context_summary"  # where earlier versions kept it, in the session's metadata
CHUNK = 40                 # re-summarise once this many omitted messages are not yet covered
MAX_SOURCE_CHARS = 24_000  # what one summary call reads
PROMPT = (
    "Summarise the earlier part of this conversation for your own later use: facts stated, decisions, "
    "names, dates, open questions. Be brief (at most {words} words). Fold in the earlier summary:\n{previous}"
)


# (id of the last covered Message object, count) -> (that object, digest): a session is
# loaded again (new objects) after any edit, so a hit is the same unedited history
_DIGESTS: dict[tuple[int, int], tuple[Message, str]] = {}
_DIGEST_LOCK = threading.Lock()


def digest(messages: list[Message]) -> str:
    """A fingerprint of the covered messages' ids and texts: an edit (a redaction) makes the
    summary of them stale, as a removal does."""
    if not messages:
        return ""
    key = (id(messages[-1]), len(messages))
    with _DIGEST_LOCK:
        hit = _DIGESTS.get(key)
    if hit is not None and hit[0] is messages[-1]:
        return hit[1]
    h = hashlib.blake2b(digest_size=12)
    for m in messages:
        h.update(m.id.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(m.content.encode("utf-8", "surrogatepass"))
        h.update(b"\1")
    value = h.hexdigest()
    with _DIGEST_LOCK:
        if len(_DIGESTS) > 512:
            _DIGESTS.clear()
        _DIGESTS[key] = (messages[-1], value)
    return value


def _covered(session: Session) -> tuple[int, str | None]:
    """How many leading messages the stored summary covers (0 if none or no longer valid), and its text."""
    entry = next((e.data for e in reversed(session.events) if e.type == EVENT), None)
    if entry is None:
        entry = session.metadata.get(META_KEY)
    if not isinstance(entry, dict):
        return 0, None
    count, upto, text = entry.get("count"), entry.get("upto"), entry.get("text")
    msgs = session.messages
    if not isinstance(count, int) or not 0 < count <= len(msgs) or msgs[count - 1].id != upto:
        return 0, None  # history was edited or truncated: the summary no longer matches
    fingerprint = entry.get("digest")  # absent in summaries made before it was kept
    if isinstance(fingerprint, str) and fingerprint != digest(msgs[:count]):
        return 0, None  # a covered message was edited since: its old text must not be sent
    return count, text if isinstance(text, str) else None


def cached_summary(session: Session) -> str | None:
    """The stored summary, if it still matches the session's history."""
    return _covered(session)[1]


def pending(session: Session, window: Window) -> list[int]:
    """Indices of messages the window leaves out that the summary does not cover yet."""
    count, _ = _covered(session)
    dropped = set(window.dropped_ids)
    return [i for i, m in enumerate(session.messages) if i >= count and m.id in dropped]


def summary_prompt(session: Session, upto: int, words: int = 150, max_tokens: int | None = None,
                   model: str | None = None) -> tuple[list[dict[str, str]] | None, int]:
    """Messages asking the model to extend the summary towards messages[:upto], and the index
    it really reaches: oldest first, as many as fit MAX_SOURCE_CHARS and `max_tokens` (the
    model's window less the reply and the instructions; at least one message, cut to fit), so
    the summary never claims turns it was not shown; the rest wait for the next update.
    Questions no model answered and answers cut short are passed over, as windows do.
    (None, covered) when the instructions and earlier summary leave no room for any of it."""
    from .tokens import count_tokens

    count, previous = _covered(session)
    system = PROMPT.format(words=words, previous=previous or "(none)")
    room = None if max_tokens is None else max_tokens - count_tokens(system, model) - 16
    if room is not None and room <= 0:
        return None, count
    lines: list[str] = []
    size = tokens = 0
    end = count
    for m in session.messages[count:upto]:
        end += 1
        if m.status != "ok":
            continue
        line = f"{m.name or m.role}: {m.content}"
        cost = count_tokens(line, model) + 1 if room is not None else 0
        if lines and (size + len(line) > MAX_SOURCE_CHARS or (room is not None and tokens + cost > room)):
            end -= 1
            break
        if not lines and room is not None and cost > room:  # one message bigger than the window
            line = line[: max(0, room) * len(line) // cost]
        lines.append(line[:MAX_SOURCE_CHARS])
        size += len(line)
        tokens += cost
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n".join(lines)},
    ], end


async def update_summary(
    session: Session, window: Window, complete: Callable[[list[dict[str, str]]], Awaitable[str]],
    *, words: int = 150, chunk: int = CHUNK,
) -> str | None:
    """Extend the stored summary when `chunk` or more omitted messages are uncovered; returns the summary."""
    todo = pending(session, window)
    if len(todo) < chunk:
        return cached_summary(session)
    request, upto = summary_prompt(session, todo[-1] + 1, words)
    assert request is not None  # no token limit was given
    text = (await complete(request)).strip()
    session.events.append(summary_event(session, upto, text))
    return text


def summary_event(session: Session, upto: int, text: str) -> SessionEvent:
    """The record of a summary of session.messages[:upto] (store it with the store's add_event)."""
    covered = session.messages[:upto]
    return SessionEvent(type=EVENT, data={"count": upto, "upto": covered[-1].id, "text": text,
                                          "digest": digest(covered)})

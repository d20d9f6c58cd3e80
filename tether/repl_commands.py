"""Slash commands of the chat. Each handler gets the Repl and the text after the command."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli_util import resolve_session_id
from .errors import SessionClosed
from .render import fmt_circuit, fmt_cost, fmt_per_million, plural, sessions_table, shorten, table

if TYPE_CHECKING:
    from .repl import Exchange, Repl


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Callable[["Repl", str], None]

    @property
    def takes_arg(self) -> bool:
        return " " in self.usage


def _help(r: Repl, arg: str) -> None:
    lines = [f"  {c.usage:<24} {c.help}" for c in COMMANDS.values()]
    keys = ["  Enter sends · Alt-Enter or Esc Enter inserts a newline · pasted newlines are kept",
            "  Ctrl-C stops an answer or clears the line · Ctrl-D or /exit leaves · //word sends '/word' as a message"]
    r.console.print("\n".join(["commands:", *lines, "keys:", *keys]), markup=False, highlight=False)


def _new(r: Repl, arg: str) -> None:
    r.new_session()
    if arg:
        r.title = arg
    r.info("new session: it starts with your next message")


def _sessions(r: Repl, arg: str) -> None:
    if arg and not (arg.isdigit() and int(arg) > 0):
        raise ValueError(f"/sessions takes how many to show (a positive number), not {arg!r}")
    rows = r.client.list_sessions(limit=int(arg) if arg else 20)
    if not rows:
        r.info("no sessions yet")
        return
    width = r.console.width if r.console.is_terminal else None  # the chat's console, which may be stderr
    r.console.print(sessions_table(rows, width), markup=False, highlight=False)
    r.info("/switch ID (or a unique prefix) to continue one")


def _switch(r: Repl, arg: str) -> None:
    if not arg:
        r.error("usage: /switch ID")
        return
    r.load(resolve_session_id(r.client, arg))


def _model(r: Repl, arg: str) -> None:
    if not arg:
        current = r.pinned or r.model or f"{r.default_model} (the default; pinned at the first message)"
        r.info(f"model: {current}")
        return
    if r.session_id is None:
        r.model = r.client.turns.pins.check_model(arg)
        r.info(f"model for this new session: {r.model}")
        return
    old = r.pinned
    r.pinned = r.client.pin_model(r.session_id, arg)
    r.info(f"session pinned to {r.pinned}" + (f" (was {old})" if old and old != r.pinned else ""))


def _models(r: Repl, arg: str) -> None:
    rows = []
    for m in r.client.models():
        rows.append([m["name"] + (" *" if m["default"] else ""), m["model"], f"{m['context_window']:,}",
                     fmt_per_million(m["input_cost_per_token"]), fmt_per_million(m["output_cost_per_token"]),
                     fmt_circuit(m["circuit"])])
    r.console.print(table(["NAME", "LITELLM MODEL", "WINDOW", "INPUT", "OUTPUT", "CIRCUIT"], rows, {2, 3, 4}),
                    markup=False, highlight=False)
    r.info("* default model; /model NAME pins this session")


def _title(r: Repl, arg: str) -> None:
    if not arg:
        r.info(f"title: {r.title or '(untitled)'}")
        return
    r.title = arg
    if r.session_id:
        r.client.rename_session(r.session_id, arg)
    r.info(f"title: {arg}")


def _system(r: Repl, arg: str) -> None:
    if not arg:
        r.info(f"system prompt: {r.system or '(none)'}")
        return
    value = None if arg in ("-", "none", "off") else arg
    r.system = value
    if r.session_id:
        r.client.update_session(r.session_id, system=value)
    r.info(f"system prompt: {value or '(none)'}")


def _context(r: Repl, arg: str) -> None:
    """The window the next turn would send: kept messages with their tokens, and what was dropped."""
    if r.session_id is None:
        r.info("no messages yet: the next turn sends only your message" + (" and the system prompt" if r.system else ""))
        return
    from .context import count_tokens

    w = r.client.preview_window(r.session_id, arg or "", None)
    parts = " · ".join(f"{k} {v}" for k, v in sorted(w.parts.items()) if v)
    name = r.pinned or w.model
    shown = name + (f" ({w.model})" if w.model and w.model != name else "")
    r.console.print(f"window for {shown}: {len(w.messages)} messages kept, {w.tokens} of a "
                    f"{w.budget:,}-token history budget ({w.encoding})" + (f"; {parts}" if parts else ""),
                    markup=False, highlight=False)
    rows = [[str(i), m.role, str(count_tokens(m, encoding=w.encoding)), shorten(m.content, 60)]
            for i, m in enumerate(w.messages, 1)]
    if rows:
        r.console.print(table(["#", "ROLE", "TOKENS", "TEXT"], rows, {0, 2}), markup=False, highlight=False)
    if w.dropped:
        ids = ", ".join(w.dropped_ids[:8]) + (" …" if len(w.dropped_ids) > 8 else "")
        r.info(f"dropped: {w.dropped} older or less relevant messages ({ids})")
    else:
        r.info("dropped: nothing, the whole history fits")
    if w.truncated_ids:
        r.info(f"shortened to fit: {', '.join(w.truncated_ids)}")
    if w.summary_text:  # what the model is told of the turns left out
        r.info(f"summary sent ({w.parts.get('summary', 0)} tokens): {shorten(w.summary_text, 200)}")
    waiting = sum(m.status == "unanswered" for m in r.client.get_history(r.session_id))
    if waiting:  # kept in the session but never sent: they would read as asked again
        r.info(f"not sent: {plural(waiting, 'unanswered question')} (/retry answers the last)")


def _tokens(r: Repl, arg: str) -> None:
    if r.session_id is None:
        r.info("no messages yet")
        return
    t = r.client.load_session(r.session_id).totals
    r.console.print(f"{plural(t.messages, 'message')}, {plural(t.turns, 'answer')} · prompt {t.prompt_tokens} + completion "
                    f"{t.completion_tokens} = {t.total_tokens} tokens · cost {fmt_cost(t.cost_usd)}",
                    markup=False, highlight=False)


def _own_last(r: Repl, verb: str) -> tuple[Exchange, list[Any], int] | None:
    """This chat's last exchange, the session's messages and where its question is, when the
    exchange is still the session's last; else None, having said why. Another terminal on the
    session may have asked since: /retry and /undo must not act on what this one never saw."""
    if r.session_id is None:
        r.info(f"nothing to {verb}")
        return None
    sid = r.session_id
    msgs = r.client.get_history(sid)
    mine = [e for e in r.exchanges if e.session_id == sid]
    if not mine:
        r.info(f"nothing to {verb}")
        return None
    ex = mine[-1]
    at = next((i for i, m in enumerate(msgs) if m.id == ex.question_id), None)
    if at is None:  # removed elsewhere (another terminal's /undo or /clear history)
        r.exchanges.remove(ex)
        r.error(f"your last question \u201c{shorten(ex.question, 50)}\u201d is no longer in the session "
                f"(removed elsewhere): nothing to {verb}")
        return None
    newer = [m for m in msgs[at + 1:] if m.id not in ex.answers]
    if newer:
        asked = [m for m in newer if m.role == "user"]
        now = f", the last question now being \u201c{shorten(asked[-1].content, 50)}\u201d" if asked else ""
        why = ("/retry can only ask the session's last question again" if verb == "retry" else
               "/undo takes back only the session's last exchange, not one that later messages followed")
        r.error(f"not done: the session has moved on since your question \u201c{shorten(ex.question, 50)}\u201d "
                f"({plural(len(newer), 'newer message')} from elsewhere{now}); {why}. "
                f"/switch {sid} shows the session again, after which /{verb} acts on its last question")
        return None
    return ex, msgs, at


def _retry(r: Repl, arg: str) -> None:
    """Ask this chat's last question again, answered in place. The old answer is removed only
    once a new one is stored: when none arrives (every model failed, Ctrl-C), it stands."""
    if r.closed and r.session_id:
        raise SessionClosed(r.session_id)
    found = _own_last(r, "retry")
    if found is None:
        return
    ex, msgs, at = found
    sid = ex.session_id

    def start() -> Any:
        # the client retries the session's last question: refuse if another terminal asked in between
        last = [m for m in r.client.get_history(sid) if m.role == "user"]
        if not last or last[-1].id != ex.question_id:
            raise ValueError(f"not done: another question was asked in session {sid} just now; /retry again to see")
        return r.client.retry_stream(sid, replace=True)

    r.send(ex.question, start=start)
    after = r.client.get_history(sid)
    kept = [m.id for m in msgs[at + 1:] if m.role == "assistant" and m.status == "ok"]
    if kept and kept[-1] in {m.id for m in after}:
        r.info("(the previous answer is kept)")


def _undo(r: Repl, arg: str) -> None:
    """Remove this chat's last question and its answer; the question comes back in the prompt to edit."""
    found = _own_last(r, "undo")
    if found is None:
        return
    ex, msgs, at = found
    for m in msgs[at:]:
        r.client.remove_message(ex.session_id, m.id)
    r.exchanges.remove(ex)
    r.refresh()
    r.next_default = ex.question
    after = len(msgs) - at - 1
    r.info("removed your last question" + (f" and {plural(after, 'message')} after it" if after else ""))


_EXPORT_FORMATS = {"md": "markdown", "markdown": "markdown", "json": "json"}


def _export(r: Repl, arg: str) -> None:
    """/export [md|json] [FILE]: the format is the first word, else the file's suffix."""
    if r.session_id is None:
        r.info("nothing to export yet")
        return
    words = arg.split(maxsplit=1)
    fmt = _EXPORT_FORMATS.get(words[0].lower()) if words else "markdown"
    if fmt is not None and words:
        words.pop(0)
    path = Path(words[0]).expanduser() if words else None
    if fmt is None:
        from .cli_util import export_format

        fmt = export_format(path) if path else None
        if fmt is None:
            raise ValueError(f"cannot tell the format of {words[0]!r}: name a .md or .json file, "
                             "or give the format first (/export json FILE)")
    text = r.client.export_session(r.session_id, fmt)
    if path is None:
        r.console.print(text, markup=False, highlight=False)
        return
    from .cli_util import write_export

    try:
        write_export(path, text, replace=False)
    except FileExistsError:
        raise ValueError(f"{path} exists: remove it or choose another name") from None
    r.info(f"exported to {path} ({fmt})")


def _clear(r: Repl, arg: str) -> None:
    """/clear: the screen; /clear history (or a prefix of it, as commands take): every message
    of the session, after a y/N in a terminal as `tether sessions delete` asks."""
    if not arg:
        r.console.clear()
        return
    if not "history".startswith(arg.lower()):
        raise ValueError(f"/clear takes nothing (clear the screen) or history (delete this session's messages), "
                         f"not {arg!r}")
    if r.session_id is None:
        r.info("no messages yet")
        return
    n = len(r.client.get_history(r.session_id))
    if not r.confirm(f"delete all {plural(n, 'message')} of session {r.session_id}?", piped=True):
        r.info("(kept)")
        return
    r.client.clear_history(r.session_id)
    r.exchanges = []
    r.refresh()
    r.info("session history cleared")


def _exit(r: Repl, arg: str) -> None:
    r.running = False


COMMANDS: dict[str, Command] = {
    "/help": Command("/help", "this list", _help),
    "/new": Command("/new [TITLE]", "start a new session", _new),
    "/sessions": Command("/sessions [N]", "recent sessions", _sessions),
    "/switch": Command("/switch ID", "continue another session (id or unique prefix)", _switch),
    "/model": Command("/model [NAME]", "show or pin this session's model", _model),
    "/models": Command("/models", "configured models, windows, prices, circuit state", _models),
    "/title": Command("/title TEXT", "rename this session", _title),
    "/system": Command("/system [TEXT|off]", "show or set the system prompt", _system),
    "/context": Command("/context [TEXT]", "the window the next turn would send", _context),
    "/tokens": Command("/tokens", "this session's tokens and cost", _tokens),
    "/retry": Command("/retry", "ask your last question again", _retry),
    "/undo": Command("/undo", "remove your last question and answer", _undo),
    "/export": Command("/export [md|json] [FILE]", "print or save this session", _export),
    "/clear": Command("/clear [history]", "clear the screen (or the session's history)", _clear),
    "/exit": Command("/exit", "leave (or Ctrl-D)", _exit),
}
ALIASES = {"/quit": "/exit", "/q": "/exit", "/?": "/help"}


# a command is one line whose first word is a slash and letters (or /?): `/etc/hosts is odd`,
# `/* main.c */` or `// note` are messages, sent as typed
_COMMAND = re.compile(r"/(?:[^\W\d_]+|\?)(?=\s|$)")


def is_command(text: str) -> bool:
    """Whether a line typed at the prompt is a slash command rather than a message."""
    line = text.strip()
    return "\n" not in line and text.startswith("/") and _COMMAND.match(line) is not None


def as_message(text: str) -> str:
    """The message a non-command line sends: `//word …` is the escape for `/word …`; any other
    text, `// a comment` included, goes as typed."""
    return text[1:] if text.startswith("//") and is_command(text[1:]) else text


def dispatch(r: Repl, text: str) -> None:
    name, _, arg = text.strip().partition(" ")
    typed, name = name, name.lower()
    name = ALIASES.get(name, name)
    cmd = COMMANDS.get(name)
    if cmd is None:
        hits = [n for n in COMMANDS if n.startswith(name)]
        if len(hits) == 1:
            cmd = COMMANDS[hits[0]]
        else:
            # what was typed comes back in the prompt: it may have been a message after all
            r.next_default = text
            r.error(f"unknown command {typed}" + (f" (did you mean {', '.join(hits)}?)" if hits else " (try /help)")
                    + "; to send it as a message, start it with //")
            return
    if arg.strip() and not cmd.takes_arg:  # `/tokens x` did /tokens, silently ignoring x
        raise ValueError(f"{cmd.usage} takes no arguments, not {arg.strip()!r}")
    cmd.run(r, arg.strip())

"""`tether sessions ...`: list, show, rename, archive/close/reopen, delete, export, import, search.

Imported by `tether --help`, so only click at the top; the client comes in per command.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .cli_util import client, echo, echo_json

STATUSES = ("active", "archived", "closed")  # sessions.models.STATUSES, without importing pydantic for --help


def _resolve(c: Any, session_id: str) -> str:
    from .cli_util import resolve_session_id

    return resolve_session_id(c, session_id)


def interactive() -> bool:
    """Ask before destroying only when a person can answer (not in scripts or pipes)."""
    return sys.stdin is not None and sys.stdin.isatty()  # None: started with stdin closed (`<&-`)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def sessions() -> None:
    """Manage saved sessions (ids may be shortened to a unique prefix)."""


@sessions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="At most N sessions.")
@click.option("--user", "user_id", metavar="U", help="Only sessions of this user id.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only sessions with this status.")
def list_(as_json: bool, limit: int | None, user_id: str | None, status: str | None) -> None:
    """Sessions, most recently used first (archived and closed ones marked)."""
    from .render import sessions_table

    none = f"no {status} sessions" if status else "no sessions yet: `tether chat` starts one"
    if not as_json:
        fast = fast_summaries(limit, user_id, status)
        if fast is not None:
            echo(sessions_table(fast) if fast else none)
            return
    c = client()
    rows = c.list_sessions(limit=limit, user_id=user_id, status=status)
    if as_json:
        echo_json(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        echo(none)
        return
    echo(sessions_table(rows))  # skipped corrupt files were logged (to stderr) by the store


def fast_summaries(limit: int | None, user_id: str | None, status: str | None = None,
                   ) -> list[dict[str, Any]] | None:
    """The listing straight from a current index (no pydantic, no session models), else None."""
    from .home import resolve_home
    from .sessions.indexfile import fresh_rows, select_rows

    rows = fresh_rows(resolve_home() / "sessions")
    return None if rows is None else select_rows(rows, limit, user_id, status)


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON (the export format).")
def show(session_id: str, as_json: bool) -> None:
    """A session's details and transcript."""
    c = client()
    sid = _resolve(c, session_id)
    if as_json:
        echo_json(c.export_session(sid, "json"))
        return
    from .render import fmt_cost, local_time, make_console, print_transcript

    s = c.load_session(sid)
    t = s.totals
    created, used = local_time(s.created_at), local_time(s.updated_at)
    lines = [f"id:       {s.id}", f"title:    {s.title or '(untitled)'}", f"status:   {s.status}",
             f"model:    {s.pinned_model or '-'}" + (f" · pinned by {s.pin_reason}" if s.pin_reason else ""),
             f"created:  {created.date().isoformat()} {created:%H:%M}",  # isoformat: year 1 as 0001, not 1
             f"used:     {used.date().isoformat()} {used:%H:%M}",
             f"messages: {t.messages} · tokens {t.total_tokens} · cost {fmt_cost(t.cost_usd)}"]
    if s.system:
        lines.append(f"system:   {s.system}")
    echo("\n".join(lines) + "\n")
    print_transcript(make_console(), s.messages)


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.argument("title", nargs=-1, required=True)
def rename(session_id: str, title: tuple[str, ...]) -> None:
    """Give a session a new title."""
    text = " ".join(title).strip()
    if not text:  # `rename ID ""` stored an empty title, listed as "(untitled)" with no way to tell why
        raise click.BadParameter("a title cannot be blank", param_hint="TITLE")
    c = client()
    sid = _resolve(c, session_id)
    c.rename_session(sid, text)
    echo(f"renamed {sid}: {text}")


def _set_status(session_id: str, status: str, done: str) -> None:
    c = client()
    sid = _resolve(c, session_id)
    c.update_session(sid, status=status)
    echo(f"{done} {sid}")


@sessions.command()
@click.argument("session_id", metavar="ID")
def archive(session_id: str) -> None:
    """Put a session away: left out of `chat -c`, still open to `chat --session ID`."""
    _set_status(session_id, "archived", "archived")


@sessions.command()
@click.argument("session_id", metavar="ID")
def close(session_id: str) -> None:
    """Close a session: it can be read and exported, but takes no new turns."""
    _set_status(session_id, "closed", "closed")


@sessions.command()
@click.argument("session_id", metavar="ID")
def reopen(session_id: str) -> None:
    """Make an archived or closed session active again."""
    _set_status(session_id, "active", "reopened")


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(session_id: str, yes: bool) -> None:
    """Delete a session (asks first when run in a terminal)."""
    c = client()
    sid = _resolve(c, session_id)
    if not yes and interactive():
        s = c.list_sessions()
        title = next((x.title for x in s if x.id == sid), None)
        click.confirm(f"delete session {sid}" + (f" ({title!r})" if title else "") + "?", abort=True)
    c.delete_session(sid)
    echo(f"deleted {sid}")


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("-f", "--format", "fmt", type=click.Choice(["json", "md", "markdown"]), default=None,
              help="Default: md for an -o FILE ending .md/.markdown/.txt, else json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE.")
def export(session_id: str, fmt: str | None, output: Path | None) -> None:
    """Export a session as JSON (re-importable) or Markdown."""
    if fmt is None:
        from .cli_util import export_format

        fmt = "md" if output is not None and export_format(output) == "markdown" else "json"
    c = client()
    text = c.export_session(_resolve(c, session_id), "json" if fmt == "json" else "markdown")
    if not text.endswith("\n"):
        text += "\n"
    if output is None:
        (echo_json if fmt == "json" else echo)(text, nl=False)
    else:
        from .cli_util import write_export

        write_export(output, text)
        echo(f"exported to {output}", err=True)


@sessions.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace a session that has the same id.")
def import_(files: tuple[Path, ...], overwrite: bool) -> None:
    """Import tether exports, tether .jsonl files or Oblix session files."""
    from .errors import TetherError

    c = client()
    failed = 0
    for f in files:
        try:
            sid = c.import_session(Path(f), overwrite=overwrite)
        except (TetherError, OSError, ValueError) as e:
            failed += 1
            hint = " (use --overwrite to replace it)" if type(e).__name__ == "SessionExists" else ""
            msg = str(e) if str(f) in str(e) else f"{f}: {e}"  # an import error names its file already
            echo(f"tether: error: {msg}{hint}", err=True)
            continue
        echo(f"imported {sid} from {f}")
    if failed:
        sys.exit(1)


@sessions.command()
@click.argument("text", nargs=-1, required=True)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="At most N sessions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search(text: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """Sessions whose title or messages contain TEXT (case-insensitive)."""
    from .render import fmt_when

    query = " ".join(text)
    hits = client().search_sessions(query, limit=limit)
    if as_json:
        echo_json(json.dumps([{**s.to_dict(), "matches": [m.to_dict() for m in ms]} for s, ms in hits],
                              indent=2, default=str))
        return
    if not hits:
        echo(f"no session mentions {query!r}")
        sys.exit(1)
    for s, msgs in hits:
        echo(f"{s.id}  {s.title or '(untitled)'}  · {fmt_when(s.updated_at)}")
        for m in msgs[:3]:
            echo(f"    {m.role}: {_snippet(m.content, query)}")
        if len(msgs) > 3:
            echo(f"    … {len(msgs) - 3} more matching messages")



def _snippet(content: str, query: str, width: int = 90) -> str:
    """The part of the message around the first match, on one line."""
    flat = " ".join(content.split())
    at = flat.lower().find(query.lower())
    if at < 0 or len(flat) <= width:
        return flat[:width] + ("…" if len(flat) > width else "")
    start = max(0, at - width // 3)
    piece = flat[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")

"""Terminal output for the CLI and the chat: tables, transcripts, streamed answers.

Plain-text helpers here import nothing heavy, so `tether sessions list` stays fast;
rich (and its Markdown, which pulls in pygments) is imported only by the functions
that draw Markdown or a live answer.
"""
from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

from ._text import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live


# -- numbers and times -------------------------------------------------------------
def fmt_cost(cost: float | None) -> str:
    if cost is None:
        return "-"
    if cost == 0:
        return "$0"
    return f"${cost:.4f}" if cost >= 0.0001 else f"${cost:.2e}"


def fmt_tokens(n: int | None) -> str:
    if not n:
        return "0"
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def plural(n: int, word: str) -> str:
    """'1 answer', '2 answers'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def fmt_circuit(circuit: dict[str, Any]) -> str:
    """A model's circuit-breaker state as `tether models` and `/models` show it."""
    return circuit["state"] + (f" ({plural(circuit['failures'], 'failure')})" if circuit["failures"] else "")


def fmt_per_million(cost_per_token: float | None) -> str:
    """Prices read better per million tokens; '-' when litellm does not know them."""
    if cost_per_token is None:
        return "-"
    return f"${cost_per_token * 1e6:.2f}/M"


def fmt_when(value: datetime | str | None, now: datetime | None = None) -> str:
    """'5m ago' for recent times, else the date: what "last used" needs at a glance."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    secs = ((now or datetime.now(timezone.utc)) - value).total_seconds()
    if secs < 60:
        return "just now"
    if secs < 3600:
        return f"{int(secs // 60)}m ago"
    if secs < 86400:
        return f"{int(secs // 3600)}h ago"
    if secs < 7 * 86400:
        return f"{int(secs // 86400)}d ago"
    return local_time(value).date().isoformat()


def local_time(value: datetime) -> datetime:
    """`value` in local time, or as it is where that falls off the calendar (year 1 west of
    UTC, 9999 east of it): a session dated so must not crash the listing that shows it."""
    try:
        return value.astimezone()
    except (OverflowError, ValueError, OSError):
        return value


def cells(text: str) -> int:
    """Columns a text takes in a terminal: CJK and most emoji take two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def shorten(text: str | None, width: int) -> str:
    text = printable(text or "", one_line=True)
    if cells(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        used += cells(c)
        if used > width - 1:
            break
        out.append(c)
    return "".join(out) + "…"


def fallback_note(result: Any) -> str | None:
    """Why another model answered, from the turn's attempts: a model skipped while its circuit
    is open was not tried, so it did not "fail" this turn."""
    if not result.fallback_from:
        return None
    name = result.fallback_from
    tried = [a for a in result.attempts if a.model == name]
    if tried and all(a.kind == "circuit_open" for a in tried):
        why = "was skipped (it failed repeatedly; tried again after a pause)"
    elif tried:
        last = [a for a in tried if a.kind != "circuit_open"][-1]
        if last.kind == "mid_stream":
            why = "was cut off mid-answer"
        else:
            why = f"failed ({last.kind.replace('_', ' ')}{f' {last.status}' if last.status else ''})"
    else:
        why = "failed"
    return f"{name} {why}; {result.model} answered instead"


def restart_announced(result: Any) -> bool:
    """Whether a streamed turn already said why its first model gave way: that model was cut
    off mid-answer, and the restart was announced as it happened ("main failed mid-answer…;
    backup answers from the start"), so fallback_note() would only say it again."""
    if not result.fallback_from or not getattr(result, "restarts", 0):
        return False
    tried = [a for a in result.attempts if a.model == result.fallback_from and a.kind != "circuit_open"]
    return bool(tried) and tried[-1].kind == "mid_stream"


# -- plain tables (no rich: listing must stay cheap) ---------------------------------
def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell, in terminal columns (a CJK title is twice as wide
    as its length); `right` holds the indexes of numeric columns."""
    right = right or set()
    widths = [cells(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], cells(cell))

    def pad(text: str, width: int, numeric: bool) -> str:
        gap = " " * max(0, width - cells(text))
        return gap + text if numeric else text + gap

    def line(row: list[str]) -> str:
        return "  ".join(pad(c, widths[i], i in right) for i, c in enumerate(row)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


SESSION_HEADERS = ["ID", "TITLE", "MODEL", "MSGS", "TOKENS", "COST", "LAST USED"]


def session_row(s: Any, title_width: int = 40) -> list[str]:
    """One listing row from a SessionSummary (or its dict form)."""
    get = (lambda k: s.get(k)) if isinstance(s, dict) else (lambda k: getattr(s, k, None))
    totals = get("totals") or {}
    tget = (lambda k: totals.get(k)) if isinstance(totals, dict) else (lambda k: getattr(totals, k, None))
    return [
        str(get("id")), shorten(_marked(get("title") or "(untitled)", get("status")), title_width),
        printable(get("pinned_model") or "-", one_line=True),
        str(get("message_count") or 0), fmt_tokens(tget("total_tokens")), fmt_cost(tget("cost_usd") or 0.0),
        fmt_when(get("updated_at")),
    ]


def _marked(title: str, status: Any) -> str:
    """A listing's title, with the status of a session put away in front of it."""
    return f"[{status}] {title}" if status in ("archived", "closed") else title


def terminal_width() -> int | None:
    """Columns of the terminal stdout is, or None for a pipe or a file (whose lines are kept whole)."""
    import shutil

    try:
        tty = sys.stdout is not None and sys.stdout.isatty()
    except (ValueError, AttributeError):  # closed, or replaced by something without isatty
        tty = False
    return shutil.get_terminal_size().columns if tty else None


MIN_TITLE, MIN_MODEL = 12, 12  # narrower than this, a row wraps rather than say nothing


def sessions_table(summaries: list[Any], width: int | None = None) -> str:
    """The listing; `width`: the columns it must fit (default: stdout's terminal, if it is one).
    Rows wider than that wrapped into a mess, so the title shrinks first, then the model; a
    pipe gets every row at its full width."""
    rows = [session_row(s) for s in summaries]
    limit = width or terminal_width()
    if limit:
        # title, then model, to a fair size; then both to the least that still says something
        for col, least in ((1, 24), (2, 20), (1, MIN_TITLE), (2, MIN_MODEL)):
            widths = [max([cells(SESSION_HEADERS[i])] + [cells(r[i]) for r in rows]) for i in range(len(SESSION_HEADERS))]
            over = sum(widths) + 2 * (len(widths) - 1) - limit
            if over <= 0:
                break
            fit = max(least, widths[col] - over)
            for r in rows:
                r[col] = shorten(r[col], fit)
    return table(SESSION_HEADERS, rows, right={3, 4, 5})


# -- rich output ---------------------------------------------------------------------
def make_console(file: IO[str] | None = None, force_terminal: bool | None = None) -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """`| head -1` closed the pipe: the CLI ends quietly with status 0, as for its plain
            output (rich's default exits with 1)."""
            self.quiet = True
            raise BrokenPipeError

        def print(self, *objects: Any, **kwargs: Any) -> None:
            """Strings printed may hold a model's words or a title: show their control
            characters rather than let them drive the terminal."""
            super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)

    return _Console(file=file or sys.stdout, force_terminal=force_terminal, highlight=False, soft_wrap=True)


@functools.cache
def _markdown_class() -> type:
    """rich's Markdown with code blocks that copy cleanly (made on first use: rich is heavy)."""
    from rich.markdown import CodeBlock, Markdown
    from rich.syntax import Syntax

    class PlainCodeBlock(CodeBlock):
        """rich draws code in a box: a one-space margin and every line padded with background-
        coloured spaces to the full width, so copying `def f():` gave ` def f():` and trailing
        blanks. Here the code is its highlighted text alone: colours kept, no margin, no fill."""

        def __rich_console__(self, console: Console, options: Any) -> Any:
            code = str(self.text).rstrip()
            syntax = Syntax(code, self.lexer_name, theme=self.theme, padding=0, background_color="default")
            text = syntax.highlight(code)
            text.rstrip()
            yield text

    class CopyableMarkdown(Markdown):
        elements = {**Markdown.elements, "fence": PlainCodeBlock, "code_block": PlainCodeBlock}

    return CopyableMarkdown


def markdown(text: str) -> Any:
    """Markdown whose single line breaks stay breaks: a poem, an address or a list written
    without blank lines would otherwise be joined into one paragraph; code blocks are drawn
    without margin or padding, so they copy as written."""
    md = _markdown_class()(printable(text))
    for token in md.parsed:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"
    return md


def waiting_line(status: str, waited: float, dots: str = "…") -> str:
    """"waiting for main… 4s" while a turn has nothing to show; the status names models, which
    a session file may hold (an imported pin), so it is drawn, never obeyed."""
    hint = "  (Ctrl-C to stop)" if waited >= 3 else ""
    return f"{printable(status, one_line=True)}{dots} {waited:.0f}s{hint}"


def notice(console: Console, text: str, style: str = "yellow") -> None:
    """A one-line notice (fallback, pin change, interruption) that stands apart from answers."""
    console.print(text, style=style, markup=False, highlight=False)


def clip(text: str, limit: int | None) -> str:
    """A long text's head and tail with how much was left out between (a resumed chat's
    preview must not scroll a 1 MB paste past the user)."""
    if limit is None or len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… ({len(text) - 2 * half:,} characters not shown) …\n{text[-half:]}"


def print_transcript(console: Console, messages: list[Any], heading: str | None = None,
                     limit: int | None = None) -> None:
    """Messages as a chat reads: the user's lines plain, answers as Markdown; `limit`: the
    characters shown per message (None: all, as `sessions show` prints them)."""
    if heading:
        console.print(heading, style="dim", markup=False)
    for m in messages:
        content = clip(m.content, limit)
        if m.role == "user":
            console.print(f"> {content}", style="bold cyan", markup=False)
            if m.status != "ok":  # no model answered it: /retry (or asking again) does
                console.print(f"({m.status})", style="dim", markup=False)
        elif m.role == "assistant":
            label = f"[{m.model or 'assistant'}]" + (f" ({m.status})" if m.status != "ok" else "")
            console.print(label, style="dim", markup=False)
            if console.is_terminal:
                console.print(markdown(content))
            else:
                console.print(content, markup=False)
        else:
            console.print(f"({m.role}) {content}", style="dim", markup=False)
    if messages:
        console.print()


class _Answer:
    """An answer's Markdown wrapped to the terminal's width (a Live region would crop each
    line at the edge); `tail`: only its last screenful, since a live region taller than the
    terminal cannot be redrawn in place, and while streaming the newest text is what matters."""

    def __init__(self, text: str, status: Callable[[], str] | None = None, tail: bool = True) -> None:
        self.text = text
        self.status = status
        self.tail = tail
        self.since = time.monotonic()

    def __rich_console__(self, console: Console, options: Any) -> Any:
        from rich.segment import Segment
        from rich.text import Text

        if not self.text and self.status is not None:  # redrawn by Live while nothing has arrived
            yield Text(waiting_line(self.status(), time.monotonic() - self.since), style="dim")
            return

        options = options.update(no_wrap=False, overflow="fold")
        lines = console.render_lines(markdown(self.text), options, pad=False)
        if self.tail:
            lines = lines[-max(1, console.height - 2):]
        for line in lines:
            yield from line
            yield Segment.line()


class AnswerView:
    """Shows one streamed answer: live Markdown on a terminal, plain text pieces otherwise.

    A terminal gets a rich Live region redrawn as pieces arrive and left as rendered
    Markdown at the end; a pipe or a test console gets the raw pieces immediately,
    so nothing waits for the end of the stream to be visible.
    """

    def __init__(self, console: Console, status: Callable[[], str] | None = None,
                 notes: Console | None = None, hold: bool = False) -> None:
        self.console = console
        self.text = ""
        self.live: Live | None = None
        self._plain = not console.is_terminal
        self._status = status
        self.notes = notes or console  # where a restart is announced
        self.hold = hold  # plain output: write the answer once final (a restart drops what was held)

    def start(self) -> None:
        if self._plain:
            return
        from rich.live import Live

        self.live = Live(_Answer("", self._status), console=self.console, refresh_per_second=12, transient=False)
        self.live.start()

    def add(self, piece: str) -> None:
        piece = printable(piece)  # written raw to a pipe below, which may be `| tee` to a terminal
        self.text += piece
        if self._plain and not self.hold:
            self.console.file.write(piece)
            self.console.file.flush()
        elif self.live is not None:
            self.live.update(_Answer(self.text, self._status))

    def restart(self, from_model: str, to_model: str, reason: str) -> None:
        """A model failed mid-answer: say so, and start the next model's answer afresh."""
        if not (self._plain and self.hold):
            self.stop()
        notice(self.notes, f"! {from_model} failed mid-answer ({reason}); {to_model} answers from the start")
        self.text = ""
        self.start()

    def stop(self) -> None:
        """End the display where it is (an error or Ctrl-C): the next line starts clean."""
        if self._plain and self.hold and self.text:
            self.console.file.write(self.text)
            self.hold = False  # written: a second stop() only ends the line
        if self._plain and self.text and not self.text.endswith("\n"):
            self.console.file.write("\n")
            self.text += "\n"
        if self.live is not None:
            self.live.update(_Answer(self.text, tail=False))  # the whole answer, drawn once by stop()
            self.live.stop()
            self.live = None

    def finish(self) -> None:
        self.stop()
        if self._plain:
            self.console.file.flush()

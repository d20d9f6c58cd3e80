"""The `tether` command: chat, ask, sessions, models, config.

This module imports only click at the top: `tether --help`, `tether sessions list`
and `tether config` must never pay for litellm (seconds) and should not pay for
pydantic either. Each command imports what it needs inside its body.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from ._text import printable
from .cli_util import client, echo, echo_json
from .errors import TetherError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class TetherGroup(click.Group):
    """Turns any error into one line on stderr and a non-zero exit; `--debug` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            echo("tether: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            _quiet_stdout()
            ctx.exit(0)
        except Exception as e:  # noqa: BLE001 - the one place errors become a message
            if _debug(ctx):
                raise
            echo(f"tether: error: {describe(e)}", err=True)
            ctx.exit(1)


def describe(e: BaseException) -> str:
    """Our errors (and bad values, files) speak for themselves; anything else names its type and --debug."""
    if isinstance(e, (TetherError, ValueError, OSError)):
        return getattr(e, "cli_message", None) or str(e) or type(e).__name__  # SessionClosed: no API advice
    return f"{type(e).__name__}: {e} (run with --debug for the traceback)"


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("TETHER_DEBUG") == "1"


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit-time flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _StderrHandler(logging.Handler):
    """tether's log warnings as `tether: ...` lines on the current stderr (which tests swap)."""

    quiet: set[str] = set()  # messages already shown another way (the chat prints its own hint)
    # the chat's "say it between prompts": a line written from another thread (a rolling
    # summary's) while the line editor draws would land inside the prompt (staticmethod: any
    # callable, not bound to the handler)
    defer: Callable[[str], None] | None = None

    @classmethod
    def defer_to(cls, say: Callable[[str], None] | None) -> None:
        cls.defer = staticmethod(say) if say is not None else None  # type: ignore[assignment]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if text in self.quiet:
                return
            if self.defer is not None and threading.current_thread() is not threading.main_thread():
                self.defer(f"tether: {text}")
                return
            echo(f"tether: {text}", err=True)
        except Exception:  # noqa: BLE001 - logging must never break a command
            pass


def _setup_logging(debug: bool) -> None:
    log = logging.getLogger("tether")
    for h in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(h)
    log.addHandler(_StderrHandler())
    log.setLevel(logging.DEBUG if debug else logging.WARNING)
    log.propagate = False


@click.group(cls=TetherGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option("0.1.0", prog_name="tether")
def main(debug: bool) -> None:
    """tether: LLM chat with sessions that keep their model.

    \b
    tether chat                 interactive chat (new session)
    tether chat -c              continue the most recently used (active) session
    tether ask "question"       one answer from the shell (stdin works too)
    tether sessions list        your sessions; also show, rename, archive, close, reopen,
                                delete, export, import, search
    tether models / config      what is configured and where
    """
    _setup_logging(debug)
    for stream in (sys.stdout, sys.stderr):  # a message holding a lone surrogate prints escaped, not as an error
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass


# -- chat ----------------------------------------------------------------------------
@main.command()
@click.option("--session", "session_id", metavar="ID", help="Continue this session (id or unique prefix).")
@click.option("-c", "--continue", "cont", is_flag=True, help="Continue the most recently used active session.")
@click.option("-m", "--model", help="Model for this session (config name or litellm string).")
@click.option("-s", "--system", help="System prompt for this session.")
@click.option("-t", "--title", help="Title for this session.")
def chat(session_id: str | None, cont: bool, model: str | None, system: str | None, title: str | None) -> None:
    """Interactive chat. Enter sends, Alt-Enter adds a line, /help lists commands."""
    from .home import ensure_dir, resolve_home
    from .router.config import load_config
    from .turn.settings import check_config

    if session_id and cont:
        raise click.UsageError("use either --session or --continue, not both")
    home = ensure_dir(resolve_home())
    cfg = load_config(home, check=check_config)  # a bad config stops here with one line, before any prompt
    from .render import make_console
    from .repl import Loader, Repl

    resume = bool(session_id or cont)
    quick = None
    if resume and not (model or system is not None or title):
        from .cli_util import quick_resume

        quick = quick_resume(home, session_id, cont)  # (id, replay) without pydantic, or None
    if quick:
        resume = False  # found and readable: the client can load in the background
    if resume or (model and model not in cfg.models):
        loader = Loader(client=client())  # needed now: to find the session or check the model
    else:
        def factory() -> Any:  # runs in the loader thread: pydantic and the client load there
            from .client import Tether

            return Tether(home=home)

        loader = Loader(factory=factory)
    if model and model not in cfg.models:
        model = loader.client().turns.pins.check_model(model)
    hint = cfg.notice  # load_config has put the real config path in
    if cfg.notice:
        _StderrHandler.quiet.add(cfg.notice)  # shown once as the hint, not again at the first turn
    repl = Repl(loader, make_console(), model=model, system=system, title=title,
                default_model=cfg.default_model, home=home, hint=hint)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    repl.show_hint(plain=not interactive)  # before a resumed session's turns
    if quick:
        repl.load_replay(*quick)
    if resume:
        from .cli_util import most_recent_session, resolve_session_id

        c = loader.client()
        sid = resolve_session_id(c, session_id) if session_id else most_recent_session(c)
        if sid is None:
            echo("tether: no active session to continue: starting a new one", err=True)
        else:
            if model:
                c.pin_model(sid, model)
            if system is not None:
                c.update_session(sid, system=system)
            if title:
                c.rename_session(sid, title)
            repl.load(sid)
    if interactive:
        _StderrHandler.defer_to(repl.note_later)
        try:
            repl.run()
        finally:
            _StderrHandler.defer_to(None)
    elif repl.run_lines(sys.stdin or ()):  # no stdin at all (`<&-`): an empty script, as `< /dev/null`
        sys.exit(1)


# -- ask -----------------------------------------------------------------------------
@main.command()
@click.argument("prompt", nargs=-1)
@click.option("--session", "session_id", metavar="ID", help="Ask within this session (id or unique prefix).")
@click.option("-c", "--continue", "cont", is_flag=True, help="Ask within the most recently used active session.")
@click.option("-m", "--model", help="Model (config name or litellm string); pins the session.")
@click.option("-s", "--system", help="System prompt (sets the session's).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option("--no-stream", is_flag=True, help="Print the answer when complete instead of as it arrives.")
def ask(prompt: tuple[str, ...], session_id: str | None, cont: bool, model: str | None, system: str | None,
        as_json: bool, no_stream: bool) -> None:
    """One turn from the shell: prints the answer; a piped stdin is appended to PROMPT."""
    text = " ".join(prompt)
    if sys.stdin is not None and not sys.stdin.isatty():  # None: started with stdin closed (`<&-`)
        piped = _read_stdin().rstrip()  # not the final newline every file and echo ends with
        if piped.strip():
            text = f"{text}\n\n{piped}" if text else piped
    if not text.strip():
        raise click.UsageError("no prompt: pass it as an argument or pipe it in")
    if session_id and cont:
        raise click.UsageError("use either --session or --continue, not both")
    from .cli_util import most_recent_session, resolve_session_id

    c = client()
    sid = resolve_session_id(c, session_id) if session_id else (most_recent_session(c) if cont else None)
    if cont and sid is None:
        echo("tether: no active session to continue: starting a new one", err=True)
    if model:
        model = c.turns.pins.check_model(model)  # before anything is written
    if system is not None:
        if sid is None:
            from .turn.core import title_from

            sid = c.create_session(system=system, model=model, title=title_from(text))
        else:
            c.update_session(sid, system=system)
    if as_json or no_stream:
        result = c.chat_once(text, session_id=sid, model=model)
        if as_json:
            echo_json(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            _write(result.text + "\n")
    else:
        result = _stream_to_stdout(c.stream(text, session_id=sid, model=model))
    from .render import fallback_note

    note = fallback_note(result)
    if note:
        echo(f"tether: {note}", err=True)
    if sys.stderr is not None and sys.stderr.isatty() and not as_json:
        echo(f"session {result.session_id} · {result.model}", err=True)


def _read_stdin() -> str:
    """Piped stdin as UTF-8, bytes that are not (a Latin-1 file) as U+FFFD, said in one line.
    Read as text in the locale's encoding, they became lone surrogates, which no model call
    can encode: every model then failed as if the server had."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text-only stream (an embedding app's StringIO)
        return sys.stdin.read()
    data = raw.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad = sum(1 for c in data.decode("utf-8", "surrogateescape") if "\udc80" <= c <= "\udcff")
    echo(f"tether: {bad} byte{'' if bad == 1 else 's'} of stdin {'is' if bad == 1 else 'are'} not UTF-8: "
         f"sent as \ufffd", err=True)
    return data.decode("utf-8", "replace")


def _write(text: str) -> bool:
    """Write to stdout; False once the reader has gone away (`| head -1`) or there is none (`>&-`)."""
    if sys.stdout is None:
        return False
    try:
        sys.stdout.write(printable(text))  # a reply's ESC would reach a terminal even through `| tee`
        sys.stdout.flush()
        return True
    except (BrokenPipeError, ValueError):  # ValueError: stdout was closed
        _quiet_stdout()
        return False


def _stream_to_stdout(stream: Any) -> Any:
    """Print pieces as they arrive on a terminal; into a pipe or file, the answer once it is
    final (a model failing mid-answer would otherwise leave its text glued to the next
    model's answer there). If stdout closes early, keep reading so the whole answer is saved."""
    from .router.streaming import Restart

    live = sys.stdout is not None and sys.stdout.isatty()
    open_ = True
    held: list[str] = []
    last = ""
    progress = _progress(stream, held)  # until the first piece on a terminal, else until the end
    try:
        for piece in stream:
            if isinstance(piece, Restart):
                if progress is not None:
                    progress.stop()
                echo(f"{chr(10) if live else ''}tether: {piece.from_model} failed mid-answer ({piece.reason}); "
                     f"{piece.to_model} answers from the start", err=True)
                held.clear()
                if progress is not None and not live:
                    progress.start()
                continue
            if not live:
                held.append(piece)
            elif open_ and piece:
                if progress is not None:
                    progress.stop()
                    progress = None
                open_ = _write(piece)
                last = piece
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        stream.close()  # the partial answer is saved, marked interrupted
        if held:
            _write("".join(held))
        if held or (live and last):
            _write("\n")  # the note then starts its own line
        what = "the partial answer is" if held or last else "no answer yet; your question is"
        sid = stream.session_id
        echo(f"tether: interrupted: {what} saved in session {sid} (tether chat --session {sid} continues it)", err=True)
        raise click.exceptions.Exit(130) from None
    finally:
        if progress is not None:
            progress.stop()
    if held:
        last = "".join(held)
        open_ = _write(last)
    if open_ and last and not last.endswith("\n"):
        _write("\n")
    return stream.result


def _progress(stream: Any, held: list[str]) -> Any:
    """A status line on the terminal (stderr) while it shows no answer: the model waited for,
    then, when the answer is held for a pipe, how much arrived. None when stderr is no terminal."""
    if sys.stderr is None or not sys.stderr.isatty():
        return None
    from .progress import Progress
    from .render import make_console

    return Progress(make_console(file=sys.stderr), stream.waiting, lambda: sum(map(len, held))).start()


# -- models and config ---------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """Configured models: context window, price per token, circuit-breaker state."""
    from .render import fmt_circuit, fmt_per_million, table

    rows = client().models()
    if as_json:
        echo_json(json.dumps(rows, indent=2, default=str))
        return
    out = []
    for m in rows:
        out.append([m["name"] + (" *" if m["default"] else ""), m["model"], f"{m['context_window']:,}",
                    str(m["max_output_tokens"] or "-"), fmt_per_million(m["input_cost_per_token"]),
                    fmt_per_million(m["output_cost_per_token"]), fmt_circuit(m["circuit"])])
    echo(table(["NAME", "LITELLM MODEL", "WINDOW", "MAX OUT", "INPUT", "OUTPUT", "CIRCUIT"], out, {2, 3, 4, 5}))
    echo("* default model · prices per million tokens ('-' where unknown)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config(as_json: bool) -> None:
    """Where the config is, whether it validates, and the effective default model."""
    from .home import resolve_home
    from .router.config import inspect_config
    from .turn.settings import check_config

    home = resolve_home()
    rep = inspect_config(home, None, check_config)
    cfg = rep.config
    if as_json:
        data = {"home": str(home), "path": str(rep.path), "exists": rep.exists, "valid": rep.valid,
                "error": rep.error, **({"config": cfg.describe()} if cfg else {})}
        echo_json(json.dumps(data, indent=2, default=str))
    else:
        echo(f"home:          {home}")
        echo(f"config file:   {rep.path}" + ("" if rep.exists else " (not present: using defaults)"))
        echo(f"valid:         {'yes' if rep.valid else 'no'}")
        if cfg:
            echo(f"default model: {cfg.default_model} ({cfg.default_reason})")
            if cfg.fallbacks:
                echo(f"fallbacks:     {', '.join(cfg.fallbacks)}")
            if cfg.models:
                echo("models:        " + ", ".join(f"{n} = {s.model}" for n, s in cfg.models.items()))
            if cfg.notice:
                echo(cfg.notice)
    if not rep.valid:
        echo(f"tether: error: {rep.error}", err=True)
        sys.exit(1)


def _register() -> None:
    from .cli_sessions import sessions

    main.add_command(sessions)


_register()

if __name__ == "__main__":
    main()

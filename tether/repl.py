"""The interactive chat loop (`tether chat`): read a line, run a slash command or a turn.

The loop only talks to the client (`Tether.stream`, session methods): model calls
and saving live there, so a turn typed here is saved exactly as one sent from code.
The prompt is drawn before the client and litellm are loaded: `Loader` builds them
in a thread while the user types, and the first turn waits for it if it must.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import HTML
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from .errors import SessionNotFound, TetherError
from .progress import Progress
from .render import (AnswerView, fallback_note, fmt_cost, fmt_tokens, fmt_when, make_console, markdown, notice,
                     print_transcript, restart_announced)
from .repl_input import HISTORY_FILE, ChatCompleter, LockedFileHistory, key_bindings

if TYPE_CHECKING:
    from rich.console import Console

    from .client import Tether

PROMPT = "› "
RESUME_MESSAGES = 6  # the last few turns shown when a session is resumed
PREVIEW_CHARS = 2000  # of each of them: a long paste shows its head and tail


class Loader:
    """Builds the client, then imports litellm, off the main thread.

    `import litellm` takes seconds; doing it while the prompt is already up means
    the user never waits for it unless they send a message within that time.
    """

    def __init__(self, factory: Callable[[], Tether] | None = None, client: Tether | None = None,
                 preload: bool = True) -> None:
        self._factory = factory
        self._client = client
        self._error: BaseException | None = None
        self._ready = threading.Event()
        if client is not None:
            self._ready.set()
        self._preload = preload
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            # not a daemon: one killed at exit in the middle of an import holds the import lock,
            # and litellm's finalizers, which import, then hang the interpreter for good
            self._thread = threading.Thread(target=self._run, name="tether-chat-loader")
            self._thread.start()

    def _run(self) -> None:
        try:
            if self._client is None:
                assert self._factory is not None
                self._client = self._factory()
        except BaseException as e:  # reported to the main thread by client()
            self._error = e
        finally:
            self._ready.set()
        if self._preload and self._error is None:
            try:
                from .router._lite import litellm

                litellm()
                import rich.markdown  # noqa: F401  (pulls in pygments: worth doing early too)
            except Exception:
                pass  # the first turn imports again and reports the error properly

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def client(self) -> Tether:
        if not self._ready.is_set():
            self.start()
            self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._client is not None
        return self._client


@dataclass
class Exchange:
    """A question and the answers to it this chat knows of: what it asked itself, or what its
    session held when it was opened. /retry and /undo act on the last one, so a second terminal
    on the same session cannot have its exchange regenerated or removed from this one."""

    session_id: str
    question_id: str
    question: str
    answers: set[str] = field(default_factory=set)

    @classmethod
    def split(cls, session_id: str, messages: Iterable[Any]) -> list[Exchange]:
        """A session's messages cut at each question (whatever follows belongs to it)."""
        out: list[Exchange] = []
        for m in messages:
            if m.role == "user":
                out.append(cls(session_id, m.id, m.content))
            elif out:
                out[-1].answers.add(m.id)
        return out


class Repl:
    """One chat: the current session, its pinned model and running totals."""

    def __init__(self, loader: Loader, console: Console, *, session_id: str | None = None,
                 model: str | None = None, system: str | None = None, title: str | None = None,
                 default_model: str = "tether/echo", home: Path | None = None,
                 input: Input | None = None, output: Output | None = None, hint: str | None = None) -> None:
        self.loader = loader
        self.console = console
        self.session_id = session_id
        self.model = model  # for the next new session, or the pin of the current one
        self.system = system
        self.given_system = system  # -s: for every new session of this chat, not a switched-to one's
        self.title = title
        self.default_model = default_model
        self.hint = hint
        self.tokens = 0
        self.cost = 0.0
        self.pinned: str | None = None
        self.next_default = ""  # text to pre-fill the next prompt with (after /undo)
        self.exchanges: list[Exchange] = []  # of the current session, oldest first (see Exchange)
        self.closed = False  # the current session's status was "closed" when last loaded
        self._watching = False
        self.running = True
        self._home, self._input, self._output = home, input, output
        self._session: PromptSession[str] | None = None
        self._later: list[str] = []  # notes from the line editor's threads, shown between prompts
        self._notes: Console | None = None  # where notes and errors go when not the answers' console
        if console.file is sys.stdout and not (sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()):
            # a piped chat, or `tether chat | tee`: stdout carries the answers only
            self._notes = make_console(file=sys.stderr)
        self.errors = 0
        self._interactive = False  # run(): someone at the terminal, who keeps chatting if stdout closes
        self._hinted = False

    @property
    def session(self) -> PromptSession[str]:
        """The line editor, made on first use (a chat fed from a pipe never needs one)."""
        if self._session is None:
            from .repl_commands import COMMANDS

            history = (LockedFileHistory(self._home / HISTORY_FILE, warn=self._later.append)
                       if self._home is not None else None)
            self._session = PromptSession(
                PROMPT, history=history, key_bindings=key_bindings(), bottom_toolbar=self.toolbar,
                completer=ChatCompleter({n: c.help for n, c in COMMANDS.items()}, self._session_choices,
                                        self._model_choices),
                complete_while_typing=False, enable_history_search=False, input=self._input,
                output=self._output, mouse_support=False,
            )
            self._session.app.after_render += self._first_render
        return self._session

    # -- the client, loaded in the background ------------------------------------------
    @property
    def client(self) -> Tether:
        client = self.loader.client()
        if not self._watching:  # every message this chat stores is its own: remember those exchanges
            self._watching = True
            client.on("message", self._on_message)
        return client

    def _on_message(self, event: dict[str, Any]) -> None:
        """A message this chat's client stored: a question starts an exchange, an answer joins it."""
        m, sid = event["message"], event["session_id"]
        if m.role == "user":
            self.exchanges.append(Exchange(sid, m.id, m.content))
        elif self.exchanges and self.exchanges[-1].session_id == sid:
            self.exchanges[-1].answers.add(m.id)

    def _first_render(self, _app: Any) -> None:
        self.session.app.after_render -= self._first_render
        self.loader.start()

    def _session_choices(self) -> list[tuple[str, str]]:
        if not self.loader.ready:
            return []
        return [(s.id, s.title or "") for s in self.client.list_sessions(limit=50)]

    def _model_choices(self) -> list[str]:
        if not self.loader.ready:
            return []
        try:
            return list(self.client.config.models) or [self.default_model]
        except TetherError:
            return []

    # -- state ---------------------------------------------------------------------------
    def toolbar(self) -> HTML:
        model = self.pinned or self.model or f"{self.default_model} (default)"
        sid = self.session_id or "new"
        text = (f" <b>{_esc(model)}</b> · {fmt_tokens(self.tokens)} tokens · {fmt_cost(self.cost)}"
                f" · session {_esc(sid)} · Alt-Enter: newline · /help")
        return HTML(text)

    def load(self, session_id: str, show: int = RESUME_MESSAGES, remember: bool = True) -> None:
        """Make `session_id` current and show its last few messages. `remember`: take its
        exchanges as known (opened, switched to), not when merely refreshing the totals."""
        s = self.client.load_session(session_id)
        if remember:
            self.exchanges = Exchange.split(s.id, s.messages)
        self._enter(s.id, s.pinned_model, s.title, s.system, s.totals.total_tokens, s.totals.cost_usd,
                    s.messages, show, s.status, s.updated_at)

    def load_replay(self, session_id: str, replay: Any, show: int = RESUME_MESSAGES) -> None:
        """As load(), from a pydantic-free replay of the session file: a resumed chat draws
        its last turns and the prompt while the client still loads in the background."""
        from types import SimpleNamespace

        h = replay.header
        msgs = [SimpleNamespace(**{"model": None, "status": "ok", **m}) for m in replay.messages.values()]
        self.exchanges = Exchange.split(session_id, msgs)
        tokens, cost = replay.spent()  # answers taken out were still paid for
        self._enter(session_id, h.get("pinned_model"), h.get("title"), h.get("system"), tokens, cost, msgs, show,
                    h.get("status"), h.get("updated_at"))

    def _enter(self, sid: str, pinned: str | None, title: str | None, system: str | None,
               tokens: int, cost: float, messages: list[Any], show: int, status: str | None = None,
               used: Any = None) -> None:
        self.session_id, self.pinned, self.model = sid, pinned, None
        self.title, self.system = title, system
        self.tokens, self.cost = tokens, cost
        self.closed = status == "closed"
        if show:
            recent = messages[-show:]
            more = len(messages) - len(recent)
            # when it was last used: a chat resumed days later reads differently from one left a minute ago
            head = f"session {sid}" + (f" · {title}" if title else "") + (
                f" · last used {fmt_when(used)}" if used else "") + (
                f" · {more} earlier messages not shown" if more else "")
            print_transcript(self.console, recent, heading=head, limit=PREVIEW_CHARS)  # the transcript, piped too
        if status == "closed":
            notice(self.notes, f"session {sid} is closed: it can be read, not continued "
                                 f"(`tether sessions reopen {sid}` opens it again)")

    def refresh(self) -> None:
        if self.session_id:
            self.load(self.session_id, show=0, remember=False)  # what changed since is not this chat's

    def new_session(self) -> None:
        self.session_id, self.pinned, self.title, self.system = None, None, None, self.given_system
        self.tokens, self.cost = 0, 0.0
        self.exchanges = []
        self.closed = False

    def start_turn(self, text: str) -> Any:
        """Start a streamed turn. A new session is created by its first message, so an idle chat
        leaves nothing behind; the client picks its model and title unless the user chose them."""
        sid = self.session_id
        if sid is None and (self.title or self.system):
            title = self.title or text.strip().splitlines()[0][:60]
            sid = self.client.create_session(title=title, system=self.system, model=self.model)
        stream = self.client.stream(text, session_id=sid, model=self.model if sid is None else None)
        if self.session_id is None:
            self.session_id = stream.session_id
            self.refresh()  # the pinned model and title the client chose
        return stream

    def note_later(self, text: str) -> None:
        """A note from another thread: shown before the next answer, never inside the prompt."""
        self._later.append(text)

    @property
    def notes(self) -> Console:
        """Where notes and errors go: stderr in a piped chat, else beside the answers."""
        return self._notes or self.console

    def error(self, text: str) -> None:
        self.errors += 1
        self.notes.print(f"error: {text}", style="bold red", markup=False, highlight=False)

    def info(self, text: str) -> None:
        self.notes.print(text, style="dim", markup=False, highlight=False)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> int:
        if (self._output is None and self._session is None and self.console.file is sys.stdout
                and not sys.stdout.isatty() and sys.stderr.isatty()):
            # `tether chat | tee log`: the prompt goes to the terminal, not into the pipe (notes too)
            from prompt_toolkit.output import create_output

            self._output = create_output(stdout=sys.stderr)
        self._interactive = True
        self.show_hint()
        while self.running:
            self._drain_stdout()
            try:
                default, self.next_default = self.next_default, ""
                text = self.session.prompt(default=default)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
                continue
            except EOFError:  # Ctrl-D on an empty line leaves
                break
            self._say_later()
            try:
                self.handle(text)
            except BrokenPipeError:  # a command's output: the pipe is gone, the chat goes on
                self._pipe_closed()
        self._say_later()  # Ctrl-D: what arrived meanwhile is still said
        return 0

    def _drain_stdout(self) -> None:
        """`tether chat | tee log`: what went into the pipe reaches the terminal through tee,
        while the prompt is drawn on stderr directly. Flush, then give tee up to 100 ms to
        read the pipe empty, so the answer shows above the next prompt rather than inside it."""
        if self._notes is None or self.console.file is not sys.stdout:
            return
        try:
            sys.stdout.flush()
            fd = sys.stdout.fileno()
            import stat

            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return
            import array
            import fcntl
            import termios
        except BrokenPipeError:
            self._pipe_closed()
            return
        except (ImportError, OSError, ValueError):
            return
        unread = array.array("i", [0])
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            try:
                fcntl.ioctl(fd, termios.FIONREAD, unread, True)
            except OSError:
                return
            if unread[0] == 0:
                return
            time.sleep(0.005)

    def _pipe_closed(self) -> None:
        """stdout's reader has gone: in `tether chat | tee log`, Ctrl-C also ends tee (it is in
        the same process group). The chat goes on, its answers shown on the terminal."""
        if self._notes is None or not self._interactive:
            # answers already go to the terminal; or a script (`tether chat < file | head`), whose
            # reader wants no more: end quietly, as `tether ask | head -1` does
            raise BrokenPipeError
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # what is still buffered for the pipe goes nowhere, quietly
            os.close(devnull)
        except (OSError, ValueError):
            pass
        self.console, self._notes = self._notes, None
        notice(self.console, "(stdout closed: answers are shown here from now on)")

    def show_hint(self, plain: bool = False) -> None:
        """The start-up hint (no model configured...), once: `tether chat -c` says it before the
        resumed turns, not between them and the prompt. `plain`: a piped chat's line on stderr."""
        if self.hint and not self._hinted:
            self._hinted = True
            if plain:
                print(self.hint, file=sys.stderr)
            else:
                notice(self.notes, self.hint, style="dim")

    def _say_later(self) -> None:
        while self._later:
            self.info(self._later.pop(0))

    def run_lines(self, lines: Iterable[str]) -> int:
        """Stdin is not a terminal: every line is a message or a slash command, no line editor.
        Answers go to stdout, notes and errors to stderr; the status is 1 if any turn failed."""
        self.loader.start()
        self.show_hint(plain=True)
        for line in lines:
            if not self.running:
                break
            self.handle(line.rstrip("\n"))
        return 1 if self.errors else 0

    def confirm(self, question: str, piped: bool) -> bool:
        """A y/N question at the prompt before something that cannot be undone; a chat fed
        from a pipe has no one to ask and gets `piped` (a script's line means what it says)."""
        if self._session is None:  # no line editor: not an interactive chat
            return piped
        from prompt_toolkit import PromptSession

        try:
            answer = PromptSession(input=self._input, output=self._output).prompt(f"{question} [y/N] ")
        except (KeyboardInterrupt, EOFError):
            return False
        return answer.strip().lower() in ("y", "yes")

    def handle(self, text: str) -> None:
        if not text.strip():
            return
        from .repl_commands import as_message, dispatch, is_command

        if is_command(text):
            try:
                dispatch(self, text)
            except (TetherError, ValueError) as e:
                self.error(getattr(e, "cli_message", None) or str(e))  # SessionClosed: the shell's advice
            except BrokenPipeError:  # stdout's reader has gone: not the command's fault
                raise
            except OSError as e:  # /export to a missing folder, a directory...: say so, keep chatting
                self.error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
            except KeyboardInterrupt:
                self.info("(cancelled)")
            return
        if self.closed and self.session_id:  # refused before anything is sent: keep what was typed
            from .errors import SessionClosed

            self.error(SessionClosed(self.session_id).cli_message + "; your message is back in the prompt")
            self.next_default = text
            return
        self.send(as_message(text))

    def send(self, text: str, start: Callable[[], Any] | None = None) -> None:
        """One turn, streamed. Ctrl-C stops it; the partial answer is saved, marked interrupted.
        `start`: what opens the stream instead of a new question (for `/retry`)."""
        with self._keys_unechoed():
            self._send(text, start)

    @contextmanager
    def _keys_unechoed(self) -> Iterator[None]:
        """While an answer is drawn, keys typed (and the `^C` of Ctrl-C) are not echoed: the
        terminal would write them inside the live answer and break its redrawing. Ctrl-C still
        interrupts (ISIG stays on, without flushing what was typed) and typed text stays queued
        (ICANON is left as it is) for the next prompt, which reads it. Only for the chat's own terminal on stdin."""
        fd = self._tty_fd()
        before: list[Any] | None = None
        if fd is not None:
            import termios

            try:
                before = termios.tcgetattr(fd)
                quiet = list(before)
                quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
                quiet[3] |= termios.NOFLSH  # Ctrl-C stops the answer, it does not throw away type-ahead
                termios.tcsetattr(fd, termios.TCSANOW, quiet)  # not TCSAFLUSH: that drops type-ahead
            except (termios.error, OSError):
                before = None
        try:
            yield
        finally:
            if fd is not None and before is not None:
                import termios

                try:
                    termios.tcsetattr(fd, termios.TCSANOW, before)
                except (termios.error, OSError):
                    pass

    def _tty_fd(self) -> int | None:
        """stdin's descriptor when this chat reads keys from it and it is a terminal."""
        if self._input is not None or sys.stdin is None:
            return None
        try:
            import termios  # noqa: F401  (not on Windows)

            fd = sys.stdin.fileno()
            return fd if os.isatty(fd) else None
        except (ImportError, OSError, ValueError):
            return None

    def _send(self, text: str, start: Callable[[], Any] | None) -> None:
        from .router.streaming import Restart

        try:
            from .router._lite import loaded

            if not loaded():
                self.info("(loading models…)")
            try:
                stream = start() if start is not None else self.start_turn(text)
            except SessionNotFound:
                if start is not None or self.session_id is None:
                    raise
                # deleted by another process while this chat was on it: the message goes on
                self.info(f"(session {self.session_id} no longer exists: this message starts a new one)")
                self.new_session()
                stream = self.start_turn(text)
        except KeyboardInterrupt:
            self.info("(cancelled)")
            return
        except (TetherError, ValueError) as e:
            self.error(getattr(e, "cli_message", None) or str(e))  # closed by another process: the shell's advice
            return
        view = AnswerView(self.console, status=stream.waiting, notes=self._notes, hold=self._notes is not None)
        # the answer is held for the pipe: the terminal says what the turn waits for meanwhile
        progress = Progress(self._notes, stream.waiting, lambda: len(view.text)) if self._notes is not None else None
        try:
            view.start()
            if progress is not None:
                progress.start()
            for piece in stream:
                if isinstance(piece, Restart):
                    view.restart(piece.from_model, piece.to_model, piece.reason)
                    continue
                view.add(piece)
        except KeyboardInterrupt:
            try:
                self._end(view, progress, interrupted=True)
            finally:
                stream.close()
            what = "the partial answer is saved" if view.text.strip() else "no answer yet; your message is saved"
            notice(self.notes, f"(interrupted: {what}; /retry asks again)")
            self.refresh()
            return
        except Exception as e:  # noqa: BLE001 - AllModelsFailed, or a bug in a provider
            self._end(view, progress)
            self.error(f"{e} (your message is saved; /retry asks again)")
            self.refresh()
            return
        self._end(view, progress, final=True)
        self.after_turn(stream.result)

    def _end(self, view: AnswerView, progress: Progress | None, final: bool = False,
             interrupted: bool = False) -> None:
        """End an answer's display: a held answer is written now. If stdout's reader has gone,
        the answer is shown on the terminal instead and later ones go there too. After Ctrl-C,
        which ends `tee` as well, the pipe may lose its reader only a moment later (a write then
        would vanish into it): wait for that briefly."""
        if progress is not None:
            progress.stop()
        try:
            if interrupted and self._notes is not None and _reader_gone(sys.stdout, 0.15):
                raise BrokenPipeError
            view.finish() if final else view.stop()
            if self._notes is not None:
                self.console.file.flush()  # a dead pipe says so now, not at the next answer
                self._drain_stdout()  # and notes that follow show below the answer, not above it
        except BrokenPipeError:
            self._pipe_closed()
            if view.text.strip():
                self.console.print(markdown(view.text) if self.console.is_terminal else view.text.rstrip("\n"),
                                   markup=False, highlight=False)

    def after_turn(self, result: Any) -> None:
        if result is None:
            return
        note = None if restart_announced(result) else fallback_note(result)
        if note:
            notice(self.notes, f"! {note}")
        if self.pinned and result.pinned_model != self.pinned:
            notice(self.notes, f"! session now pinned to {result.pinned_model} (was {self.pinned})")
        self.pinned = result.pinned_model
        self.tokens += int(result.usage.get("total_tokens", 0) or 0)
        self.cost += result.cost_usd or 0.0


def _reader_gone(out: Any, wait: float) -> bool:
    """True once the pipe `out` writes into has no reader left, waiting up to `wait` seconds
    (poll reports POLLERR on a pipe's write end when its last reader has closed)."""
    try:
        import select

        fd = out.fileno()
        p = select.poll()
        p.register(fd, 0)  # no events asked for: only an error (no reader) ends the wait
        return any(ev & select.POLLERR for _, ev in p.poll(int(wait * 1000)))
    except (AttributeError, ImportError, OSError, ValueError):
        return False


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

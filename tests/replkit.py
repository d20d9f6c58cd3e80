"""Drive the chat loop in tests: prompt-toolkit's pipe input with a dummy output.

Keys go in as the bytes a terminal sends (\r Enter, \x1b\r Esc-Enter, \x03 Ctrl-C,
\x04 Ctrl-D, \x1b[200~...\x1b[201~ a bracketed paste); answers come from the
offline model tether/echo or the local fake OpenAI server.
"""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from tether import Tether
from tether.render import make_console
from tether.repl import Loader, Repl

class Chat:
    """A Repl wired to a pipe: `run(keys)` types them and returns what was printed."""

    def __init__(self, repl: Repl, pipe, out: io.StringIO) -> None:
        self.repl, self.pipe, self.out = repl, pipe, out

    def run(self, keys: str, timeout: float = 60.0) -> str:
        start = self.out.tell()
        self.pipe.send_text(keys if keys.endswith("\x04") or "/exit" in keys else keys + "\x04")
        # a chat still waiting for keys (text put back in the prompt, where Ctrl-D does not end
        # it) would hang the suite: after `timeout` the line is cleared and the chat ended
        fired: list[bool] = []

        def unstick() -> None:
            fired.append(True)
            self.pipe.send_text("\x15\x04" * 3)

        stuck = threading.Timer(timeout, unstick)
        stuck.start()
        try:
            code = self.repl.run()
        finally:
            stuck.cancel()
        assert not fired, f"the chat still waited for keys after {timeout:.0f}s: {self.out.getvalue()[start:][-300:]!r}"
        assert code == 0
        self.repl.running = True
        return self.out.getvalue()[start:]

    @property
    def client(self) -> Tether:
        return self.repl.client

    def messages(self) -> list:
        assert self.repl.session_id
        return self.client.get_history(self.repl.session_id)

@contextmanager
def chat(home: Path, config=None, **kw) -> Iterator[Chat]:
    with create_pipe_input() as pipe:
        out = io.StringIO()
        client = Tether(home=home, config=config)
        repl = Repl(Loader(client=client, preload=False), make_console(file=out), input=pipe,
                    output=DummyOutput(), home=home, **kw)
        yield Chat(repl, pipe, out)

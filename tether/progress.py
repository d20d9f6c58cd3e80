"""A transient status line on the terminal while an answer is not being shown there.

`tether ask` before its first piece arrives, and a chat or `ask` whose answer is held for a
pipe (written once final): without it the terminal stays blank for as long as the model
takes, up to a timeout. Drawn on stderr, gone when it stops; rich is imported only here.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Progress:
    """What the turn waits for (`status()`), then how much has arrived (`got()` characters)."""

    def __init__(self, console: Console, status: Callable[[], str], got: Callable[[], int] = lambda: 0) -> None:
        self.console, self.status, self.got = console, status, got
        self.since = time.monotonic()
        self.live: Any = None

    def start(self) -> Progress:
        """Draw it, if the console is a terminal (a file or a pipe gets nothing)."""
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=4, transient=True,
                             redirect_stdout=False, redirect_stderr=False)  # stdout is the answer's, untouched
            self.live.start()
        return self

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich_console__(self, console: Console, options: Any) -> Any:
        from rich.text import Text

        from .render import waiting_line

        got = self.got()
        waited = time.monotonic() - self.since
        line = (waiting_line(f"answering… {got:,} characters (written to stdout when complete)", waited, dots="")
                if got else waiting_line(self.status(), waited))
        yield Text(line, style="dim")

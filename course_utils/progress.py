"""Where the training loop's progress goes: the epoch table and the bar over the batches.

In a terminal, the bar is tqdm's on stderr and the table rows are printed. In a Jupyter notebook both live in
*one* output that is redrawn in place, so a saved notebook holds the finished table and nothing else (a bar on
stderr would be saved as stray lines interleaved with the table)."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached), False in a terminal or under pytest."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class TerminalProgress:
    """Table rows on stdout, a transient tqdm bar on stderr."""

    def __init__(self):
        self.bar = None

    def line(self, text: str) -> None:
        """Add a row to the table."""
        print(text, flush=True)

    def start_bar(self, total: int, desc: str) -> None:
        """Show a bar for the coming `total` batches."""
        self.bar = tqdm(total=total, leave=False, file=sys.stderr, mininterval=0.5, desc=desc)

    def update_bar(self) -> None:
        """One more batch done."""
        if self.bar is not None:
            self.bar.update(1)

    def close_bar(self) -> None:
        """Remove the bar (end of an epoch or of the fit)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class NotebookProgress:
    """The table and the bar as one text output, updated in place (at most twice a second for the bar)."""
    width = 30

    def __init__(self):
        from IPython.display import display  # only ever built inside a kernel, where IPython is present
        self.lines, self.bar_text, self.total, self.done, self.shown_at = [], "", 0, 0, 0.0
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def line(self, text: str) -> None:
        """Add a row to the table."""
        self.lines.append(text)
        self._draw()

    def start_bar(self, total: int, desc: str) -> None:
        """Show a bar for the coming `total` batches."""
        self.total, self.done, self.desc, self.started = total, 0, desc, time.time()
        self._draw_bar()

    def update_bar(self) -> None:
        """One more batch done."""
        self.done += 1
        if time.time() - self.shown_at >= 0.5 or self.done == self.total:
            self._draw_bar()

    def close_bar(self) -> None:
        """Remove the bar (end of an epoch or of the fit)."""
        if self.bar_text:
            self.bar_text = ""
            self._draw()

    def _draw_bar(self) -> None:
        filled = self.width * self.done // max(1, self.total)
        secs = int(time.time() - self.started)
        self.bar_text = (f"{self.desc} |{'#' * filled}{'.' * (self.width - filled)}| {self.done}/{self.total} "
                         f"[{secs // 60:02d}:{secs % 60:02d}]")
        self._draw()

    def _draw(self) -> None:
        self.shown_at = time.time()
        self.handle.update({"text/plain": "\n".join(self.lines + ([self.bar_text] if self.bar_text else []))},
                           raw=True)


def progress_output() -> TerminalProgress | NotebookProgress:
    """The right progress output for where the code runs."""
    return NotebookProgress() if in_notebook() else TerminalProgress()

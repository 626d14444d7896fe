"""The library's one stderr console (rich): progress bars, warnings. The CLI prints through it too, so the
library never imports the CLI (faceparse.commands) to say something."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


class progress_bar:
    """``with progress_bar("what", total) as advance: ... advance(n)``: a rich bar on a terminal, nothing
    in logs (DVC, CI, kfp) or when disabled."""

    def __init__(self, description: str, total: int, enabled: bool = True):
        self.prog = Progress(TextColumn(f"[bold]{description}[/]"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, disable=not enabled or total < 2)
        self.total = total

    def __enter__(self):
        self.prog.__enter__()
        task = self.prog.add_task("", total=self.total)
        return lambda n=1: self.prog.update(task, advance=n)

    def __exit__(self, *exc):
        return self.prog.__exit__(*exc)

"""The library's one stderr console (rich): progress bars, warnings. The CLI prints through it too, so the
library never imports the CLI (faceparse.commands) to say something."""
from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)

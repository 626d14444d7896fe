"""Output folders built beside their target and renamed into place (a reader never sees half a bundle or
dataset), with the permissions a plain ``mkdir`` would give: ``tempfile.mkdtemp`` makes them 0700, and a
renamed 0700 bundle is unreadable to anyone else — a serving container's user, a shared model store."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def staging_dir(target: Path, infix: str = ".") -> Path:
    """A new empty folder ``.<target name><infix>XXXX`` beside ``target``, mode 0777 less the umask."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{infix}", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

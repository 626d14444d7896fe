"""Pass a command's output through unchanged and time its steps: `make run` pipes `dvc repro` and its own
steps through this, so every run ends with a table of where the minutes went (the 15-minute budget).

    python scripts/step_times.py --log runs/step_times.tsv -- dvc repro

A step starts at a DVC "Running stage 'NAME':" line or at a run_main.sh "== title" line; the table goes to
stderr and, with --log, is appended to a TSV (step, seconds). The command's exit code is returned."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

STARTS = (re.compile(r"^Running stage '([^']+)':"), re.compile(r"^(?:\x1b\[[0-9;]*m)?== (.+?)(?:\x1b\[0m)?$"))


def step_name(line: str) -> str | None:
    for pattern in STARTS:
        m = pattern.match(line.rstrip("\n"))
        if m:
            return m.group(1).strip()[:60]
    return None


def lines_of(cmd: list[str]):
    """Yield the command's output line by line while echoing it byte for byte. On a terminal the command
    gets a pseudo-terminal of the same size, so its progress bars still draw; otherwise a pipe."""
    if not sys.stdout.isatty():
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                errors="replace")   # a stray byte must not end the run
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            yield line
        return proc.wait()
    import fcntl
    import os
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8))
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    pending = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:   # EIO: the command closed the terminal
            chunk = b""
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        *done, pending = (pending + chunk).split(b"\n")
        for line in done:
            yield line.decode(errors="replace").rstrip("\r").split("\r")[-1]   # last redraw of a bar
    os.close(master)
    return proc.wait()


def run(cmd: list[str]) -> tuple[int, list[tuple[str, float]]]:
    """Run ``cmd``, echo its output, return (exit code, [(step, seconds)])."""
    steps: list[tuple[str, float]] = []
    name, started = "(start)", time.monotonic()
    output = lines_of(cmd)
    while True:
        try:
            line = next(output)
        except StopIteration as end:
            rc = end.value
            break
        new = step_name(line)
        if new:
            steps.append((name, time.monotonic() - started))
            name, started = new, time.monotonic()
    steps.append((name, time.monotonic() - started))
    return rc, [(n, s) for n, s in steps if n != "(start)" or s >= 1.0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="append (step, seconds) rows to this TSV")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command to run")
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given (use: step_times.py [--log F] -- CMD ...)")
    rc, steps = run(cmd)
    width = max((len(n) for n, _ in steps), default=4)
    print("\nstep times:", file=sys.stderr)
    for n, s in steps:
        print(f"  {n:<{width}}  {s:7.1f} s", file=sys.stderr)
    print(f"  {'total':<{width}}  {sum(s for _, s in steps):7.1f} s", file=sys.stderr)
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with args.log.open("a") as f:
            f.writelines(f"{n}\t{s:.1f}\n" for n, s in steps)
    return rc


if __name__ == "__main__":
    sys.exit(main())

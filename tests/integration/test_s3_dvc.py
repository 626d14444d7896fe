"""Against a real S3 server (SeaweedFS `weed mini`): `faceparse data fetch` / `upload` and a DVC S3 remote."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from s3server import SeaweedS3  # noqa: E402

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BUCKET = "faceparse"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), buckets=[BUCKET]) as server:
        yield server


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def faceparse(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "faceparse", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def faceparse_inproc(*args: str, env: dict):
    """The same CLI in-process (CliRunner sets the environment for the call): saves ~2 s of start-up."""
    from typer.testing import CliRunner

    from faceparse.cli import app

    res = CliRunner(env=env).invoke(app, list(args))
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


@pytest.fixture(scope="module")
def blob(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("blob") / "weights.bin"
    p.write_bytes(os.urandom(2_500_000))
    return p


def test_fetch_roundtrip_with_checksum(s3, blob, tmp_path):
    env = s3.env()
    r = faceparse("data", "upload", str(blob), f"s3://{BUCKET}/models/weights.bin", env=env)
    assert r.returncode == 0, r.stderr
    r = faceparse("data", "fetch", f"s3://{BUCKET}/models/weights.bin", str(tmp_path / "a"), "--sha256", sha(blob),
                  "-q", env=env)
    assert r.returncode == 0, r.stderr
    got = tmp_path / "a" / "weights.bin"
    assert Path(r.stdout.strip()) == got and sha(got) == sha(blob)
    assert not list((tmp_path / "a").glob("*.part*"))
    # the object's own sha256 metadata (written by upload) is checked when --sha256 is not given
    r = faceparse_inproc("data", "fetch", f"s3://{BUCKET}/models/weights.bin", str(tmp_path / "b"), "-q", env=env)
    assert r.returncode == 0 and sha(tmp_path / "b" / "weights.bin") == sha(blob)
    # a wrong checksum: refused, nothing left in place
    r = faceparse_inproc("data", "fetch", f"s3://{BUCKET}/models/weights.bin", str(tmp_path / "c"), "--sha256", "0" * 64,
                  "-q", env=env)
    assert r.returncode == 2 and "checksum mismatch" in r.stderr
    assert not (tmp_path / "c" / "weights.bin").exists()


def test_fetch_errors_name_the_uri(s3, blob, tmp_path):
    env = s3.env()
    s3.client().upload_file(str(blob), BUCKET, "plain/weights.bin")
    bad = dict(env, AWS_SECRET_ACCESS_KEY="not-the-secret")
    r = faceparse_inproc("data", "fetch", f"s3://{BUCKET}/plain/weights.bin", str(tmp_path), "-q", env=bad)
    assert r.returncode == 2
    assert "access denied" in r.stderr and "SignatureDoesNotMatch" in r.stderr
    assert f"s3://{BUCKET}/plain/weights.bin" in r.stderr
    r = faceparse_inproc("data", "fetch", f"s3://{BUCKET}/plain/nothing.bin", str(tmp_path), "-q", env=env)
    assert r.returncode == 2 and "no such object" in r.stderr and "nothing.bin" in r.stderr
    r = faceparse_inproc("data", "fetch", "s3://no-such-bucket/x.bin", str(tmp_path), "-q", env=env)
    assert r.returncode == 2 and "bucket 'no-such-bucket' does not exist" in r.stderr
    assert not list(tmp_path.iterdir())


def test_fetch_resumes_from_part_file(s3, blob, tmp_path, monkeypatch):
    from faceparse.data import storage

    for k, v in s3.env({}).items():
        monkeypatch.setenv(k, v)
    uri = f"s3://{BUCKET}/resume/weights.bin"
    storage.upload(blob, uri)
    etag = s3.client().head_object(Bucket=BUCKET, Key="resume/weights.bin")["ETag"]
    data = blob.read_bytes()

    def seed_part(d: Path, prefix: bytes) -> None:
        d.mkdir()
        (d / "weights.bin.part").write_bytes(prefix)
        (d / "weights.bin.part.json").write_text(json.dumps({"etag": etag}))

    # a correct first third: only the rest is requested, the result is exact
    seed_part(tmp_path / "ok", data[:800_000])
    assert sha(storage.fetch(uri, tmp_path / "ok", sha256=sha(blob))) == sha(blob)
    # a corrupted first third proves the prefix was kept (resumed, not re-downloaded) and the checksum caught it
    seed_part(tmp_path / "bad", b"\0" * 800_000)
    with pytest.raises(ValueError, match="checksum mismatch"):
        storage.fetch(uri, tmp_path / "bad", sha256=sha(blob))
    assert not (tmp_path / "bad" / "weights.bin").exists() and not (tmp_path / "bad" / "weights.bin.part").exists()
    # a partial file of another object version (other ETag) is discarded and the download starts over
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "weights.bin.part").write_bytes(b"\0" * 800_000)
    (tmp_path / "other" / "weights.bin.part.json").write_text('{"etag": "\\"stale\\""}')
    assert sha(storage.fetch(uri, tmp_path / "other")) == sha(blob)


def test_dvc_push_pull_through_s3(s3, tmp_path):
    """A copy of this repo's DVC wiring + an S3 remote whose secrets live only in .dvc/config.local."""
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copy(REPO / ".dvc" / ".gitignore", repo / ".dvc" / ".gitignore")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # credentials only from DVC config
    env["DVC_NO_ANALYTICS"] = "1"

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=180)
        if ok:
            assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
        return r

    dvc = (sys.executable, "-m", "dvc")
    run("git", "init", "-q")
    data = repo / "data" / "small"
    (data / "labels").mkdir(parents=True)
    for i in range(3):
        (data / f"img{i}.bin").write_bytes(os.urandom(3000 + i))
        (data / "labels" / f"{i}.png").write_bytes(os.urandom(500 + i))
    want = {str(p.relative_to(data)): sha(p) for p in data.rglob("*") if p.is_file()}
    run(*dvc, "add", "data/small")
    run(*dvc, "remote", "add", "s3", f"s3://{BUCKET}/dvc-store")
    run(*dvc, "remote", "modify", "s3", "endpointurl", s3.endpoint)
    run(*dvc, "remote", "modify", "--local", "s3", "access_key_id", s3.access_key)
    run(*dvc, "remote", "modify", "--local", "s3", "secret_access_key", s3.secret_key)
    tracked = (repo / ".dvc" / "config").read_text()
    assert s3.secret_key not in tracked and s3.access_key not in tracked
    assert s3.secret_key in (repo / ".dvc" / "config.local").read_text()
    assert run("git", "check-ignore", "-q", ".dvc/config.local", ok=False).returncode == 0, "config.local not ignored"

    run(*dvc, "push", "-r", "s3")
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="dvc-store/").get("Contents", [])]
    assert len(keys) == 7  # 6 files + the .dir listing

    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")
    run(*dvc, "pull", "-r", "s3")
    assert {str(p.relative_to(data)): sha(p) for p in data.rglob("*") if p.is_file()} == want

    # the remote really checks the credentials
    run(*dvc, "remote", "modify", "--local", "s3", "secret_access_key", "wrong")
    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")
    r = run(*dvc, "pull", "-r", "s3", ok=False)
    assert r.returncode != 0 and ("Forbidden" in r.stderr or "403" in r.stderr), r.stderr

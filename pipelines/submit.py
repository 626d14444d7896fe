"""Submit the compiled pipeline to a Kubeflow Pipelines API:

    python pipelines/submit.py --host URL [--experiment NAME] [--run-name NAME] [--pipeline-root s3://…]
                               [--set section.key=value …] [--arg name=value …] [--namespace NS]
                               [--service-account SA] [--token TOKEN] [--package FILE]

It submits pipelines/faceparse_pipeline.yaml (``python pipelines/compile.py`` first if you changed
anything) with ``kfp.Client(host).create_run_from_pipeline_package``. ``--set`` adds params.yaml
overrides (the ``overrides`` pipeline parameter); ``--arg`` sets any other pipeline parameter (JSON
values, e.g. ``--arg 'pytorchjob={"workers": 4, "gpus_per_worker": 4}'`` or ``--arg launcher=local``).
Exit 0 with the run id and URL; 2 when the host is unreachable or the input is bad (one line naming the
host / file); 1 when the server refuses the run.
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGE = REPO / "pipelines" / "faceparse_pipeline.yaml"


class SubmitError(Exception):
    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def check_reachable(host: str, timeout: float = 5.0) -> None:
    """Any HTTP answer from the KFP API's healthz (even 401/403 from an auth proxy) counts as reachable;
    a refused / timed-out connection is a SubmitError naming the host."""
    import requests

    url = host.rstrip("/") + "/apis/v2beta1/healthz"
    try:
        requests.get(url, timeout=timeout)
    except requests.exceptions.RequestException as e:
        reason = type(e).__name__
        if isinstance(e, requests.exceptions.ConnectionError):
            reason = "connection refused or host not found"
        if isinstance(e, requests.exceptions.Timeout):
            reason = f"no answer within {timeout:g} s"
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host} ({reason}); check --host "
                          "(e.g. kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80 → "
                          "--host http://localhost:8080)") from None


def parse_args_kv(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SubmitError(f"--arg {item!r} must look like name=value")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def submit(host: str, package: str | Path = DEFAULT_PACKAGE, experiment: str = "faceparse",
           run_name: str | None = None, pipeline_root: str | None = None, overrides: list[str] | None = None,
           arguments: dict | None = None, namespace: str | None = None, service_account: str | None = None,
           token: str | None = None, timeout: float = 5.0) -> dict:
    package = Path(package)
    if not package.is_file():
        raise SubmitError(f"pipeline package not found: {package} (run python pipelines/compile.py)")
    args = dict(arguments or {})
    if overrides:
        args["overrides"] = list(args.get("overrides") or []) + list(overrides)
    check_reachable(host, timeout)
    import kfp
    from kfp_server_api.exceptions import ApiException

    try:
        client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
        res = client.create_run_from_pipeline_package(
            str(package), arguments=args, run_name=run_name, experiment_name=experiment,
            namespace=namespace, pipeline_root=pipeline_root, service_account=service_account)
    except ApiException as e:
        raise SubmitError(f"Kubeflow Pipelines at {host} refused the run: HTTP {e.status} {e.reason}: "
                          f"{(e.body or '')[:300]}", code=1) from None
    except Exception as e:  # urllib3 MaxRetryError & co: the server went away mid-way
        if "Max retries exceeded" in str(e) or "Connection refused" in str(e):
            raise SubmitError(f"cannot reach Kubeflow Pipelines at {host} ({type(e).__name__})") from None
        raise
    return {"run_id": res.run_id, "url": f"{host.rstrip('/')}/#/runs/details/{res.run_id}",
            "experiment": experiment, "arguments": sorted(args)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Submit the faceparse pipeline to Kubeflow Pipelines")
    ap.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    ap.add_argument("--experiment", default="faceparse")
    ap.add_argument("--run-name", default=None)
    ap.add_argument("--pipeline-root", default=None, help="artifact root, e.g. s3://faceparse/kfp")
    ap.add_argument("--package", default=str(DEFAULT_PACKAGE))
    ap.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="params.yaml override (repeatable)")
    ap.add_argument("--arg", dest="args", action="append", default=[], metavar="NAME=VALUE",
                    help="pipeline parameter (JSON value; repeatable)")
    ap.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user clusters)")
    ap.add_argument("--service-account", default=None, help="e.g. faceparse-pipeline (infra/k8s/rbac.yaml)")
    ap.add_argument("--token", default=None, help="bearer token for an authenticated endpoint")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the host to answer")
    a = ap.parse_args(argv)
    try:
        out = submit(a.host, a.package, a.experiment, a.run_name, a.pipeline_root, a.sets,
                     parse_args_kv(a.args), a.namespace, a.service_account, a.token, a.timeout)
    except SubmitError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""`make mutation`: mutation testing (mutmut 3) of the code where a silent mistake costs users most.

Each target is a module, the functions of it that are mutated, and the fast unit tests (no servers) that
must kill those mutants. To cover another module (Algorithm 1, a stage's metrics, ...) add one line to
``TARGETS``; nothing else needs to change.

The run happens in a scratch copy, ``runs/mutation/work/`` (git-ignored; mutmut writes its own copy, with
the mutants, under ``runs/mutation/work/mutants/``): the working tree, ``pyproject.toml`` and
``src/`` are never touched, so others can keep running tests meanwhile. Every run starts afresh (no cache
of verdicts from a previous run can hide a regression).

Output: one line per module (killed / survived / other, score), the survivors with their diff in
``runs/mutation/survivors.txt``, the JSON summary in ``runs/mutation/summary.json``, mutmut's own log in
``runs/mutation/mutmut.log``, and as the last line ``mutation score: NN.N% (killed/total)``. A mutant
counts as killed when a test fails (or times out: the mutant hangs the code). ``--fail-under P`` exits 1
when the score is below P %.

    python scripts/mutation.py [--module metrics] [--workers 2] [--fail-under 80] [--report-only]
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "runs" / "mutation"
WORK = OUT / "work"


@dataclass(frozen=True)
class Target:
    path: str                   # the module, relative to the repo
    functions: tuple[str, ...]  # "name", "Class.method", "Class.*" or "*" (every function and method)
    tests: tuple[str, ...]      # fast test files that must kill the mutants (each must exist)

    @property
    def module(self) -> str:
        return self.path.removeprefix("src/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")

    @property
    def short(self) -> str:
        return self.module.removeprefix("faceparse.")


# The one list to extend. Functions are scoped to the deciding / encoding code (not process management,
# I/O or logging), so the run stays fast and every mutant is one a unit test can judge.
TARGETS: tuple[Target, ...] = (
    Target("src/faceparse/metrics.py", ("*",),
           ("tests/code/test_metrics.py", "tests/code/test_metrics_units.py")),
    # the request path users call (the canary router): what reaches TorchServe, the split, the shadow request
    # and its agreement, who may read the stats. Async methods too: their unit tests drive the aiohttp app in
    # front of a stand-in TorchServe on loopback (tests/code/test_router_units.py, no JVM)
    Target("src/faceparse/serve/router.py",
           ("percentile", "Stats.*", "Router.route", "Router.predict", "Router.retry", "Router.mirror",
            "Router.valid_keys", "Router.authorised", "upstream_body"),
           ("tests/code/test_router_units.py", "tests/code/test_canary_gates.py")),
    Target("src/faceparse/serve/rollout.py", ("judge", "rollout_params", "agreement_floor", "auto"),
           ("tests/code/test_rollout_units.py", "tests/code/test_canary_gates.py",
            "tests/code/test_router_units.py")),
    # promote's decision, and what register / rollback decide (the metrics a version is tagged with, which
    # version becomes champion again): MlflowClient stood in for by dicts
    Target("src/faceparse/registry.py", ("promote", "_version_by_alias", "_float_tag", "_registry_section",
                                         "_load_metrics", "_tag", "rollback"),
           ("tests/code/test_registry_units.py", "tests/code/test_router_units.py")),
    Target("src/faceparse/stages/__init__.py", ("Stage.better",),   # the promotion's comparison, per stage
           ("tests/code/test_registry_units.py",)),
    Target("src/faceparse/serve/imaging.py",
           ("_text", "parse_options", "payload_bytes", "decode_image", "encode_png", "label_png", "overlay_png",
            "class_fractions", "read_label_png", "mean_iou", "RequestError.body"),
           ("tests/code/test_imaging_units.py", "tests/code/test_canary_gates.py",
            "tests/code/test_router_units.py")),
    Target("src/faceparse/config.py", ("*",),
           ("tests/code/test_config.py", "tests/code/test_config_units.py")),
    Target("src/faceparse/schema.py", ("*",),
           ("tests/code/test_schema_units.py", "tests/code/test_config.py",
            "tests/code/test_config_units.py")),
    # the canary's agreement between two versions' answers. Next: src/faceparse/ibug68.py (the landmark
    # stage's metrics) — 2026-12-01 its tests killed 172/269 mutants (63.9 %): tests to add before it joins
    Target("src/faceparse/serve/codecs.py", ("label_agreement", "points_agreement", "codec_for"),
           ("tests/code/test_codecs.py",)),
    # the served stages' own agreement (what the router's mirror computes for a FISN / 3D canary)
    Target("src/faceparse/stages/fisn/codec.py", ("FisnCodec.agreement",),
           ("tests/code/test_codecs.py", "tests/code/test_router_units.py")),
    Target("src/faceparse/stages/recon3d/codec.py", ("Recon3dCodec.agreement",),
           ("tests/code/test_codecs.py", "tests/code/test_router_units.py")),
)

# Files the selected tests read besides the code (tests/conftest.py's repo_root is the scratch copy).
ALSO_COPY = ("params.yaml", "configs")

# Survivors judged equivalent (no test can tell them apart from the original), keyed by module and the
# mutated line (stripped), so a reason follows its mutant when line or mutant numbers change. They still
# count as not killed in the score; a survivor not listed here is a gap to close with a test.
_F64 = ("float64 instead of float32 arithmetic: identical output at the served alpha 0.5 (exact in both; "
        "checked for all 256x256 photo/colour pairs); other alphas differ by 1 only at exact .5 ties")
_NCLS = "a larger class count only adds classes absent from both maps, which the mean leaves out"
_SIB = "siblings of a non-empty parent have exactly one more dotted part: the last part is the same"
_JSON_F64 = "JSON numbers parse to Python floats (ints are promoted by the norm and the division): float64 anyway"
_HDR = "HTTP header names are case-insensitive (aiohttp's CIMultiDict on both ends)"
_MIRROR_FMT = ("aiohttp's client sets a dict's headers case-insensitively in order, and the mirror format comes last: "
               "a client's x-format (any case) is replaced whether or not the filter drops it")
_MIRROR_LINE = ('h = {**{k: v for k, v in headers.items() if k.lower() != "x-format"}, "X-Format": '
                'codec.mirror_format}')
EQUIVALENT: dict[tuple[str, str], str] = {
    ("src/faceparse/serve/rollout.py", "log = log or (lambda _m: 0)"): "the log callback's return value is unused",
    ("src/faceparse/registry.py", "prev = (cur.tags or {}).get(TAG_PREVIOUS, None)"):
        "no previous-champion tag: None and '' are both falsy, refused alike",
    ("src/faceparse/registry.py", "prev = (cur.tags or {}).get(TAG_PREVIOUS, )"):
        "no previous-champion tag: None and '' are both falsy, refused alike",
    ("src/faceparse/serve/router.py", 'h = request.headers.get("Authorization", "XXXX")'):
        "a missing header's default is no bearer token either way: no token, refused",
    ("src/faceparse/serve/router.py", _MIRROR_LINE.replace("k.lower()", "k.upper()")): _MIRROR_FMT,
    ("src/faceparse/serve/router.py", _MIRROR_LINE.replace('!= "x-format"', '!= "XXx-formatXX"')): _MIRROR_FMT,
    ("src/faceparse/serve/router.py", _MIRROR_LINE.replace('!= "x-format"', '!= "X-FORMAT"')): _MIRROR_FMT,
    ("src/faceparse/serve/router.py", _MIRROR_LINE.replace('"X-Format":', '"x-format":')): _MIRROR_FMT,
    ("src/faceparse/serve/router.py", _MIRROR_LINE.replace('"X-Format":', '"X-FORMAT":')): _MIRROR_FMT,
    ("src/faceparse/serve/router.py", "ms = (time.perf_counter() - t0) * 1001"):
        "0.1 % on a latency: below any timing a test can pin (the gate compares p95 ratios)",
    ("src/faceparse/serve/router.py",
     'resp = web.Response(status=status, body=data, headers={**rh, **({"x-canary-arm": arm} if arm else {})})'): _HDR,
    ("src/faceparse/serve/router.py",
     'resp = web.Response(status=status, body=data, headers={**rh, **({"X-CANARY-ARM": arm} if arm else {})})'): _HDR,
    ("src/faceparse/serve/codecs.py",
     'pa, pb = (np.asarray(json.loads(x)[key], dtype=None) for x in (a, b))'): _JSON_F64,
    ("src/faceparse/serve/codecs.py", 'pa, pb = (np.asarray(json.loads(x)[key], ) for x in (a, b))'): _JSON_F64,
    ("src/faceparse/serve/codecs.py",
     'return max(0.0, 1.0 - float(np.linalg.norm(pa - pb, axis=+1).mean() / inter_ocular(pa)))'):
        "the points are (68, 2): axis +1 and axis -1 are the same axis",
    ("src/faceparse/serve/rollout.py",
     'if agree.get("failed", 1) >= 3 and agree["failed"] > 0.5 * (n_agree + agree["failed"]):'):
        "any default below 3 fails `>= 3`: a missing 'failed' count never trips the gate, 0 or 1",
    ("src/faceparse/registry.py", 'margin = float(reg.get("promote_margin", None) or 0.0)'):
        "a missing promote_margin gives None, and `None or 0.0` is 0.0 as before",
    ("src/faceparse/registry.py", 'margin = float(reg.get("promote_margin", ) or 0.0)'):
        "a missing promote_margin gives None, and `None or 0.0` is 0.0 as before",
    ("src/faceparse/serve/imaging.py", 'return bytes(v).decode("UTF-8").strip()'):
        "codec names are case-insensitive",
    ("src/faceparse/serve/imaging.py", 'Image.fromarray(array).save(buf, "png", compress_level=compress_level)'):
        "PIL's format names are case-insensitive",
    ("src/faceparse/serve/imaging.py",
     "n = int(num_classes or (max(int(a.max(initial=1)), int(b.max(initial=0))) + 1))"): _NCLS,
    ("src/faceparse/serve/imaging.py",
     "n = int(num_classes or (max(int(a.max(initial=0)), int(b.max(initial=1))) + 1))"): _NCLS,
    ("src/faceparse/serve/imaging.py",
     "n = int(num_classes or (max(int(a.max(initial=0)), int(b.max(initial=0))) + 2))"): _NCLS,
    ("src/faceparse/serve/imaging.py", "inter = np.diag(cm).astype(None)"): "astype(None) is astype(float64)",
    ("src/faceparse/serve/imaging.py",
     'rgb = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=None)'): _F64,
    ("src/faceparse/serve/imaging.py",
     'rgb = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), )'): _F64,
    ("src/faceparse/serve/imaging.py", "colours = palette[labels].astype(None)"): _F64,
    ("src/faceparse/serve/imaging.py", "return encode_png(np.clip(out + 0.5, None, 255).astype(np.uint8))"):
        "a blend of 0..255 values with alpha in [0, 1], plus 0.5, is never below 0: the lower bound never acts",
    ("src/faceparse/serve/imaging.py", "return encode_png(np.clip(out + 0.5, 0, None).astype(np.uint8))"):
        "the blend plus 0.5 is at most 255.5, which uint8 truncates to 255: the upper bound never acts",
    ("src/faceparse/serve/imaging.py", "return encode_png(np.clip(out + 0.5, 0, 256).astype(np.uint8))"):
        "the blend plus 0.5 is at most 255.5 < 256, truncated to 255 either way",
    ("src/faceparse/serve/imaging.py", "resolution = int(res, )"): "int() of a str is base 10 already",
    ("src/faceparse/serve/imaging.py", 'fmt = (fmt or "PNG").lower()'): "lower-cased on the same line",
    ("src/faceparse/schema.py",
     "return [siblings[c] for c in difflib.get_close_matches(name, list(siblings), n=2, )]"):
        "0.6 is difflib.get_close_matches' default cutoff",
    ("src/faceparse/schema.py", 'siblings = {c.rsplit(".", )[-1]: c for c in concrete if c.rsplit(".", 1)[0] '
                                '== parent} if parent else \\'): _SIB,
    ("src/faceparse/schema.py", 'siblings = {c.rsplit(".", 2)[-1]: c for c in concrete if c.rsplit(".", 1)[0] '
                                '== parent} if parent else \\'): _SIB,
    ("src/faceparse/schema.py", 'siblings = {c.rsplit(".", 1)[+1]: c for c in concrete if c.rsplit(".", 1)[0] '
                                '== parent} if parent else \\'): _SIB,
}

KILLED = {"killed", "timeout"}


def mutmut_key(module: str, function: str) -> str:
    """A function spec → the fnmatch pattern of its mutants' names as mutmut 3 writes them."""
    if function == "*":
        name = "x*"
    elif "." in function:
        cls, meth = function.split(".", 1)
        name = f"x\u01c1{cls}\u01c1{meth}"
    else:
        name = f"x_{function}"
    return f"{module}.{name}__mutmut_*"


def defined_functions(path: Path) -> set[str]:
    """Top-level functions as "name" and methods as "Class.name" (what the specs may name)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            out |= {f"{node.name}.{m.name}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return out


def resolve_targets(names: list[str] | None) -> list[Target]:
    """The configured targets (or those named); a target whose module, function or test file no longer
    exists, a target without tests, or a name that is no target fails the run, naming it: a renamed test or a
    mistyped ``--module`` must not drop mutants silently."""
    chosen, problems = [], []
    known = {n for t in TARGETS for n in (t.short, t.module)}
    problems += [f"--module {n}: no such target (known: {', '.join(t.short for t in TARGETS)})"
                 for n in names or () if n not in known]
    for t in TARGETS:
        if names and t.short not in names and t.module not in names:
            continue
        src = REPO / t.path
        if not src.is_file():
            problems.append(f"{t.path} does not exist")
            continue
        have = defined_functions(src)
        problems += [f"{t.path} has no function {f!r}" for f in t.functions
                     if not (f == "*" or (f.endswith(".*") and any(h.startswith(f[:-1]) for h in have)) or f in have)]
        problems += [f"{t.path}: test file {x} does not exist" for x in t.tests if not (REPO / x).is_file()]
        if not t.tests:
            problems.append(f"{t.path}: no test files (its mutants would all survive)")
        chosen.append(t)
    if problems:
        raise SystemExit("mutation targets out of date (update TARGETS in scripts/mutation.py):\n  "
                         + "\n  ".join(problems))
    if not chosen:
        raise SystemExit("no mutation targets")
    return chosen


def toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def prepare_work(targets: list[Target]) -> list[str]:
    """The scratch copy: src/, the selected tests + conftest, data files, pyproject.toml + [tool.mutmut]."""
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    shutil.copytree(REPO / "src", WORK / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    tests = sorted({x for t in targets for x in t.tests})
    for rel in ["tests/conftest.py", *tests]:
        (WORK / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, WORK / rel)
    for rel in ALSO_COPY:
        p = REPO / rel
        if p.is_dir():
            shutil.copytree(p, WORK / rel)
        elif p.is_file():
            shutil.copy2(p, WORK / rel)
    pyproject = (REPO / "pyproject.toml").read_text()
    pyproject += "\n\n# written by scripts/mutation.py (scratch copy only)\n[tool.mutmut]\n" + "\n".join([
        'source_paths = ["src"]',
        f"only_mutate = {toml_list(t.path for t in targets)}",
        f"also_copy = {toml_list(ALSO_COPY)}",
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}",
        # no cache dir, no slowest-durations report
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts=--strict-markers"]',
        "use_git_change_detection = false",
        'process_isolation = "fork"',
    ]) + "\n"
    (WORK / "pyproject.toml").write_text(pyproject)
    return tests


def run_mutmut(targets: list[Target], workers: int) -> float:
    mutmut = Path(sys.executable).with_name("mutmut")
    patterns = [mutmut_key(t.module, f) for t in targets for f in t.functions]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "TORCH_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1", "PYTHONPATH": ""}
    env.pop("FACEPARSE_PARAMS", None)
    log = OUT / "mutmut.log"
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.call([str(mutmut), "run", "--max-children", str(workers), *patterns],
                             cwd=WORK, env=env, stdout=f, stderr=subprocess.STDOUT)
    took = time.monotonic() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").strip().splitlines()[-30:]
        print("\n".join(tail))
        raise SystemExit(f"mutmut run failed (exit {rc}); full log: {log.relative_to(REPO)}")
    return took


def first_changed_line(target: Target, function_key: str, diff: str) -> tuple[int | None, str, str]:
    """(line in the original file, original line, mutated line) of a mutant's unified diff."""
    lines = diff.splitlines()
    minus = next((ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")), "")
    plus = next((ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")), "")
    name = function_key.split("\u01c1")[-1] if "\u01c1" in function_key else function_key.removeprefix("x_")
    cls = function_key.split("\u01c1")[1] if "\u01c1" in function_key else None
    src = (WORK / target.path).read_text().splitlines()   # the snapshot that was mutated
    tree = ast.parse("\n".join(src))
    span = None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and cls and node.name == cls:
            for m in node.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == name:
                    span = (m.lineno, m.end_lineno)
        elif cls is None and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name \
                and node in tree.body:
            span = (node.lineno, node.end_lineno)
    if span and minus:
        for i in range(span[0], span[1] + 1):
            if src[i - 1].strip() == minus.strip():
                return i, minus.strip(), plus.strip()
    return (span[0] if span else None), minus.strip(), plus.strip()


def collect(targets: list[Target]) -> tuple[list[dict], list[dict]]:
    """Per-target counts and the not-killed mutants (with diffs), read from mutmut's meta files."""
    os.chdir(WORK)   # mutmut's helpers read mutants/ and pyproject.toml relative to the cwd
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    rows, survivors = [], []
    for t in targets:
        meta = json.loads((WORK / "mutants" / (t.path + ".meta")).read_text())
        pats = [mutmut_key(t.module, f) for f in t.functions]
        codes = {k: v for k, v in meta["exit_code_by_key"].items() if any(fnmatch.fnmatchcase(k, p) for p in pats)}
        status = {k: status_by_exit_code[v] for k, v in codes.items()}
        killed = sum(1 for s in status.values() if s in KILLED)
        survived = sum(1 for s in status.values() if s == "survived")
        rows.append({"module": t.path, "functions": list(t.functions), "total": len(status), "killed": killed,
                     "survived": survived, "other": len(status) - killed - survived,
                     "other_kinds": sorted({s for s in status.values() if s not in KILLED | {"survived"}})})
        for k in sorted(status, key=lambda k: (k.rsplit("__mutmut_", 1)[0], int(k.rsplit("_", 1)[1]))):
            if status[k] in KILLED:
                continue
            diff = get_diff_for_mutant(k, path=t.path)
            fkey = k.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]
            line, old, new = first_changed_line(t, fkey, diff)
            survivors.append({"mutant": k, "status": status[k], "file": t.path, "line": line, "diff": diff,
                              "equivalent": EQUIVALENT.get((t.path, new))})
    os.chdir(REPO)
    return rows, survivors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", help="only this target (e.g. metrics, serve.router); repeatable")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("MUTATION_WORKERS", 2)))
    ap.add_argument("--fail-under", type=float, default=None, help="exit 1 when the score is below this %%")
    ap.add_argument("--report-only", action="store_true",
                    help="no new run: report the last run's results again (e.g. after editing EQUIVALENT)")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    targets = resolve_targets(a.module)
    OUT.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        if not (WORK / "mutants").is_dir():
            raise SystemExit(f"no previous run in {WORK.relative_to(REPO)}")
        took = json.loads((OUT / "summary.json").read_text()).get("mutmut_s", 0.0)
    else:
        tests = prepare_work(targets)
        print(f"mutmut {' '.join(t.short for t in targets)}: {len(tests)} test files, {a.workers} workers, "
              f"scratch {WORK.relative_to(REPO)}", flush=True)
        took = run_mutmut(targets, a.workers)
    rows, survivors = collect(targets)

    with open(OUT / "survivors.txt", "w") as f:
        f.write(f"# {len(survivors)} mutants not killed (scripts/mutation.py, {time.strftime('%Y-%m-%d %H:%M')})\n\n")
        for s in survivors:
            f.write(f"{s['file']}:{s['line']}  {s['status']}  {s['mutant']}\n")
            if s["equivalent"]:
                f.write(f"equivalent: {s['equivalent']}\n")
            f.write(s["diff"].rstrip() + "\n\n")
    killed, total = sum(r["killed"] for r in rows), sum(r["total"] for r in rows)
    score = 100.0 * killed / total if total else 0.0
    (OUT / "summary.json").write_text(json.dumps(
        {"score": round(score, 2), "killed": killed, "total": total, "modules": rows, "mutmut_s": round(took, 1),
         "survivors": [{k: s[k] for k in ("mutant", "status", "file", "line", "equivalent")} for s in survivors]},
        indent=2))

    width = max(len(r["module"]) for r in rows)
    print(f"{'module':<{width}}  {'killed':>6}  {'survived':>8}  {'other':>5}  {'total':>5}  score")
    for r in rows:
        sc = 100.0 * r["killed"] / r["total"] if r["total"] else 0.0
        other = f"{r['other']:>5}" + (f" ({', '.join(r['other_kinds'])})" if r["other"] else "")
        print(f"{r['module']:<{width}}  {r['killed']:>6}  {r['survived']:>8}  {other}  {r['total']:>5}  {sc:5.1f}%")
    n_eq = sum(1 for s in survivors if s["equivalent"])
    print(f"{len(survivors)} not killed ({n_eq} known equivalent): {(OUT / 'survivors.txt').relative_to(REPO)}; "
          f"mutmut {took:.0f} s, total {time.monotonic() - t0:.0f} s")
    print(f"mutation score: {score:.1f}% ({killed}/{total})")
    return 1 if a.fail_under is not None and score < a.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())

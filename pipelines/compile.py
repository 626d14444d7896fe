"""Compile the pipeline to IR YAML: ``python pipelines/compile.py [--out PATH]``.

The committed pipelines/faceparse_pipeline.yaml is this output (tests/code/test_pipeline_compiled.py
fails when it is stale: recompile after changing components/, pipelines/pipeline.py, params.yaml or
faceparse.launch.settings.PYTORCHJOB_DEFAULTS)."""
import argparse
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "pipelines" / "faceparse_pipeline.yaml"


_DEFAULT_COMMENT = re.compile(r"^(#    \w+: (?:dict|list) \[Default: )(.*)(\])$")


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def stable_header(text: str) -> str:
    """Make kfp's header comment valid and stable; the pipeline spec itself is left untouched.

    kfp 2.17 writes the pipeline's input defaults into a comment header above the YAML documents, with two
    flaws: a multi-line string default (params_yaml: the whole params.yaml) continues on lines WITHOUT a
    leading '#', which makes the file invalid YAML; and dict defaults are printed in protobuf map order,
    which changes from run to run. The spec starts at the last top-level ``components:`` line (keys are
    sorted, so it is the first key; nothing in the spec below it starts a line with it)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.rstrip("\n") == "components:"]
    if not starts:
        return text
    head, body = lines[:starts[-1]], lines[starts[-1]:]
    fixed = []
    for line in head:
        if not line.startswith("#"):
            line = "#      " + line if line.strip() else "#\n"
        m = _DEFAULT_COMMENT.match(line.rstrip("\n"))
        if m:
            try:
                line = f"{m.group(1)}{_sorted(ast.literal_eval(m.group(2)))!r}{m.group(3)}\n"
            except (ValueError, SyntaxError):
                pass
        fixed.append(line)
    return "".join(fixed + body)


def compile_pipeline(out: str | Path = DEFAULT_OUT) -> Path:
    from kfp import compiler

    from pipelines.pipeline import faceparse_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=faceparse_pipeline, package_path=str(out))
    out.write_text(stable_header(out.read_text()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"output YAML (default: {DEFAULT_OUT.relative_to(REPO)})")
    a = ap.parse_args(argv)
    print(f"compiled {compile_pipeline(a.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

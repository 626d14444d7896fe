"""dvc.yaml from the registered stages (`faceparse stages dvc`).

The pipeline's shape — prepare, validate, synth3d, compose, complete, the per-stage steps' commands, deps
and outputs, the plots — is dvc_template.yaml beside this module. Its per-stage steps (train, evaluate,
register) hold a ``foreach: STAGES(<step>)`` line: it becomes one entry per registered stage that takes
that step (train: the trainable ones; evaluate, register: all), each from the stage's ``dvc`` declaration
(faceparse.stages.DvcInputs) and its params section. A ``- ${item.params[*]}`` line becomes as many
``${item.params[i]}`` lines as the step's longest list of params keys; shorter lists repeat their last key
(a params key named twice counts once).
"""
from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

from .stages import Stage, get_stage, package_of, stage_names

TEMPLATE = Path(__file__).with_name("dvc_template.yaml")
STEPS = ("train", "evaluate", "register")
_FOREACH = re.compile(r"^(?P<indent> *)foreach: STAGES\((?P<step>\w+)\)\s*(#.*)?$")
_PARAMS = re.compile(r"^(?P<indent> *)- \$\{item\.params\[\*\]\}\s*(#.*)?$")
NOTE_COLUMN = 54   # where an entry's comment starts (when its line leaves room)


def code_dir(stage: Stage, root: Path) -> str:
    """The stage's code: its declared ``dvc.code``, else its package's folder, relative to ``root`` when under it."""
    if stage.dvc.code:
        return stage.dvc.code
    spec = importlib.util.find_spec(package_of(stage.name))
    folder = Path(list(spec.submodule_search_locations)[0]).resolve()
    try:
        return folder.relative_to(root.resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def _prefix(stage: Stage) -> str:
    section = stage.name if stage.dvc.section is None else stage.dvc.section
    return f"{section}." if section else ""


def train_params(stage: Stage) -> list[str]:
    p = _prefix(stage)
    return list(stage.dvc.train.params or (f"{p}model", f"{p}train"))


def evaluate_params(stage: Stage) -> list[str]:
    return list(stage.dvc.evaluate.params or (f"{_prefix(stage)}evaluate",))


def entries(step: str, root: Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``foreach`` of dvc.yaml's ``step``: stage name → its entry, in registration order (params lists as
    declared, not yet padded)."""
    out: dict[str, dict[str, Any]] = {}
    for name in names if names is not None else stage_names():
        st = get_stage(name)
        p, d = _prefix(st), st.dvc
        code = code_dir(st, root)
        if step == "train":
            if not st.info.trainable:
                continue   # composed by a step of the template (compose)
            t = d.train
            out[name] = {"code": code, "data": t.data or code, "model": t.model or code, "lib": t.lib or code,
                         "uses": t.uses or code, "record": t.record or code, "params": train_params(st),
                         "bundle": f"${{{p}train.bundle_dir}}", "run": f"${{{p}train.run_dir}}"}
        elif step == "evaluate":
            e = d.evaluate
            out[name] = {"code": code, "eval": e.eval or code, "lib": e.lib or code, "model": e.model or code,
                         "record": e.record or code, "params": evaluate_params(st), "bundle": f"${{{p}train.bundle_dir}}",
                         "metrics": f"${{{p}evaluate.metrics_file}}", "plots": f"${{{p}evaluate.plots_dir}}",
                         "table": f"${{{p}evaluate.table_file}}"}
        elif step == "register":
            out[name] = {"bundle": f"${{{p}train.bundle_dir}}", "metrics": f"${{{p}evaluate.metrics_file}}",
                         "registry": f"{p}registry"}
        else:
            raise ValueError(f"dvc_template.yaml: unknown per-stage step {step!r} (known: {', '.join(STEPS)})")
    return out


def _scalar(value: Any) -> str:
    """``value`` as a YAML flow scalar / list (quoted only where YAML needs it)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[:-len("...")].strip() if text.endswith("...") else text


def _line(text: str, note: str = "") -> str:
    return f"{text.ljust(NOTE_COLUMN - 2)} # {note}" if note else text


def _foreach(step: str, indent: str, items: dict[str, dict[str, Any]], n_params: int) -> list[str]:
    lines = [f"{indent}foreach:"]
    for name, item in items.items():
        notes = get_stage(name).dvc.notes
        lines.append(_line(f"{indent}  {name}:", notes.get(step, "")))
        for key, value in item.items():
            if key == "params":
                value = value + [value[-1]] * (n_params - len(value))
            lines.append(_line(f"{indent}    {key}: {_scalar(value)}", notes.get(f"{step}.{key}", "")))
    return lines


def generate(root: Path | str = ".", names: list[str] | None = None, template: Path = TEMPLATE) -> str:
    """dvc.yaml's text for the registered stages (``names``: these instead), paths relative to ``root``."""
    root = Path(root)
    per_step = {step: entries(step, root, names) for step in STEPS}
    n_params = {step: max((len(i.get("params", ())) for i in items.values()), default=1)
                for step, items in per_step.items()}
    out, step = [], None
    for line in template.read_text().splitlines():
        if m := _FOREACH.match(line):
            step = m["step"]
            if step not in per_step:
                raise ValueError(f"{template}: STAGES({step}): not a per-stage step ({', '.join(STEPS)})")
            if not per_step[step]:
                raise ValueError(f"no registered stage takes the {step} step: dvc.yaml's foreach would be empty")
            out += _foreach(step, m["indent"], per_step[step], n_params[step])
        elif m := _PARAMS.match(line):
            if step is None:
                raise ValueError(f"{template}: ${{item.params[*]}} before any per-stage step's foreach")
            out += [f"{m['indent']}- ${{item.params[{i}]}}" for i in range(n_params[step])]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def check(path: Path | str = "dvc.yaml", names: list[str] | None = None) -> str | None:
    """None when ``path`` is what the registered stages generate, else why not (with a diff)."""
    path = Path(path)
    want = generate(path.parent, names)
    have = path.read_text() if path.is_file() else ""
    if have == want:
        return None
    diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), f"{path} (committed)",
                                     f"{path} (generated)", lineterm="", n=1))
    shown = "\n".join(diff[:60]) + (f"\n… {len(diff) - 60} more diff lines" if len(diff) > 60 else "")
    return (f"{path} differs from what the registered stages generate (their `dvc` declarations and "
            f"{TEMPLATE.name}): run `faceparse stages dvc --write`\n{shown}")

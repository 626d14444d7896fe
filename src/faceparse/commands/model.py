"""`faceparse stages` (list; `dvc`: dvc.yaml from them; `summary`: their test evaluations), `faceparse model-report`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..config import load_params, model_config
from ..dvcgen import check as check_dvc_yaml, generate as generate_dvc_yaml
from ..stages import describe, get_stage, headline_of, stage_names
from .common import ParamsOpt, SetOpt, StageOpt, console, emit_json, friendly_errors, params_from

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)


def register(app: typer.Typer) -> None:
    stages_app = typer.Typer(invoke_without_command=True, pretty_exceptions_show_locals=False)
    app.add_typer(stages_app, name="stages")

    @stages_app.callback()
    def stages_cmd(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="print JSON only"),
                   names: bool = typer.Option(False, "--names", help="print the names only, one a line, in "
                                                                     "registration order (the pipeline's)")):
        """The model stages on the one path (data → train → evaluate → register → serve): name, what it
        does, the metric promotion compares and its direction. `dvc`: dvc.yaml from them; `summary`: their
        test evaluations, one line each."""
        if ctx.invoked_subcommand is not None:
            return
        if names:
            typer.echo("\n".join(stage_names()))
            return
        rows = describe()
        if json_out:
            emit_json(rows)
            return
        t = Table(title="model stages")
        for col in ("name", "summary", "primary metric", "better", "trainable", "registry name"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["name"], r["summary"], r["primary_metric"], "higher" if r["direction"] == "max" else "lower",
                      "yes" if r["trainable"] else "no", r["model_name"])
        console.print(t)

    @stages_app.command("dvc")
    @friendly_errors
    def stages_dvc_cmd(write: bool = typer.Option(False, "--write", help="write the file (default: print it)"),
                       check: bool = typer.Option(False, "--check", help="exit 1 when the file is not what the "
                                                                         "registered stages generate"),
                       file: Path = typer.Option(Path("dvc.yaml"), "--file", "-f",
                                                 help="the dvc.yaml (its folder is the root paths are relative to)")):
        """dvc.yaml from the registered stages: the train / evaluate / register `foreach` lists from each
        stage's `dvc` declaration (faceparse.stages.DvcInputs), the rest from src/faceparse/dvc_template.yaml."""
        if write and check:
            raise ValueError("--write or --check, not both")
        if check:
            problem = check_dvc_yaml(file)
            if problem:
                sys.stderr.write(problem + "\n")
                raise typer.Exit(1)
            console.print(f"{file} is what the registered stages ({', '.join(stage_names())}) generate")
            return
        text = generate_dvc_yaml(file.parent)
        if not write:
            sys.stdout.write(text)
            return
        file.write_text(text)
        console.print(f"[green]wrote[/] {file} ({', '.join(stage_names())})")

    @stages_app.command("summary")
    @friendly_errors
    def stages_summary_cmd(params: Optional[Path] = ParamsOpt, set_: Optional[List[str]] = SetOpt):
        """One line per stage of its test evaluation (its evaluate.metrics_file), in registration order."""
        raw = load_params(params, set_ or [])
        for name in stage_names():
            typer.echo(headline_of(raw, name))

    @app.command("model-report")
    @friendly_errors
    def model_report_cmd(
        preset: Optional[str] = typer.Option(None, help="model preset (default: model.preset in params)"),
        classes: Optional[int] = typer.Option(None, help="number of classes (default: the data.label_table's)"),
        sizes: str = typer.Option("64,96,128,192,256,512", help="output resolutions, comma-separated"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        params: Optional[Path] = ParamsOpt,
        set_: Optional[List[str]] = SetOpt,
        stage: Optional[str] = StageOpt,
    ):
        """Parameters and MACs (counted by torch's FLOP counter) per output size, beside the paper's
        Table 4/6 figures (parser); params and GMACs at the input size for other stages."""
        from ..labels import get_table
        from ..report import model_report, paper_comparison

        p = params_from(params, (set_ or []) + ([f"model.preset={preset}"] if preset else []), stage)
        if p["stage"] != "parser":
            st = get_stage(p["stage"])
            emit_json(st.model_report(st.model_config(p), int(p["train"].get("input_size", 256))))
            return
        n = classes or get_table(p["data"]["label_table"]).num_classes
        rep = model_report(model_config(p), n, [int(s) for s in sizes.split(",")])
        if json_out:
            emit_json({"params": rep["params"], "gmacs": rep["gmacs"], "gmacs_factorized": rep["gmacs_factorized"]})
            return
        t = Table(title=f"FP-LIIF preset={model_config(p)['preset']} classes={n} (256² input)")
        for col in ("what", "ours", "executed", "paper", "Δ %"):
            t.add_column(col, justify="right")
        for r in paper_comparison(rep):
            t.add_row(r["what"], f"{r['ours']:.3f}", "" if "runs" not in r else f"{r['runs']:.3f}",
                      "—" if r["paper"] is None else f"{r['paper']:.2f}",
                      "—" if r["delta_pct"] is None else f"{r['delta_pct']:+.2f}")
        console.print(t)
        console.print("'ours' counts the paper's formulation; 'executed' the factorised first query layer "
                      "this implementation runs (same function, fewer MACs).")

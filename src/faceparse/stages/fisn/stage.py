"""The FISN stage's adapter: model, data, GAN training hooks, evaluation and reports on the one path."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ...bundle import WEIGHTS, load_bundle, read_meta
from ...defaults import fill_defaults
from ...hashing import sha256_file
from ...labels import get_table
from ...losses_gan import PerceptualLoss, perceptual_network
from ...occluders import KINDS, pasted_cases
from ...photo_eval import labelled_photos
from ...registry import resolve_bundle
from ...tracking import tracking_uri
from ...training.loop import to_device
from .. import (
    DvcInputs,
    EvaluateInputs,
    Floor,
    Info,
    KfpWiring,
    Stage,
    TrainInputs,
    bundle_input_size,
    bundle_stage,
    figure,
    get_stage,
    plots_dir,
)
from .model import BETAS, FisnModel, GanStep, RegionPSNR, adversarial, image_terms, to_uint8
from .network import PRESETS, MultiscaleDiscriminator, build_generator, build_occlusion, network_report
from .params import FisnLoss, FisnModel as FisnModelSection
from .photo import Deoccluder, load_chain

# Imports inside functions here: loading a bundle (a served worker, `faceparse.load`) needs none of the evaluation's
# or the training data's libraries (tests/code/test_light_imports.py)


class FisnStage(Stage):
    info = Info("fisn", "FISN de-occlusion GAN guided by the completed map (its bundle carries the completion "
                "model: the whole chain)", "psnr_out", "max",
                model_name="faceparse-fisn", outputs="de-occluded face PNG | raw generator output PNG | occlusion mask PNG",
                metric_label="PSNR (dB) inside the occluded region", verb="deocclude")
    row_metrics = ("psnr_out", "psnr_input")
    meta_keys = ("num_classes", "label_table")
    floor = Floor("psnr_input", "plus", 2.0)          # 2 dB over the occluded photo as it is
    baseline_metrics = ("psnr_input", "psnr_inpaint", "ssim_out", "ssim_input", "ssim_inpaint", "parser_miou")
    dvc = DvcInputs(train=TrainInputs(data="src/faceparse/pretrained/fisn", model="src/faceparse/models",
                                      lib="src/faceparse/losses_gan.py", uses="${fisn.carry.completion}",
                                      record="${fisn.carry.registered_file}",
                                      params=("fisn.model", "fisn.loss", "fisn.train", "fisn.carry")),
                    evaluate=EvaluateInputs(eval="src/faceparse/stages/fisn/evaluate.py",
                                            lib="src/faceparse/stages/fisn/dataset.py", model="src/faceparse/models"),
                    notes={"train": "the generator; its bundle carries the completion model",
                           "train.data": "train.init: the shipped weights it fine-tunes",
                           "train.model": "FISN + the carried parser / landmark networks",
                           "train.uses": "carried; its parser's encoder = the perceptual network",
                           "train.record": "the carried completion's registry version",
                           "evaluate": "truth maps by default; the carried parser scores parser_miou"})
    # gated on the PSNR gain over the occluded input as it is (psnr_out − psnr_input, dB); trained carrying the
    # composed completion model (whether or not it passed its own gate, as in dvc.yaml)
    kfp = KfpWiring(gate="min_fisn_psnr_gain", gate_metric="psnr_gain_db", carries="completion")

    # --- model ---------------------------------------------------------------------------------------
    def model_config(self, params) -> dict[str, Any]:
        m = fill_defaults(FisnModelSection, params.get("model"))
        name = str(m.get("preset") or "tiny")
        if name not in PRESETS:
            raise ValueError(f"unknown FISN preset {name!r}; known: {sorted(PRESETS)} (fisn.model.preset)")
        over = dict(m.get("overrides") or {})
        unknown = set(over) - {"generator", "discriminator"}
        if unknown:
            raise ValueError(f"fisn.model.overrides: unknown sections {sorted(unknown)} (generator, discriminator)")
        return {"preset": name, "generator": {**PRESETS[name]["generator"], **(over.get("generator") or {})},
                "discriminator": {**PRESETS[name]["discriminator"], **(over.get("discriminator") or {})},
                "occlusion": PRESETS[name].get("occlusion"), "erase_occluded": bool(m["erase_occluded"])}

    def data_meta(self, info, params, frames=None) -> dict[str, Any]:
        """num_classes / label_table (CelebAMask-HQ: the maps' face classes), the carried completion model
        (its meta and where it came from) and the perceptual network."""
        table = get_table(str(info.get("label_table") or "celebamask-hq"))
        if table.name != "celebamask-hq":
            raise ValueError(f"the de-occlusion generator is guided by CelebAMask-HQ maps; the dataset uses {table.name!r}")
        meta: dict[str, Any] = {"num_classes": table.num_classes, "label_table": table.name,
                                "train_mode": str((params.get("train") or {}).get("mode") or "supervised")}
        carried = carried_completion(params)
        if carried is not None:
            meta["completion"], meta["carries"] = carried[1], {"completion": carried[2]}
        meta["perceptual"] = perceptual_source(params, meta)
        return meta

    def build_model(self, meta) -> FisnModel:
        cfg, n = meta["model_config"], int(meta["num_classes"])
        gen = build_generator(n, cfg["generator"])
        disc = MultiscaleDiscriminator(n, **cfg["discriminator"])
        comp = None
        if meta.get("completion"):
            comp = get_stage("completion").build_model(meta["completion"])
        model = FisnModel(gen, disc, comp, erase=bool(cfg.get("erase_occluded", False)),
                          occlusion=build_occlusion(cfg.get("occlusion")))
        # what running the chain needs besides weights (serving's warm-up sees the model only)
        model.chain_info = {"input_size": bundle_input_size(meta), "completion": None if comp is None else
                            {"model_config": meta["completion"]["model_config"],
                             "input_size": bundle_input_size(meta["completion"])}}
        return model

    def model_report(self, mcfg, input_size: int) -> dict[str, Any]:
        return {k: {"params": v["params"], "gmacs": {str(input_size): v["gmacs"]}}
                for k, v in network_report(mcfg, input_size).items()}

    def report(self, meta, input_size: int) -> dict[str, Any]:
        rep = self.model_report(meta["model_config"], input_size)
        return {"report.params": rep["generator"]["params"], f"report.gmacs_{input_size}": rep["generator"]["gmacs"][str(input_size)],
                "report.discriminator_params": rep["discriminator"]["params"],
                f"report.discriminator_gmacs_{input_size}": rep["discriminator"]["gmacs"][str(input_size)],
                "report.occlusion_params": rep.get("occlusion", {}).get("params"),
                "report.perceptual": meta.get("perceptual"),
                "report.carries_completion": (meta.get("carries") or {}).get("completion", {}).get("model_uri")
                or (meta.get("carries") or {}).get("completion", {}).get("ref")}

    def load_initial(self, model, state) -> None:
        """Generator, discriminator and occlusion head from ``state``; the carried completion model comes from
        ``fisn.carry`` (prepare), whatever the initial bundle carried."""
        own = {k: v for k, v in state.items() if not k.startswith("completion.")}
        missing, unexpected = model.load_state_dict(own, strict=False)
        missing = [k for k in missing if not k.startswith("completion.")]
        if missing or unexpected:
            raise RuntimeError(f"Error(s) in loading state_dict: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def run_name(self, mcfg) -> str:
        return f"train-fisn-{mcfg['preset']}"

    # --- training ------------------------------------------------------------------------------------
    def datasets(self, params, frames, meta, cfg):
        from .dataset import FisnDataset

        root = Path(str(params["data"]["dir"])).resolve()
        t = params["train"]
        mode = str(t.get("mode") or "supervised")
        train = FisnDataset(frames["train"], root, cfg.input_size, mode=mode, seed=cfg.seed,
                            occluded_only=bool(t["occluded_only"]))
        if len(train) == 0:
            raise ValueError(f"{root}: no occluded training face (clean/<id>.jpg) for fisn.train.occluded_only")
        val = FisnDataset(frames["val"], root, cfg.input_size, mode="supervised", occluded_only=True)
        if mode == "supervised" and not (root / "clean").is_dir():
            raise ValueError(f"{root}: fisn.train.mode=supervised needs clean/ (the synthetic data writes it); "
                             "use mode=paper on data without occlusion ground truth")
        return train, val

    def optimizers(self, model, cfg) -> dict[str, torch.optim.Optimizer]:
        own = [*model.generator.parameters(), *(model.occlusion.parameters() if model.occlusion is not None else ())]
        return {"G": torch.optim.Adam(own, lr=cfg.lr, betas=BETAS),
                "D": torch.optim.Adam(model.discriminator.parameters(), lr=cfg.lr, betas=BETAS)}

    def schedulers(self, optimizers, cfg) -> dict[str, Any]:
        return {k: torch.optim.lr_scheduler.StepLR(o, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
                for k, o in optimizers.items()}

    def step_module(self, model, dd=None):
        return GanStep(model.generator, model.discriminator, model.erase, model.occlusion)

    def prepare(self, ctx) -> None:
        """The carried completion model's weights, the perceptual network and the loss weights."""
        if ctx.model.completion is not None:
            load_carried(ctx.model, ctx.params)
        loss = fill_defaults(FisnLoss, ctx.params.get("loss"))
        if not image_terms(loss) and ctx.model.occlusion is None:
            raise ValueError("fisn.loss: every image term (w_gan, w_fm, w_per, w_l1, w_hole) is 0 and the preset has "
                             "no occlusion head: nothing would learn")
        net = perceptual_network_for(str(loss["perceptual"]), ctx.model, ctx.params)
        ctx.state["perceptual"] = PerceptualLoss(net).to(ctx.dd.device)
        ctx.state["weights"] = {k: float(v) for k, v in loss.items() if k.startswith("w_")}
        ctx.state["tally"] = {}

    def train_step(self, ctx, batch) -> torch.Tensor:
        dev = ctx.dd.device
        image, real = to_device(batch["image"], dev), to_device(batch["real"], dev)
        source = batch["source"].to(dev, non_blocking=True)
        target = batch["target"].to(dev, non_blocking=True)
        occluder = batch["occluder"].to(dev, non_blocking=True) if ctx.model.occlusion is not None else None
        d_loss = None
        if adversarial(ctx.state["weights"]):
            with ctx.autocast():
                d_loss, _ = ctx.step_module("D", image, source, target, real, zero_unused=ctx.dd.world_size > 1,
                                            occluder=occluder)
            ctx.step(d_loss.float(), "D")
        with ctx.autocast():
            g_loss, parts = ctx.step_module("G", image, source, target, real, perceptual=ctx.state["perceptual"],
                                            weights=ctx.state["weights"], occluder=occluder,
                                            zero_unused=ctx.dd.world_size > 1,
                                            region=batch["region"].to(dev, non_blocking=True) if "region" in batch else None)
        loss = ctx.step(g_loss.float(), "G")
        ctx.tally({**({"d_loss": d_loss.detach()} if d_loss is not None else {}),
                   **{f"g_{k}": v for k, v in parts.items()}})
        return loss

    def evaluator(self, meta, cfg):
        return RegionPSNR()

    def headline(self, m: dict[str, Any]) -> str:
        def f(k):
            return figure(m, k, 2)

        return (f"de-occlusion: PSNR inside the occluded face region {f('psnr_out')} dB (occluded input "
                f"{f('psnr_input')}, cv2.inpaint {f('psnr_inpaint')}); SSIM {f('ssim_out')} (input {f('ssim_input')}, "
                f"inpaint {f('ssim_inpaint')})  ({m['n_occluded_images']} occluded test faces)")

    def describe(self, val: dict[str, Any]) -> str:
        return (f"val PSNR in the occluded region {val['psnr_out']:.2f} dB (input {val['psnr_input']:.2f} dB, "
                f"{val['n_occluded_images']} faces)")

    @torch.no_grad()
    def final_artifacts(self, ctx, model, val, evaluator, val_ds, out) -> dict[str, float]:
        """val_fisn.png (input | target map | output | clean, first validation faces); the loss parts'
        means over the run's steps (this process's, since its start or resume) to log."""
        from .evaluate import contact_sheet

        model.eval()
        rows = []
        for i in range(min(4, len(val_ds))):
            item, raw = val_ds[i], val_ds.raw(i)
            with ctx.autocast():
                o = model(item["image"][None].to(ctx.dd.device), item["source"][None].to(ctx.dd.device),
                          item["target"][None].to(ctx.dd.device))
            rows.append({"input": raw["image"], "map": raw["complete"], "output": to_uint8(o.float().cpu())[0],
                         "clean": raw["clean"], "title": val_ds.ids[i]})
        if rows:
            contact_sheet(rows, out / "val_fisn.png")
        return ctx.tally_means("train_mean_")

    # --- evaluation on a split ----------------------------------------------------------------------
    def evaluate_split(self, model, meta, frame, data_dir, params, progress):
        from .evaluate import evaluate_fisn

        return evaluate_fisn(model, meta, frame, Path(data_dir), params, progress)

    def open(self, net, meta, source):
        return Deoccluder(net, meta, source)

    def photo_benchmark(self, ref, folder, detect, params):
        """Real labelled photos with occluders pasted at known masks (``pasted``): PSNR / SSIM inside the
        occluder's face part for the input, the chain, cv2.inpaint on the chain's mask and on the true one; the
        sheet (occluded | mask | de-occluded | inpaint | as it was) in evaluate.plots_dir/photos_pasted.png."""
        from .pasted import markdown, score_chain, sheet

        chain, versions = load_chain(params, ref)
        cases = pasted_cases(labelled_photos(folder))
        res, answers = score_chain(chain, cases, detect)
        res["sheet"] = str(sheet(cases, answers, plots_dir(params["evaluate"]) / "photos_pasted.png"))
        line = (f"de-occluded {res['n_cases']} pasted occluders on {len(cases) // len(KINDS)} photos in {folder}: "
                f"PSNR {res['psnr_out']:.2f} dB (input {res['psnr_input']:.2f}, cv2.inpaint on the same mask "
                f"{res['psnr_inpaint']:.2f}, on the true mask {res['psnr_inpaint_true_mask']:.2f}); mask IoU "
                f"{res['mask_iou']:.2f}")
        return markdown(res), line, {"models": versions, **res}

    def write_reports(self, result, extras, params) -> list[Path]:
        from .evaluate import write_fisn_reports

        return write_fisn_reports(result, extras, params)


# --------------------------------------------------------------------------- the carried completion model
def carried_completion(params) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(bundle dir, its meta, provenance) of ``fisn.carry.completion``, or None when it is null.
    Provenance: the reference, the weights' sha256 and the registry version (``models:/`` URIs say it;
    a bundle dir gets the version ``fisn.carry.registered_file`` records for the same weights)."""
    carry = dict(params.get("carry") or {})
    ref = carry.get("completion")
    if not ref:
        return None
    ref = str(ref)
    bdir, info = resolve_bundle(ref, tracking_uri=tracking_uri(params) if ref.startswith(("models:/", "runs:/")) else None)
    meta = read_meta(bdir)
    if meta.get("stage") != "completion":
        raise ValueError(f"fisn.carry.completion: {ref} is a {meta.get('stage', 'parser')!r} bundle, not a "
                         "completion one (`faceparse compose --stage completion` makes it)")
    sha = sha256_file(Path(bdir) / WEIGHTS)
    prov = {"ref": ref, "bundle_sha256": sha, "model_uri": info.get("uri") if info.get("version") else None}
    reg = Path(str(carry.get("registered_file") or ""))
    if prov["model_uri"] is None and str(reg) not in ("", ".") and reg.is_file():
        rec = json.loads(reg.read_text())
        if rec.get("bundle_sha256") == sha:
            prov["model_uri"] = rec.get("uri")
    prov["composes"] = meta.get("composes")
    return str(bdir), {k: v for k, v in meta.items() if k not in ("mlflow_run_id", "metrics")}, prov


def load_carried(model: FisnModel, params) -> None:
    """Copy the carried completion bundle's weights into ``model.completion`` (the same bundle data_meta read)."""
    carried = carried_completion(params)
    if carried is None:
        raise ValueError("the model carries a completion model but fisn.carry.completion is null")
    state = torch.load(Path(carried[0]) / "weights.pt", map_location="cpu", weights_only=True)
    model.completion.load_state_dict(state)


def perceptual_source(params, meta) -> str:
    """What ``fisn.loss.perceptual`` names, resolved to something a reader can find again."""
    spec = str(fill_defaults(FisnLoss, params.get("loss"))["perceptual"])
    kind, _, ref = spec.partition(":")
    if kind == "vgg19":
        if not ref:
            raise ValueError("fisn.loss.perceptual: vgg19 needs a weights file (vgg19:PATH); nothing is downloaded")

        return f"vgg19:{ref} (sha256 {sha256_file(ref)[:12]})" if Path(ref).is_file() else f"vgg19:{ref}"
    if kind != "parser":
        raise ValueError(f"fisn.loss.perceptual must be parser, parser:REF or vgg19:PATH, got {spec!r}")
    if ref:
        return f"parser encoder: {ref}"
    carries = (meta.get("carries") or {}).get("completion")
    if carries is None:
        raise ValueError("fisn.loss.perceptual: parser uses the parser of the carried completion model, but "
                         "fisn.carry.completion is null: name a parser (parser:REF) or VGG-19 weights (vgg19:PATH)")
    parser = (carries.get("composes") or {}).get("parser") or {}
    return f"parser encoder: {parser.get('model_uri') or parser.get('ref')} (carried in {carries.get('model_uri') or carries['ref']})"


def perceptual_network_for(spec: str, model: FisnModel, params):
    kind, _, ref = spec.partition(":")
    if kind != "parser":
        return perceptual_network(spec)
    if not ref:
        return perceptual_network("parser", model.completion.parser)

    bdir, _ = resolve_bundle(ref, tracking_uri=tracking_uri(params) if ref.startswith(("models:/", "runs:/")) else None)
    parser, meta = load_bundle(bdir)
    if bundle_stage(meta) != "parser":
        raise ValueError(f"fisn.loss.perceptual: {ref} is a {meta.get('stage')!r} model, not a parser")
    return perceptual_network("parser", parser)


STAGE = FisnStage()

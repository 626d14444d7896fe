#!/usr/bin/env bash
# The main job (`make run`): the whole DVC pipeline on the embedded synthetic dataset, then promotion,
# a prediction, packaging, a local TorchServe endpoint queried once with a real photo, and shutdown
# (left running with KEEP_SERVING=1). Every step is one `faceparse` command; settings from params.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1

step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

# A real photo for the demo query: the shared CelebAMask-HQ sample when present, else a synthetic face.
photo=../shared/fixtures/celebamask-hq-samples/0.jpg
model_name=$(python -c 'from faceparse.config import load_params; print(load_params()["registry"]["model_name"])')

step "dvc repro: prepare → validate → train → evaluate → register"
dvc repro

step "promote the challenger if it beats the champion"
faceparse promote

if [ ! -f "$photo" ]; then photo=$(ls data/processed/images/*.jpg | head -n 1); fi
step "predict one image with models:/$model_name@champion"
faceparse predict --model "models:/$model_name@champion" "$photo" --out runs/demo/predict

step "package the champion, serve it, query it once"
faceparse serve demo --model "models:/$model_name@champion" --image "$photo" --out runs/demo/served_overlay.png

step "done"
python - <<'PY'
import json
m = json.load(open("metrics/eval.json"))
print(f"test mean F1 {m['mean_f1']:.4f}  mIoU {m['miou']:.4f}  ({m['n_images']} test images)")
PY
echo "prediction: runs/demo/predict/   served overlay: runs/demo/served_overlay.png"

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
# the registered model stages (faceparse.stages, in pipeline order), comma-separated as --stage takes them
stages=$(faceparse stages --names | paste -sd, -)
# per registered stage: its name, its photo command (`faceparse COMMAND PHOTO`) and its registry model name,
# read once (one Python start instead of one per stage)
stage_table=$(python -c "from faceparse.config import load_params; from faceparse.stages import for_stage, get_stage, stage_names; \
p = load_params(); print('\n'.join(f'{s}\t{get_stage(s).info.verb or \"predict\"}\t{for_stage(p, s)[\"registry\"][\"model_name\"]}' \
for s in stage_names()))")
first=$(head -n 1 <<<"$stage_table" | cut -f 3)   # the first stage's model (the parser's): served and queried

step "dvc repro: prepare → validate → per model stage ($stages): its own data where it has some, then
train (or compose) → evaluate → register (dvc.yaml, generated from the registered stages)"
dvc repro

step "promote each stage's challenger ($stages) if it beats the champion"
faceparse promote --stage "$stages"

# a synthetic face is an aligned crop with nothing for the photo face detector: parsed whole (--no-detect)
nodetect=""
if [ ! -f "$photo" ]; then photo=$(ls data/processed/images/*.jpg | head -n 1); nodetect="--no-detect"; fi
# an occluded synthetic test face (one with a clean render): the de-occlusion demo's second input
occluded=$(python -c "import pandas as pd, pathlib; d = pathlib.Path('data/processed'); \
m = pd.read_parquet(d / 'manifest.parquet'); \
print(next((d / r.image for r in m.itertuples() if r.split == 'test' and (d / 'clean' / f'{r.id}.jpg').is_file()), ''))")

# The demos are independent and mostly process start-up and model loading (single-threaded): they run side
# by side, one torch thread each (spinning OpenMP threads of two processes would fight over the 2 cores),
# each logging to runs/demo/logs/NAME.log, printed in order once all have finished.
mkdir -p runs/demo/logs
demos=() pids=()
demo() { local name=$1; shift; demos+=("$name"); OMP_NUM_THREADS=1 "$@" > "runs/demo/logs/$name.log" 2>&1 & pids+=($!); }
step "package the champion of the first stage ($first), serve it, query it once; beside it each stage's photo command \
with its models:/NAME@champion ($stages), each writing runs/demo/STAGE/"
demo serve faceparse serve demo --model "models:/$first@champion" $nodetect --image "$photo" --out runs/demo/served_overlay.png
while IFS=$'\t' read -r stage command name; do
  demo "$stage" faceparse "$command" --model "models:/$name@champion" $nodetect "$photo" --out "runs/demo/$stage" --quiet
done <<<"$stage_table"
# a de-occluder, when one is registered, also on an occluded synthetic test face: an aligned crop, taken whole
deoccluder=$(awk -F'\t' '$2 == "deocclude" {print $3; exit}' <<<"$stage_table")
[ -z "$occluded" ] || [ -z "$deoccluder" ] || demo deocclude-synthetic faceparse deocclude \
  --model "models:/$deoccluder@champion" --no-detect "$occluded" --out runs/demo/deocclude-synthetic --quiet
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${demos[$i]}")
  printf '\n\033[1m-- %s\033[0m\n' "${demos[$i]}"; cat "runs/demo/logs/${demos[$i]}.log"
done
if [ ${#failed[@]} -gt 0 ]; then
  # the failed logs' tails once more, last: a CI log that keeps only its end still shows why
  for name in "${failed[@]}"; do printf '\n\033[1;31m-- %s failed; its last lines:\033[0m\n' "$name" >&2
    tail -n 40 "runs/demo/logs/$name.log" >&2; done
  echo "demo(s) failed: ${failed[*]} (logs: runs/demo/logs/)" >&2; exit 1
fi

step "done"
faceparse stages summary   # one line per stage: its test evaluation (Stage.headline)
echo "each stage's answer for the photo: runs/demo/{${stages}}/   served overlay: runs/demo/served_overlay.png"

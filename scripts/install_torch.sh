#!/usr/bin/env bash
# Install the CPU build of torch pinned in requirements.lock (torch==X+cpu) into a venv, before the rest of
# the lock. PyPI has no "+cpu" builds: they come from PyTorch's CPU wheel index ($TORCH_INDEX). A local
# wheel directory (pip's find-links, as on an offline machine) is tried first, so nothing is downloaded when
# one holds the wheel. Usage: scripts/install_torch.sh VENV_PYTHON [extra pip args]
set -euo pipefail
py=${1:?usage: install_torch.sh VENV_PYTHON [pip args...]}
shift
cd "$(dirname "$0")/.."
spec=$(grep -E '^torch==' requirements.lock)
index=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
if "$py" -m pip install --no-deps --no-index "$spec" "$@" 2>/dev/null; then
  exit 0
fi
echo "install_torch: no local wheel for $spec; installing it from $index" >&2
exec "$py" -m pip install --no-deps --index-url "$index" "$spec" "$@"

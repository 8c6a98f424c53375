#!/usr/bin/env bash
# Creates (or brings up to date) the Python virtual environment of the benchmark peers in
# bench/.venv, with the versions pinned in bench/requirements.txt and bench/requirements.lock.
#
#   bash bench/setup.sh            # idempotent: a second run with unchanged pins does nothing
#   PYTHON=python3.11 bash bench/setup.sh
#
# Needs Python 3.11+ with venv and pip, and PyPI reachable. About 6.5 GB on disk: PyPI's Linux
# torch wheel is the CUDA build (PyPI cannot hold "+cpu" local versions), which pulls the NVIDIA
# libraries; it runs on the CPU all the same.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.whet-bench-stamp"

want="$(cat "$here/requirements.txt" "$here/requirements.lock" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    echo "setup: $venv is up to date"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup: creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi
# The lock pins every transitive dependency; requirements.txt names what the harness imports.
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -r "$here/requirements.txt" -c "$here/requirements.lock"
"$venv/bin/python" - <<'EOF'
import albumentations, cv2, matplotlib, numpy, pandas, PIL, polars, pyarrow, sklearn, threadpoolctl, torch, torchvision
print("setup: imports ok: torch", torch.__version__, "numpy", numpy.__version__, "opencv", cv2.__version__)
EOF
echo "$want" > "$stamp"
echo "setup: done ($(du -sh "$venv" | cut -f1))"

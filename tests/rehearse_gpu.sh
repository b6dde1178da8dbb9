#!/usr/bin/env bash
# Rehearses the GPU reproduction on the CPU, end to end, before any GPU time is spent:
#   a Python holding only what the GPU image holds (torch & co, none of the notebook stack),
#   the offline bundle installed from its folder alone, `reproduce` at smoke size in calls of
#   REHEARSE_LIMIT seconds (each continues the last), then `report --from` back home.
# Usage: tests/rehearse_gpu.sh            (from the repository root; ../shared as in CI)
#   GPU_VENV=DIR   reuse a venv that already holds the image's packages (installing torch takes minutes)
#   PYTHON=python3.12  the faithful rehearsal (pip then fetches a large torch build); default python3.11
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
py=${PYTHON:-python3.11}
ver=$($py -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
work=${REHEARSE_DIR:-$(mktemp -d /tmp/rehearse.XXXX)}
zip=../shared/data/img_align_celeba_halfres_10k.zip
weights=../shared/weights/fid_inception_v3_pool3_fp16.pth
mkdir -p "$work"
echo "[rehearse] in $work with Python $ver"

venv=${GPU_VENV:-$work/venv}
if [ ! -x "$venv/bin/python" ]; then
  $py -m venv "$venv"
  "$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 h5py numpy scipy pillow matplotlib tqdm torchmetrics
fi
if "$venv/bin/python" -c "import papermill" 2>/dev/null; then
  echo "[rehearse] $venv has papermill: not a rehearsal of a bare GPU image"; exit 1
fi

t0=$(date +%s)
.venv/bin/python -m labkit bundle "$work/bundle" --python "$ver" --zip "$zip"
.venv/bin/python -m labkit bundle "$work/bundle312" --python 3.12 >/dev/null
echo "[rehearse] packages only in the $ver bundle (<) or only in the 3.12 one (>), by environment markers:"
diff <(ls "$work/bundle/wheels" | cut -d- -f1 | sort) <(ls "$work/bundle312/wheels" | cut -d- -f1 | sort) || true
du -sh "$work/bundle"

# The GPU side: the bundle's own install line, then the one command, called until it is done.
"$venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$work"/bundle/wheels/*.whl
export PYTHONPATH="$work/site:$repo" LABKIT_DATA= LABKIT_INCEPTION=$(realpath "$weights")
"$venv/bin/python" -c "import papermill, nbconvert, ipykernel, ipywidgets, torch_fidelity, labkit.report"
calls=0
until "$venv/bin/python" -m labkit reproduce --out "$work/out" --data "$work/bundle/$(basename $zip)" \
      --work "$work/gpu" --profile smoke --time-limit "${REHEARSE_LIMIT:-40}"; do
  [ $? -eq 3 ] || { echo "[rehearse] reproduce failed"; exit 1; }
  calls=$((calls + 1)); [ $calls -lt 30 ] || { echo "[rehearse] no end in sight"; exit 1; }
done
ls -l "$work/out"
unset PYTHONPATH

# Back home: the report from what came back.
.venv/bin/python -m labkit report --from "$work/out" --build "$work/home"
test -s "$work/home/from/report.html"
echo "[rehearse] done in $(( $(date +%s) - t0 )) s, reproduce called $((calls + 1)) times"

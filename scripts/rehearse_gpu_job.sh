#!/usr/bin/env bash
# Rehearses the GPU reproduction on the CPU, end to end, before any GPU time is spent:
#   a Python holding only what the GPU image holds of the pipeline's packages (torch & co, pytest,
#   jinja2 & co; none of the notebook stack), then scripts/gpu_job.sh, the very script the GPU
#   runs, at smoke size in calls of REHEARSE_LIMIT seconds (each continues the last; the
#   Inception weights come once training is done, as with the GPU's second call), then
#   `report --from` back home.
# Usage: scripts/rehearse_gpu_job.sh            (from the repository root; ../shared as in CI)
#   GPU_VENV=DIR   reuse a venv that already holds the image's packages (installing torch takes minutes)
#   PYTHON=python3.12 TORCH=2.11.0 TORCHVISION=0.26.0  the image's versions (scripts/gpu_image.txt; pip then
#                  fetches a large torch build); default python3.11 with torch 2.14.1
#   REHEARSE_LIMIT (240) seconds a call: reproduce keeps 90 s to start a model and 30 s to end a call
#   RETURN ("--return-files 8 --return-mib 60") the return limits; JOB_SECONDS (1500) the job's time, planned
set -euo pipefail
cd "$(dirname "$0")/.."
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
  "$venv/bin/python" -m pip install -q "torch==${TORCH:-2.14.1}" "torchvision==${TORCHVISION:-0.29.1}" h5py numpy \
    scipy pillow matplotlib tqdm torchmetrics pytest
fi
if "$venv/bin/python" -c "import papermill" 2>/dev/null; then
  echo "[rehearse] $venv has papermill: not a rehearsal of a bare GPU image"; exit 1
fi

t0=$(date +%s)
gpu=$work/gpu
.venv/bin/python -m labkit bundle "$gpu/bundle" --python "$ver" --zip "$zip" --have scripts/gpu_image.txt
.venv/bin/python -m labkit bundle "$work/bundle312" --python 3.12 --have scripts/gpu_image.txt >/dev/null
echo "[rehearse] packages only in the $ver bundle (<) or only in the 3.12 one (>), by environment markers:"
diff <(ls "$gpu/bundle/wheels" | cut -d- -f1 | sort) <(ls "$work/bundle312/wheels" | cut -d- -f1 | sort) || true
du -sh "$gpu/bundle"
# What the bundle leaves to the image (jinja2, pyyaml, ...) goes into the venv, as the image has it.
.venv/bin/python -m labkit bundle "$work/image" --python "$ver" >/dev/null
"$venv/bin/python" -m pip install -q --no-index --no-deps \
  $(comm -23 <(cd "$work/image/wheels" && ls) <(cd "$gpu/bundle/wheels" && ls) | sed "s|^|$work/image/wheels/|")

# The GPU side: the same command each call, as the device runs it.
calls=0 gated=0
while true; do
  calls=$((calls + 1)); [ $calls -le 30 ] || { echo "[rehearse] no end in sight"; exit 1; }
  rm -rf "$work/out"  # a job's return folder starts empty each call
  set +e
  PATH="$venv/bin:$PATH" GPU_DIR=$gpu RETURN_DIR=$work/out PROFILE=smoke LABKIT_DATA= \
    BENCH="--sizes smoke --models vaegan --batches 16 --steps 2" \
    REPRODUCE="${RETURN:---return-files 8 --return-mib 60} --job-seconds ${JOB_SECONDS:-1500}" \
    bash scripts/gpu_job.sh "${REHEARSE_LIMIT:-240}" 2>&1 | tee "$work/call.log"
  rc=${PIPESTATUS[0]}
  set -e
  sent=$(find "$work/out" -type f | wc -l); mib=$(du -sm "$work/out" | cut -f1)
  echo "[rehearse] call $calls sent back $sent files, $mib MiB"
  for f in checks.txt bench.jsonl manifest.json; do
    test -s "$work/out/$f" || { echo "[rehearse] call $calls sent back no $f"; exit 1; }
  done
  # A first call that spends its time on the checks and the data has nothing to pack; later ones must.
  if [ $calls -gt 1 ] || ! grep -q '"parts": {}' "$work/out/manifest.json"; then
    test -s "$work/out/results-0.tar.gz" || { echo "[rehearse] call $calls sent back no results-0.tar.gz"; exit 1; }
  fi
  [ $rc -eq 0 ] && break
  [ $rc -eq 3 ] || { echo "[rehearse] gpu_job.sh failed ($rc)"; exit 1; }
  if grep -q "needs the FID Inception weights" "$work/call.log"; then  # the second call carries them
    gated=1; mkdir -p "$gpu/weights"; cp "$weights" "$gpu/weights/"
  fi
done
[ $gated -eq 1 ] || { echo "[rehearse] the notebooks did not wait for the weights"; exit 1; }
grep -q "passed\|skipped\|deselected" "$work/out/checks.txt"
ls -l "$work/out"

# Back home: the report from what came back.
.venv/bin/python -m labkit report --from "$work/out" --build "$work/home"
test -s "$work/home/from/report.html"
echo "[rehearse] done in $(( $(date +%s) - t0 )) s, gpu_job.sh called $calls times"

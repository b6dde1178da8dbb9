#!/usr/bin/env bash
# An offline GPU job's whole work, as the same command in every call: the GPU checks and the
# benchmark once per machine, then `reproduce` (the full profile) for the rest of each call.
# The job it is written for: a bare Python with torch, no internet, calls of limited time, a
# limited upload beside the checkout, a limited return (docs/offline-gpu.md).
#
# Prepare here (.gpu/ is git-ignored); the two folders can travel in separate calls where one
# upload cannot hold the checkout, the wheels, the zip and the Inception weights together:
#   python -m labkit bundle .gpu/bundle --python 3.12 --have scripts/gpu_image.txt \
#     --zip ../shared/data/img_align_celeba_halfres_10k.zip
#   mkdir -p .gpu/weights && cp ../shared/weights/fid_inception_v3_pool3_fp16.pth .gpu/weights/
# Then, each call right after the last while the machine keeps its files:
#   bash scripts/gpu_job.sh SECONDS   (with .gpu/bundle; later calls with .gpu/weights too)
# SECONDS is what the call may take (its time limit less a margin); reproduce gets it less the checks'
# time and 30 s, and keeps its own margins (labkit/reproduce.py). Exit 0 when the results are packed,
# 3 before; every call packs what it has, whatever stopped it.
# Each call leaves in $RETURN_DIR (default .gpu/return): checks.txt (the GPU, torch, the gpu-marked tests, the benchmark's
# output), bench.jsonl, results-N.tar.gz and manifest.json (the results or the runs' progress so far,
# within the return limits: labkit/pack.py);
# at home: python -m labkit report --from DIR.
# Settings: GPU_DIR (.gpu), PROFILE (full), BENCH (the benchmark's arguments), CHECK_SECONDS and
# BENCH_SECONDS (their time limits), REPRODUCE (more arguments of reproduce, the same in every call:
# --job-seconds SECONDS, the job's calls together, fixes the epochs to fit; --return-files and
# --return-mib the return limits). If the gpu-marked test of the compiled networks fails, every
# call trains with --no-compile (bf16 and channels-last kept).
# scripts/rehearse_gpu_job.sh runs this on a CPU at smoke size first.
set -uo pipefail
cd "$(dirname "$0")/.."
limit=${1:?usage: scripts/gpu_job.sh SECONDS}
start=$(date +%s)
gpu=$(realpath "${GPU_DIR:-.gpu}")
out=${RETURN_DIR:-$gpu/return}
mkdir -p "$out"
if [ ! -d "$gpu/site" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$gpu/site" "$gpu"/bundle/wheels/*.whl || exit 1
fi
export PYTHONPATH="$gpu/site:$PWD" PYTHONUNBUFFERED=1 LABKIT_INCEPTION="$gpu/weights/fid_inception_v3_pool3_fp16.pth"

if [ ! -f "$gpu/checks.txt" ]; then  # once per machine, each check time-limited: the minutes are for training
  { nvidia-smi
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
    timeout "${CHECK_SECONDS:-150}" python3 -m pytest -q -rfE -p no:cacheprovider -m gpu tests \
      || echo "[gpu_job] the GPU tests failed or ran out of time ($?)"
    timeout "${BENCH_SECONDS:-120}" python3 -m labkit.bench ${BENCH:---sizes handout --batches 64} --steps 10 \
      --out "$gpu/bench.jsonl" || echo "[gpu_job] the benchmark failed or ran out of time ($?)"
  } 2>&1 | tee "$gpu/checks.txt"
fi
cp "$gpu/checks.txt" "$out/"
[ -f "$gpu/bench.jsonl" ] && cp "$gpu/bench.jsonl" "$out/"

# Where this torch cannot compile the networks, train in bf16 without compiling rather than spend the minutes on it.
fast=
if grep -qE "^(FAILED|ERROR) tests/test_train.py::test_compiled_networks" "$gpu/checks.txt"; then
  fast=--no-compile; echo "[gpu_job] the compiled networks failed their test: training with --no-compile"
fi
python3 -m labkit reproduce --out "$out" --data "$gpu"/bundle/*.zip --work "$gpu/reproduce" \
  --profile "${PROFILE:-full}" --time-limit $((limit - 30 - ($(date +%s) - start))) $fast ${REPRODUCE:-}

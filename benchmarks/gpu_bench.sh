#!/usr/bin/env bash
# Everything the GPU benchmark needs, in one device call (see docs/benchmarks.md):
#   1. unpack the carried packages y2r needs beyond the device image (.devpkgs, or wheels in .whl) into /tmp/site,
#   2. the GPU-marked tests (NVML, GPU lanes, no CUDA context left after exit / Ctrl-C / SIGKILL),
#   3. benchmarks/gpu_bench.py (y2r vs one-worker-per-GPU, spawn-until-OOM, 0.1-GPU fractional).
# Results go to $OUT (results.md, results.json, logs). Usage, from the repository root:
#   OUT=/tmp/out VIDEOS=24 bash benchmarks/gpu_bench.sh
set -uo pipefail
OUT=${OUT:-/tmp/y2r_gpu_bench_out}
mkdir -p "$OUT"
if ls .devpkgs/y2r-deps-*.tar.xz >/dev/null 2>&1; then  # built by `executor_bench.py pack .devpkgs`
  mkdir -p /tmp/site && { [ -e /tmp/site/pydantic ] || tar -xJf .devpkgs/y2r-deps-*.tar.xz -C /tmp/site; } || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
elif ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version --format=csv; nproc; python3 --version;
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.device_count())'; } 2>&1 | tee "$OUT/machine.txt"
if [ "${SKIP_TESTS:-0}" != "1" ]; then
  timeout 200 python3 -m pytest -m gpu tests/execution/test_gpu_device.py -q -p no:cacheprovider -x 2>&1 | tee "$OUT/gpu_tests.log"
fi
timeout "${BENCH_TIMEOUT:-540}" python3 benchmarks/gpu_bench.py --out "$OUT" --videos "${VIDEOS:-24}" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
sleep 10  # an orphaned worker notices its owner is gone within one heartbeat (5 s)
echo "--- 10 s after the benchmark (no y2r process may hold GPU memory):" | tee -a "$OUT/machine.txt"
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>&1 | tee -a "$OUT/machine.txt"

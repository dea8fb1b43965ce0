#!/usr/bin/env bash
# One device call (2026-11-27, second session): the mnist5k EBM reference and the mnist5k rows of
# paper-ebm on the GPU; remaining paper-2d cells on the CPU cores; a CUDA KSD roofline check.
# Every stage is bounded by the budget; whatever finished comes back as tarballs in $OUT.
set -uo pipefail
T0=$(date +%s); BUDGET=${BUDGET:-480}; END=$((T0 + BUDGET)); GPU=${GPU:-cuda}
CPU_SHARDS=${CPU_SHARDS:-12}; OUT=${OUT:-/tmp/out}; export GPU
left() { echo $((END - $(date +%s))); }
# bounded RESERVE CMD...: run CMD with a timeout that leaves RESERVE seconds of the budget.
bounded() { local s=$(( $(left) - $1 )); shift; if (( s > 0 )); then timeout $s "$@"; else echo "skipped (no time): $*"; return 124; fi; }
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import mlxtend" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
L=/tmp/logs; mkdir -p $L "$OUT"; touch /tmp/stamp; sleep 1
{ nvidia-smi -L; nproc; python3 -c "import platform, torch; print(platform.python_version(), torch.__version__)"; } >$L/device.txt 2>&1

for ((i = 0; i < CPU_SHARDS; i++)); do
    bounded 30 python3 -m benchmark run paper-2d --device cpu --out results/paper-2d \
        --cache /tmp/cache-cpu --no-figures --shard $i/$CPU_SHARDS >$L/p2d-$i.log 2>&1 &
done

gpu_chain() {
    python3 .devjob/probe.py >$L/probe.txt 2>&1; cat $L/probe.txt
    STEPS=${REF_STEPS:-$(grep -oP 'STEPS=\K[0-9]+' $L/probe.txt || echo 3000)}
    bounded ${RESERVE:-200} python3 -m benchmark ebm-reference --target ebm_mnist5k --steps $STEPS \
        --seed 0 --step-size 0.001 --warmup-fraction 0.2 --device $GPU >$L/ref.log 2>&1
    echo "reference rc=$? left=$(left)"
    bounded 20 python3 -m benchmark run .devjob/ebm-ordered.toml --device $GPU --force \
        --out results/paper-ebm --cache /tmp/cache-gpu --no-figures >$L/ebm-ordered.log 2>&1
    echo "paper-ebm rc=$? left=$(left)"
}
gpu_chain >$L/gpu_chain.log 2>&1 &
wait
cat $L/gpu_chain.log; tail -n 30 $L/ebm-ordered.log $L/ref.log
find results/paper-2d results/paper-ebm/cells results/paper-ebm/history \
    benchmark/fid/references/ebm_mnist5k -newer /tmp/stamp -type f 2>/dev/null >/tmp/new.txt
echo "new files: $(wc -l </tmp/new.txt)"
tar czf "$OUT/results.tar.gz" -T /tmp/new.txt
python3 .devjob/pick_samples.py >/tmp/samples.txt && tar cf "$OUT/samples.tar" -T /tmp/samples.txt
tar czf "$OUT/logs.tar.gz" -C /tmp logs
ls -la "$OUT"

#!/usr/bin/env bash
# The GPU check: one command, no network, at most 7 minutes on one GPU
# (the parts' time limits add up to 420 s). What comes back fits the device
# tool (at most 8 files, 2 folders deep): everything is written to a
# temporary folder, and $OUT (default ./gpu_check_out) receives only
#   summary.json        the exit status, each part's status and seconds
#   gpu_check.tar.gz    every log and JSON of the parts
# The parts:
#   1. the CUDA tests (pytest -k cuda, data from $DATA)          tests.log
#   2. Cora, Lightning, --accelerator gpu: 32-true, bf16-mixed, 16-mixed
#                                         cora_fp32/bf16/fp16.json
#   3. the quick benchmark on CUDA (max allocated memory)       quick_cuda.json
#   4. host reads once per 8 steps against every step (issue 19)
#                                                             host_syncs.json
#   5. one T = 100 step at scale: Neumann at 1M nodes / 10M edges, BPTT at
#      100k nodes (BPTT at 1M would need ~155 GB)                scale_*.json
# Exit status: 0 when every part passed; 1 when a part failed; 3 when CUDA
# is not available; 4 when the data is missing; 5 when every selected CUDA
# test was skipped.
#
# Data: Cora's raw files and PubMed's ind.pubmed.graph under $DATA
# (default .gpu_data, then ../shared/data). A device machine gets only the
# checkout, so copy them in first, here:
#     bash benchmarks/gpu_check.sh --prepare     # -> .gpu_data (git-ignored)
# then run it there with .gpu_data carried, e.g. with the device tool:
#     run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_data"],
#         timeout_s=540)
# It needs torch with CUDA, torch-geometric, pytorch-lightning, torchmetrics
# (the device image has them); the package runs from the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    src=${2:-../shared/data}
    mkdir -p .gpu_data/Planetoid/Cora .gpu_data/Planetoid/PubMed/raw
    cp -r "$src/Planetoid/Cora/raw" .gpu_data/Planetoid/Cora/
    cp "$src/Planetoid/PubMed/raw/ind.pubmed.graph" \
        .gpu_data/Planetoid/PubMed/raw/
    chmod -R u+w .gpu_data
    du -sh .gpu_data
    exit 0
fi

OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "${DATA:-}" ]; then
    DATA=.gpu_data
    [ -d "$DATA/Planetoid/Cora/raw" ] || DATA=../shared/data
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export PYTHONWARNINGS=ignore XDG_CACHE_HOME=$WORK/cache
PY=${PYTHON:-python3}
PARTS=()
FAILED=0

finish() {  # finish STATUS: write summary.json and the archive, then exit
    local status=$1 p
    {
        echo "{"
        echo "  \"exit_status\": $status,"
        for p in "${PARTS[@]}"; do echo "  $p,"; done
        printf '  "device": "%s"\n' \
            "$(tr '\n"' '  ' < "$WORK/device.log" 2>/dev/null)"
        echo "}"
    } > "$OUT/summary.json"
    tar -czf "$OUT/gpu_check.tar.gz" -C "$WORK" --exclude=./cache .
    cat "$OUT/summary.json"
    exit "$status"
}

"$PY" -c '
import torch, torch_geometric
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
print("pyg", torch_geometric.__version__)
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
' > "$WORK/device.log" 2>&1
cat "$WORK/device.log"
if ! grep -q "available True" "$WORK/device.log"; then
    echo "gpu_check: CUDA is not available here" >&2
    finish 3
fi
for f in Planetoid/Cora/raw/ind.cora.x Planetoid/PubMed/raw/ind.pubmed.graph
do
    if [ ! -f "$DATA/$f" ]; then
        echo "gpu_check: $DATA/$f is missing; run 'bash" \
             "benchmarks/gpu_check.sh --prepare' and carry .gpu_data" >&2
        finish 4
    fi
done
DATA=$(cd "$DATA" && pwd)

part() {  # part NAME SECONDS COMMAND...: run with a time limit, record it
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name: $*" | tee -a "$WORK/gpu_check.log"
    timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$WORK/$name.log" | tee -a "$WORK/gpu_check.log"
    [ "$rc" -eq 0 ] || FAILED=1
    PARTS+=("\"$name\": {\"rc\": $rc, \"seconds\": $((SECONDS - start))}")
}

export PYG_RBP_TEST_DATA=$DATA
part tests 80 "$PY" -m pytest -q -p no:cacheprovider -k cuda -rs tests
if ! grep -Eq "[0-9]+ passed" "$WORK/tests.log"; then
    echo "gpu_check: no CUDA test ran (all skipped or none selected)" >&2
    finish 5
fi
for prec in 32-true bf16-mixed 16-mixed; do
    case $prec in
        32-true) tag=fp32 ;;
        bf16-mixed) tag=bf16 ;;
        *) tag=fp16 ;;
    esac
    part "cora_$tag" 65 "$PY" examples/citation.py --method neumann \
        --accelerator gpu --precision "$prec" --data-root "$DATA" --offline \
        --no-progress-bar --output-dir "$WORK/runs" \
        --output-json "$WORK/cora_$tag.json"
done
part quick_cuda 75 "$PY" -m benchmarks.run --quick --reps 3 --device cuda \
    --data-root "$DATA" --output-json "$WORK/quick_cuda.json"
part host_syncs 20 "$PY" -m benchmarks.host_syncs --device cuda \
    --nodes 20000 --tol 1e-5 --output-json "$WORK/host_syncs.json"
part scale_neumann 30 "$PY" -m benchmarks.scale --contenders neumann \
    --sizes 1000000 --device cuda --output-json "$WORK/scale_neumann.json"
part scale_bptt 20 "$PY" -m benchmarks.scale --contenders bptt \
    --sizes 100000 --device cuda --output-json "$WORK/scale_bptt.json"
finish "$FAILED"

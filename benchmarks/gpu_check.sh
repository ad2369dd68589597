#!/usr/bin/env bash
# The GPU check: one command, no network, at most 8 minutes on one GPU.
# Writes its logs and JSON under $OUT (default ./gpu_check_out):
#   1. the CUDA tests                          tests.log
#   2. Cora, Lightning, --accelerator gpu, float32 and bf16-mixed
#                                              cora_fp32.json, cora_bf16.json
#   3. the quick benchmark on CUDA (max allocated memory)   quick_cuda.json
#   4. one T = 100 Neumann step, 1M nodes / 10M edges       scale_1m.json
#   and summary.json: each part's exit status and seconds.
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
if [ -z "${DATA:-}" ]; then
    DATA=.gpu_data
    [ -d "$DATA/Planetoid/Cora/raw" ] || DATA=../shared/data
fi
DATA=$(cd "$DATA" && pwd)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export PYTHONWARNINGS=ignore XDG_CACHE_HOME=${TMPDIR:-/tmp}/pyg_rbp_gpu_cache
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.json"
echo "{" > "$SUMMARY"

part() {  # part NAME SECONDS COMMAND...: run with a time limit, record it
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "== $name: $*" | tee -a "$OUT/gpu_check.log"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 20 "$OUT/$name.log" | tee -a "$OUT/gpu_check.log"
    echo "  \"$name\": {\"rc\": $rc, \"seconds\": $((SECONDS - start))}," \
        >> "$SUMMARY"
}

$PY - <<'EOF' > "$OUT/device.log" 2>&1
import torch, torch_geometric
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
print("pyg", torch_geometric.__version__)
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
EOF
cat "$OUT/device.log"

part tests 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests
for prec in 32-true bf16-mixed; do
    tag=$([ "$prec" = bf16-mixed ] && echo bf16 || echo fp32)
    part "cora_$tag" 120 $PY examples/citation.py --method neumann \
        --accelerator gpu --precision "$prec" --data-root "$DATA" \
        --no-progress-bar --output-dir "$OUT/runs" \
        --output-json "$OUT/cora_$tag.json"
done
part quick_cuda 150 $PY benchmarks/run.py --quick --reps 3 --device cuda \
    --data-root "$DATA" --output-json "$OUT/quick_cuda.json"
part scale_1m 90 $PY benchmarks/scale.py --contenders neumann bptt \
    --sizes 1000000 --device cuda --output-json "$OUT/scale_1m.json"
echo "  \"done\": true" >> "$SUMMARY"
echo "}" >> "$SUMMARY"
cat "$SUMMARY"

#!/usr/bin/env bash
# The cuDNN-attention experiment (bench/BENCHMARKS.md, GPU section; measured on an H100, 2026-11-26): each scenario
# with cuDNN SDPA on and off, for every implementation alike (a sitecustomize sets torch's switch in llmft, the bare
# loop and Trainer; llmft also gets trainer.cudnn_attention). Needs the wheels from fetch_wheels.sh --with-pyarrow.
#   bash bench/gpu/sdpa_experiment.sh            # on the GPU machine (~5 minutes), results under $OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${OUT:-$PWD/bench/gpu/out}; mkdir -p "$OUT_DIR"
WORK=/tmp/llmft-gpu-check
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 LLMFT_CACHE=$WORK/cache
python3 bench/gpu/deps.py bench/gpu/wheels "$WORK/site"
mkdir -p /tmp/cudnn-switch
printf 'import os\nif os.environ.get("EXP_CUDNN_SDP"):\n    import torch\n    torch.backends.cuda.enable_cudnn_sdp(os.environ["EXP_CUDNN_SDP"] == "1")\n' \
    > /tmp/cudnn-switch/sitecustomize.py
export PYTHONPATH=/tmp/cudnn-switch:$PWD:$WORK/site
timeout 150 python3 bench/gpu/shapes.py > "$OUT_DIR/bench.log" 2>&1
PEAK=$(python3 bench/gpu/machine.py --peak-tflops)
measure() {  # SCENARIO IMPLS "EXTRA BENCH ARGS"
    for on in 1 0; do
        local flag=$([ $on = 1 ] && echo true || echo false)
        echo "### $1, cuDNN attention $flag" >> "$OUT_DIR/bench.md"
        EXP_CUDNN_SDP=$on timeout 150 python3 bench/run.py --repeats 1 --keep-going --markdown "$OUT_DIR/bench.md" "$1" \
            --impls "$2" $3 --llmft "trainer.cudnn_attention=$flag $4" --peak-tflops "$PEAK" >> "$OUT_DIR/bench.log" 2>&1
    done
}
measure cls-base-shape llmft,trainer "--all precision=bf16" "trainer.group_by_length=true"
measure sft-0.5b-shape llmft-plain "" ""
measure sft-0.5b-shape llmft "" ""
cat "$OUT_DIR/bench.md"

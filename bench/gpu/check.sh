#!/usr/bin/env bash
# The GPU check (issue 11), one command on a bare GPU machine that ends within its budget (default 470 s):
#   1. installs the carried wheels it lacks (bench/gpu/wheels, from bench/gpu/fetch_wheels.sh) into a target folder;
#   2. records the machine (GPU, versions, a measured bf16 matmul rate);
#   3. runs the gpu-marked tests (tests/test_gpu.py);
#   4. runs bench/run.py: decoder SFT on a Qwen2.5-0.5B-shaped model (bf16, packed and unpacked; llmft, Trainer and
#      the bare loop; tokens/s, MFU, peak CUDA memory), then classification on a BERT-base-shaped model in bf16,
#      fp16 and fp32 (models built from their configs by bench/gpu/shapes.py: no download).
# Everything lands in one folder (at most 8 files come back from a device run): summary.md (machine, test counts,
# every table, phase times), tests.log, bench.md (the tables), bench.log (each measurement, errors).
#
#   bench/gpu/check.sh                       # on the GPU machine; the folder is $OUT there, else bench/gpu/out
#   bench/gpu/check.sh --device cpu --out /tmp/dry   # the dry path: tiny shapes on the CPU, a minute or two
#   bench/gpu/check.sh --only tests,sft      # phases: tests, sft, cls, profile (a rerun of what failed)
#   bench/gpu/check.sh --only cls --precisions fp16   # the classification rows of some precisions only
#   bench/gpu/check.sh --only profile        # torch.profiler tables of the SFT step, packed and plain (profile.md)
#   bench/gpu/check.sh --only dpo            # issue 21: LoRA DPO on the 0.5B shape, with and without
#                                            # task.precompute_reference, beside LoRA SFT at the same batch
#
# A phase that fails or runs out of time is recorded and the next one runs; the exit code is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEVICE=cuda
OUT_DIR=${OUT:-$ROOT/bench/gpu/out}
BUDGET=470
ONLY=tests,sft,cls
PRECISIONS_ARG=""
while [ $# -gt 0 ]; do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --out) OUT_DIR=$2; shift 2 ;;
        --budget) BUDGET=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --precisions) PRECISIONS_ARG=$2; shift 2 ;;
        *) echo "usage: $0 [--device cuda|cpu] [--out DIR] [--budget SECONDS] [--only tests,sft,cls,profile,dpo] [--precisions 'bf16 fp16 fp32']" >&2; exit 2 ;;
    esac
done
case $DEVICE in cuda|cpu) ;; *) echo "--device takes cuda or cpu" >&2; exit 2 ;; esac

PY=${PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-/tmp/llmft-gpu-check}  # model folders, run folders, installed wheels: never under OUT
mkdir -p "$OUT_DIR" "$WORK"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
SUMMARY=$OUT_DIR/summary.md
: > "$SUMMARY"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export LLMFT_CACHE=${LLMFT_CACHE:-$WORK/cache}
export PYTHONPATH=$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}  # this checkout's llmft, then the carried wheels
[ "$DEVICE" = cpu ] && export CUDA_VISIBLE_DEVICES=""
START=$SECONDS
FAILED=0

say() { echo "$*" | tee -a "$SUMMARY"; }
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

# phase NAME CAP_SECONDS COMMAND...: runs COMMAND under the smaller of CAP and the budget left; records the outcome
phase() {
    local name=$1 cap=$2 left t0 rc
    shift 2
    left=$((BUDGET - (SECONDS - START)))
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt 15 ]; then
        say "- $name: not run (budget spent)"; FAILED=1; return
    fi
    t0=$SECONDS
    timeout --kill-after=10 "$cap" "$@"
    rc=$?
    if [ $rc -eq 0 ]; then say "- $name: ok in $((SECONDS - t0)) s"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then say "- $name: STOPPED at its $cap s limit"; FAILED=1
    else say "- $name: FAILED (exit $rc) after $((SECONDS - t0)) s"; FAILED=1
    fi
}

say "# llmft GPU check ($DEVICE), $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
say "command: bench/gpu/check.sh --device $DEVICE --budget $BUDGET --only $ONLY"
$PY bench/gpu/deps.py bench/gpu/wheels "$WORK/site" 2>&1 | tee -a "$SUMMARY"
if ! $PY -c "import hydra, omegaconf, datasets, llmft.cli" 2>>"$SUMMARY"; then
    say "llmft cannot be imported here (see above): run bench/gpu/fetch_wheels.sh where PyPI is reachable and carry bench/gpu/wheels"
    exit 3
fi
say ""
say '```'
$PY bench/gpu/machine.py 2>&1 | tee -a "$SUMMARY"
say '```'
PEAK=$($PY bench/gpu/machine.py --peak-tflops)  # the datasheet's dense bf16 rate, for MFU; empty when unknown
say ""
say "## Phases"

if wanted tests; then
    phase "gpu tests" 200 bash -c "$PY -m pytest -m gpu tests/test_gpu.py -v -rs -p no:cacheprovider > '$OUT_DIR/tests.log' 2>&1"
    say "  $(grep -E '^=+ .*(passed|failed|skipped|error).* =+$' "$OUT_DIR/tests.log" | tail -1)"
fi

if [ "$DEVICE" = cuda ]; then SFT=sft-0.5b-shape CLS=cls-base-shape PRECISIONS="bf16 fp16 fp32" SHAPE_ARGS="" DPO_SHAPE=0.5b-shape
else SFT=sft-shape-tiny CLS=cls-shape-tiny PRECISIONS="fp32 bf16" SHAPE_ARGS="--tiny" DPO_SHAPE=shape-tiny  # fp16 needs CUDA
fi
[ -n "$PRECISIONS_ARG" ] && PRECISIONS=$PRECISIONS_ARG
BENCH=(bench/run.py --repeats 1 --keep-going --markdown "$OUT_DIR/bench.md")
if wanted sft || wanted cls || wanted profile || wanted dpo; then
    phase "build the model shapes" 120 bash -c "$PY bench/gpu/shapes.py $SHAPE_ARGS >> '$OUT_DIR/bench.log' 2>&1"
fi
if wanted profile; then
    for plain in "" --plain; do
        phase "profile $SFT $plain" 150 bash -c "cd bench && $PY gpu/profile_step.py $SFT $plain --out '$OUT_DIR/profile.md' >> '$OUT_DIR/bench.log' 2>&1"
    done
fi

if wanted sft; then
    phase "bench $SFT" 210 bash -c "$PY ${BENCH[*]} $SFT --impls llmft,llmft-plain,bare,trainer ${PEAK:+--peak-tflops $PEAK} >> '$OUT_DIR/bench.log' 2>&1"
fi
if wanted cls; then
    set -- $PRECISIONS
    while [ $# -gt 0 ]; do
        left=$((BUDGET - (SECONDS - START)))
        peak=$PEAK
        [ "$1" = fp32 ] && peak=""  # MFU against the bf16 rate says nothing about an fp32 run
        phase "bench $CLS $1" $((left / $#)) bash -c "$PY ${BENCH[*]} $CLS --impls llmft,bare,trainer --all precision=$1 ${peak:+--peak-tflops $peak} >> '$OUT_DIR/bench.log' 2>&1"
        shift
    done
fi
if wanted dpo; then
    for scenario in sft-lora dpo dpo-precomputed; do
        phase "bench $scenario-$DPO_SHAPE" 150 bash -c "$PY ${BENCH[*]} $scenario-$DPO_SHAPE --impls llmft >> '$OUT_DIR/bench.log' 2>&1"
    done
fi

say "- total: $((SECONDS - START)) s of a $BUDGET s budget"
if [ -f "$OUT_DIR/bench.md" ]; then
    say ""
    say "## Tables"
    cat "$OUT_DIR/bench.md" >> "$SUMMARY"
fi
[ -f "$OUT_DIR/profile.md" ] && cat "$OUT_DIR/profile.md" >> "$SUMMARY"
echo
cat "$SUMMARY"  # the end of the output is what a device run shows
exit $FAILED

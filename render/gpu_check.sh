#!/usr/bin/env bash
# The GPU check as one time-boxed command (render/BENCHMARKS.md, "GPU"):
#
#   bash render/gpu_check.sh OUT_FOLDER
#
# 1. versions and the card; 2. numerics of fp32/tf32/bf16 on the GPU against the CPU's fp32
# (python -m render.devicecheck); 3. the whole network (4,224 filters, 128 px, 20 steps) at
# bf16, then tf32; 4. the strategy behind loop=auto and batch=auto, measured: block3_conv3 with
# the loop in Python or on the device, batches of 64 and 256; 5. a real `python -m render` run
# (block5_conv2, 64 filters, atlas copied out); 6. the whole network at fp32 in the time left.
# Stages run in order of importance, each under its own timeout. OUT_FOLDER receives six files
# (the device tool brings back at most eight): log.txt, bench-{bf16,tf32,strategy,fp32}.json
# (written after every layer) and conv5_2_atlas.png.
#
# Inputs it looks for: .whl/*.whl (hydra-core, omegaconf, antlr4, pooch, platformdirs for a
# machine without them), .weights/vgg16_notop.h5 (real weights; random ones otherwise: same
# speed). LAYERS, FILTERS, SIZE, STEPS and BUDGET_S (default 560) shrink it for a dry run
# (stages 2 and 4 then take the first of LAYERS, stage 5 eight filters).
set -u
out=${1:?usage: bash render/gpu_check.sh OUT_FOLDER}
mkdir -p "$out"
log=$out/log.txt summary=$(mktemp) run_root=$(mktemp -d)
export PYTHONUNBUFFERED=1
layers=${LAYERS:-all} filters=${FILTERS:-all} size=${SIZE:-128} steps=${STEPS:-20}
deadline=$((SECONDS + ${BUDGET_S:-560}))
python=$(command -v python3 || command -v python)

if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/render-site .whl/*.whl && export PYTHONPATH=/tmp/render-site
fi
weights=random
[ -f .weights/vgg16_notop.h5 ] && weights=$PWD/.weights/vgg16_notop.h5

stage() {  # stage NAME SECONDS COMMAND...: run under a timeout no later than the deadline
    local name=$1 limit=$2 left=$((deadline - SECONDS))
    shift 2
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped, the time budget is spent" | tee -a "$log" "$summary"
        return
    fi
    echo "== $name (up to ${limit} s)" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $((SECONDS - start)) s" | tee -a "$log" "$summary"
}

{
    nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version \
        --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$python" -c 'import sys, jax, flax, optax; print(sys.version.split()[0], "jax", jax.__version__,
"flax", flax.__version__, "optax", optax.__version__, jax.devices())'
    echo "weights: $weights"
} 2>&1 | tee -a "$log"

# a dry run (LAYERS and FILTERS set) shrinks the fixed stages too: its first layer, 8 filters
# (with random weights some of conv5_2's first 8 live, so an atlas is written)
strategy_layer=block3_conv3 render_filters=0-63 check=()
if [ "$layers" != all ]; then
    strategy_layer=${layers%%,*} check=(--layers "${layers%%,*}" --size "$size")
fi
[ "$filters" != all ] && render_filters=0-7

# autotune off: a GPU keeps XLA's own autotuning anyway, and a CPU dry run measures nothing
bench=("$python" -m render.bench --weights "$weights" --layers "$layers" --filters "$filters"
    --size "$size" --steps "$steps" --repeats 1 --autotune false)
stage devicecheck 75 "$python" -m render.devicecheck --weights "$weights" ${check[@]+"${check[@]}"}
stage bench-bf16 240 "${bench[@]}" --precision bf16 --json "$out/bench-bf16.json"
stage bench-tf32 180 "${bench[@]}" --precision tf32 --json "$out/bench-tf32.json"
stage bench-strategy 60 "$python" -m render.bench --weights "$weights" --layers "$strategy_layer" \
    --filters "$filters" --size "$size" --steps "$steps" --repeats 1 --precision bf16 --autotune false \
    --loop python,device --batch 64,256 --json "$out/bench-strategy.json"
stage render 60 "$python" -m render "weights=$weights" layer=conv5_2 "filters=$render_filters" \
    "size=$size" "steps=$steps" "output.root=$run_root" progress=false autotune=false
atlas=$(find "$run_root" -name atlas.png | head -1)
[ -n "$atlas" ] && cp "$atlas" "$out/conv5_2_atlas.png"
stage bench-fp32 600 "${bench[@]}" --precision fp32 --json "$out/bench-fp32.json"
grep "^total\|OVER\|ok$" "$log"
cat "$summary"

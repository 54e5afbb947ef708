#!/usr/bin/env bash
# Everything mnistseg measures on a GPU, in one call: a lent GPU machine is held for minutes.
#
#   1. The article's recipe for its full 20 epochs on CUDA (float32, TF32 off), through the
#      in-memory batched path with the article's affine and nearest-warped masks, then its
#      test set scored once: benchmarks/results/reproduce_reference_cuda.json.
#   2. The fast and best presets, 3 seeds each, whole-process wall times and test IoU:
#      benchmarks/results/time_to_quality_cuda.json.
#   3. The reference's first 2 epochs for seeds 1 and 2, to see how much epochs 1-2 vary:
#      benchmarks/results/reproduce_reference_cuda_seedN.json.
#
# Run from the repository root with MNIST prepared under data/ and PyTorch installed:
#   bash benchmarks/gpu.sh                # results into benchmarks/results/
#   RESULTS=/tmp/r bash benchmarks/gpu.sh  # elsewhere
# A smoke run on the CPU: DEVICE=cpu EPOCHS=1 SEEDS=1 SMOKE="--subset 600" bash benchmarks/gpu.sh
set -uo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-20}
SEEDS=${SEEDS:-3}
SMOKE=${SMOKE:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
status=0
# shellcheck disable=SC2086  # SMOKE is a word list on purpose
timeout "${REFERENCE_LIMIT:-330}" "$PYTHON" benchmarks/reproduce_reference.py --root data --epochs "$EPOCHS" \
    --device "$DEVICE" --test --json "$RESULTS/reproduce_reference_cuda.json" \
    --train-args --loader batched --mask-mode warp $SMOKE || status=1
# shellcheck disable=SC2086
timeout "${PRESETS_LIMIT:-240}" "$PYTHON" benchmarks/time_to_quality.py --root data --device "$DEVICE" \
    --skip-reference --seeds "$SEEDS" --json "$RESULTS/time_to_quality_cuda.json" --train-args $SMOKE || status=1
for seed in 1 2; do
    # shellcheck disable=SC2086
    timeout "${SEEDS_LIMIT:-45}" "$PYTHON" benchmarks/reproduce_reference.py --root data --epochs 2 \
        --device "$DEVICE" --json "$RESULTS/reproduce_reference_cuda_seed$seed.json" \
        --train-args --loader batched --mask-mode warp --seed "$seed" $SMOKE || status=1
done
exit $status

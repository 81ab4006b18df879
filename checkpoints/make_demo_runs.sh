#!/usr/bin/env bash
# Retrain the shipped demo runs (legacy SCMT, strict SCMT, GPT-2 baseline) from the repository root.
# Writes into checkpoints/demo-*; refuses to overwrite existing runs (delete them first to retrain).
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--d-model 64 --nhead 4 --num-layers 2 --max-len 128 --mem-size 32 --num-schemas 16
        --epochs 1 --save-steps 900 --logging-steps 50 --seed 2025 --save-only-model --no-progress)
for spec in "legacy:--model scmt --mode legacy" "strict:--model scmt --mode strict" "gpt2:--model gpt2"; do
    name=${spec%%:*}
    read -r -a model_args <<< "${spec#*:}"
    start=$(date +%s)
    python -m scmt.train --output-dir "checkpoints/demo-$name" "${model_args[@]}" "${common[@]}"
    echo "demo-$name: $(( $(date +%s) - start )) s"
done

#!/usr/bin/env bash
# The main job, end to end on the ipex stack: what runs here, then a trained model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/nervana-lstm info
echo
# Train the default config (character LM on Python's help texts); the last lines say where
# the run directory, its metrics.jsonl and its loss-curve PNG are.
run_dir="runs/demo-charlm-$(date +%Y%m%d-%H%M%S)"
.venv/bin/nervana-lstm train --config configs/charlm.yaml --out "$run_dir"
echo
echo "sample from the trained model:"
.venv/bin/nervana-lstm sample "$run_dir/checkpoints/last.pt" --prompt "The " --length 200 \
    --temperature 0.8

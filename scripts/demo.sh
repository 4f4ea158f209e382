#!/usr/bin/env bash
# The main job, end to end on the ipex stack: what runs here, then a trained model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/nervana-lstm info

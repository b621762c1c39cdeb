#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build the wasm package (pkg/), and
# serve the demo with the shipped default model on http://127.0.0.1:8080 (PORT to change).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f models/default/manifest.json ] || { echo "models/default/manifest.json is missing: run scripts/train-default.sh"; exit 1; }
scripts/build-web.sh
exec python3 scripts/serve.py --port "${PORT:-8080}"

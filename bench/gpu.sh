#!/usr/bin/env bash
# The seeds' GPU runs, timed and reproduced in one go (see bench/gpu.py); `bench/gpu.sh --smoke` checks it on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
[ -x "$python" ] || python="python3"
exec "$python" bench/gpu.py "$@"

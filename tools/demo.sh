#!/usr/bin/env bash
# The main job (the README's demo command): sets up the machine and the
# virtualenv, then compares tiering policies with `loki-memtier simulate`
# at its defaults and draws DRAM hit ratio over time into out/simulate.png.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-env.sh
mkdir -p out
.venv/bin/loki-memtier simulate --plot out/simulate.png "$@"

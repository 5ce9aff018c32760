#!/usr/bin/env bash
# Prepare this checkout on a Debian 12 machine, as root: the system packages
# the build needs (only if missing), a virtualenv in .venv, and loki-nova
# installed into it in development mode with the Cython kernel built.
# Idempotent; later runs only re-install the package.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
need_apt=()
command -v "$PYTHON" >/dev/null 2>&1 || need_apt+=(python3)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
if command -v "$PYTHON" >/dev/null 2>&1; then
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
    "$PYTHON" - <<'PY' || need_apt+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)
PY
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup-env: installing ${need_apt[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -c 'from loki_nova.memtier import classifier; assert classifier.DEFAULT_BACKEND == "compiled", "the Cython classifier did not build"'

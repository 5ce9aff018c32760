#!/usr/bin/env bash
# The whole test suite (the README's test command): sets up the machine and
# the virtualenv (tools/setup-env.sh), lints, then runs every test.  Extra
# arguments go to pytest.  Exits non-zero on any failure, including a run
# that collected no tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-env.sh
.venv/bin/python -m flake8 loki_nova nova_shim tests benchmarks setup.py
status=0
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@" tests || status=$?
if [ "$status" -eq 5 ]; then
    echo "run-tests: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"

#!/usr/bin/env bash
# The whole test suite (the README's test command): sets up the machine and
# the virtualenv (tools/setup-env.sh), lints, then runs every test.  Extra
# arguments go to pytest.  Exits non-zero on any failure, including a run
# that collected no tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-env.sh
.venv/bin/python -m flake8 loki_nova nova_shim tests benchmarks tools setup.py
shellcheck devstack/plugin.sh devstack/settings tests/fixtures/devstack/functions-stub.sh \
    tools/*.sh .ci/run
.venv/bin/bashate -e 'E*' devstack/plugin.sh devstack/settings tests/fixtures/devstack/functions-stub.sh
.venv/bin/reno lint
# Nova picks its concurrency mode once per process, so the tests in Nova's
# in-process harness (tests/nova) run in their own pytest processes: once
# in threading mode (Nova's default) and once in eventlet mode (the real
# libvirtd tests only once).  Extra arguments go to every run.
status=0
run() {
    local rc=0
    echo "run-tests: pytest $*" >&2
    .venv/bin/python -m pytest -p no:cacheprovider -ra "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "run-tests: pytest collected no tests; that is a failure" >&2
        rc=1
    fi
    [ "$rc" -eq 0 ] || status=$rc
}
run "$@" --ignore=tests/nova tests
OS_NOVA_DISABLE_EVENTLET_PATCHING=true run "$@" tests/nova
OS_NOVA_DISABLE_EVENTLET_PATCHING=false run "$@" -m 'not libvirt' tests/nova
exit "$status"

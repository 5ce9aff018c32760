#!/usr/bin/env bash
# Prepare this checkout on a Debian 12 machine, as root: the system packages
# the build and the test rigs need (only if missing), a virtualenv in .venv,
# loki-nova installed into it in development mode with the Cython kernel
# built, and the sandbox kernel fetched once (tools/sandbox.py fetch).
# Idempotent; later runs only re-install the package.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
started=$SECONDS
say() { echo "setup-env: $* ($((SECONDS - started)) s)" >&2; }
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
# The test rigs: QEMU (and qemu-img for Nova's image backend) and libvirt
# (TCG guests), the sandbox's initramfs
# (busybox-static, cpio), numactl and RabbitMQ (tests/rabbit.py runs
# private brokers on loopback; the system's own broker is never started);
# the DevStack plugin and these scripts are linted with shellcheck
# (tools/run-tests.sh).
for pkg in qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev \
        pkg-config busybox-static cpio numactl rabbitmq-server shellcheck; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup-env: installing ${need_apt[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Maintainer scripts start services through invoke-rc.d /
    # deb-systemd-invoke: rabbitmq-server's postinst would start the
    # system broker (as user rabbitmq, listening on all interfaces) and
    # erlang-base an epmd.  Tests run private brokers only, so where no
    # policy-rc.d exists one is written for this install that denies (101)
    # those two and allows everything else, then removed.  An existing
    # policy-rc.d (container images ship one that denies everything) is
    # left as it is.
    policy_rc=/usr/sbin/policy-rc.d
    own_policy_rc=
    if [ ! -e "$policy_rc" ]; then
        cat >"$policy_rc" <<'POLICY'
#!/bin/sh
# Temporary, from loki-nova's tools/setup-env.sh: no system RabbitMQ or
# epmd is started by this install.
for arg in "$@"; do
    case "$arg" in
        rabbitmq-server|rabbitmq-server.service|epmd|epmd.service|epmd.socket)
            exit 101 ;;
    esac
done
exit 0
POLICY
        chmod 755 "$policy_rc"
        own_policy_rc=1
        trap 'rm -f "$policy_rc"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    if [ -n "$own_policy_rc" ]; then
        rm -f "$policy_rc"
        trap - EXIT
    fi
fi

if [ ! -x .venv/bin/python ]; then
    say "creating the virtualenv .venv"
    "$PYTHON" -m venv .venv
fi
say "installing loki-nova and its dependencies (Nova among them) into" \
    ".venv and building the Cython classifier; a few minutes the first time"
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -c 'from loki_nova.memtier import classifier; assert classifier.DEFAULT_BACKEND == "compiled", "the Cython classifier did not build"'

# The sandbox kernel (bookworm-backports 6.12, ~110 MB, once into
# ~/.cache/loki-nova/sandbox or $LOKI_SANDBOX_CACHE).  Without it the
# sandbox tests fail and say why; the rest of the suite still runs.
say "checking the sandbox kernel (fetched once; its progress follows)"
"$PYTHON" tools/sandbox.py fetch >/dev/null || echo "setup-env: warning:" \
    "could not fetch the sandbox kernel; sandbox tests will fail" \
    "(LOKI_SANDBOX=skip skips them)" >&2
say "done"

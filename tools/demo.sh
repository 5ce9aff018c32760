#!/usr/bin/env bash
# The main job (the README's demo command): the real tiering agent on a
# real two-tier kernel.  It sets up the machine and the virtualenv
# (tools/setup-env.sh), boots the sandbox (tools/sandbox.py: node0 DRAM,
# node1 slow memory, 512 MiB each) and runs loki_nova/memtier/demo.py in
# it: the agent built from its configuration (kernel tiers, DAMON, the
# process watcher, move_pages) over three workloads registered like
# guests, with a live table per interval on this terminal.  The timeline
# comes back through the sandbox's writable share; out/demo.png (drawn
# here on the host) and out/demo.json are the results.
#
# `bash tools/demo.sh vms` is the same story with real VMs: in the
# sandbox, libvirtd and QEMU run nested, Nova's services run in process
# with LokiDriver, two tiered QEMU guests are created through Nova's API,
# and the agent (built from its configuration, with its RPC server on
# Nova's message bus) tiers them while each guest verifies its memory on
# its serial console.  It is tests/nova/test_sandbox_vm.py run as the
# demo; out/demo-vms.png and out/demo-vms.json are its results.
#
# tools/setup-env.sh (about a minute and a half: it reinstalls the
# package) is skipped when the virtualenv, QEMU and the sandbox kernel
# are there and the build inputs have not changed since the last demo;
# LOKI_DEMO_SETUP=always runs it anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
mode=${1:-workloads}
case "$mode" in
    workloads|vms) ;;
    *) echo "usage: bash tools/demo.sh [workloads|vms] (got '$mode')" >&2
       exit 2 ;;
esac

stamp=.venv/.loki-demo-setup
inputs() {
    cat setup.cfg setup.py loki_nova/memtier/classifier/_core.pyx \
        loki_nova/memtier/classifier/_kernel.h | sha256sum | cut -d' ' -f1
}
ready() {
    [ "${LOKI_DEMO_SETUP:-}" != always ] &&
        [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(inputs)" ] &&
        command -v qemu-system-x86_64 >/dev/null &&
        [ -x /bin/busybox ] &&
        .venv/bin/python -c 'import matplotlib, oslo_messaging
from loki_nova.memtier import classifier
assert classifier.DEFAULT_BACKEND == "compiled"' 2>/dev/null
}
if ready; then
    echo "demo: the environment is set up (LOKI_DEMO_SETUP=always redoes it)"
else
    bash tools/setup-env.sh
    inputs >"$stamp"
fi
# A no-op once the kernel (and, for vms, the nested libvirt and QEMU) are
# in the cache; without them nothing can run.
fetch=(fetch)
[ "$mode" = workloads ] || fetch+=(--nested-virt)
python3 tools/sandbox.py "${fetch[@]}" >/dev/null

mkdir -p out
share=$(mktemp -d /tmp/loki-demo-XXXXXX)
trap 'rm -rf "$share"' EXIT

if [ "$mode" = vms ]; then
    echo "demo: booting the two-tier sandbox; in it libvirtd, Nova's" \
        "services with LokiDriver, two QEMU guests and the agent" \
        "(about 10 minutes under TCG)"
    status=0
    # Nova's own log lines are left out; the progress lines, the
    # guests' consoles and the agent's table stay.
    # Two vCPUs, and libvirt 11.3 + QEMU 10.0 for the nested guests
    # (tests/nova/nested_boot_probe.py says why).
    python3 tools/sandbox.py run --cpus 2 --nested-virt --timeout 2400 \
        --out-dir "$share" \
        --env OS_NOVA_DISABLE_EVENTLET_PATCHING=true \
        --env LOKI_DEMO_VMS_JSON=/tmp/loki-sandbox/demo-vms.json \
        -- "$PWD/.venv/bin/python" -m pytest -p no:cacheprovider -q -s \
        tests/nova/test_sandbox_vm.py 2>&1 |
        grep --line-buffered -v -E \
            '^[0-9-]{10} [0-9:,]{12} (DEBUG|INFO|WARNING) ' ||
        status=${PIPESTATUS[0]}
    if [ ! -f "$share/demo-vms.json" ]; then
        echo "demo: the sandbox run failed (exit $status) before writing" \
            "its timeline" >&2
        exit 1
    fi
    cp "$share/demo-vms.json" out/demo-vms.json
    .venv/bin/python -m loki_nova.memtier.demo plot out/demo-vms.json \
        --png out/demo-vms.png
    echo "demo: timeline out/demo-vms.json, picture out/demo-vms.png;" \
        "$((SECONDS - started)) s in all"
    exit "$status"
fi
echo "demo: booting the two-tier sandbox (QEMU TCG); the table follows"
# Two vCPUs: three workloads, the agent and three kdamonds share them.
status=0
python3 tools/sandbox.py run --cpus 2 --node-mib 512 512 --timeout 900 \
    --out-dir "$share" -- "$PWD/.venv/bin/python" -u \
    -m loki_nova.memtier.demo run --json /tmp/loki-sandbox/demo.json \
    --log /tmp/loki-sandbox/agent.log || status=$?
if [ -f "$share/agent.log" ]; then
    cp "$share/agent.log" out/demo-agent.log
fi
if [ ! -f "$share/demo.json" ]; then
    echo "demo: the sandbox run failed (exit $status) before writing its" \
        "timeline; the agent's log is out/demo-agent.log" >&2
    exit 1
fi
cp "$share/demo.json" out/demo.json
.venv/bin/python -m loki_nova.memtier.demo plot out/demo.json \
    --png out/demo.png
echo "demo: timeline out/demo.json, agent log out/demo-agent.log;" \
    "$((SECONDS - started)) s in all"
exit "$status"

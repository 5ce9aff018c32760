# Copyright 2026 The loki-nova developers
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The agent's own CPU cost per interval per GiB managed.

On this machine (``--tracker replay``, the default outside the sandbox):
one large workload process registered
with the process watcher, the real agent loop with its real watcher,
classifier, planner and mover in query mode (this machine has one NUMA
node: nothing may move), and the replay tracker feeding synthetic DAMON-
like samples of a Zipf 0.99 access pattern (no real tracker works on this
machine's kernel; ``loki_nova/memtier/trackers/replay.py``).  The
process manages 64 GiB: 8 GiB of RAM (``--size-mb``, every page present)
mapped 8 times (``--aliases``), so the agent walks 64 GiB of present pages
on a machine of 24 GiB.  The topology
is a stand-in for a host whose DRAM is this machine's node 0 plus a slow
node 1 of the same size.

In the sandbox (``--tracker damon``, the default there) the same loop runs
with the real DAMON tracker on the sandbox's two-tier kernel::

    python3 tools/sandbox.py run -- \\
        .venv/bin/python benchmarks/bench_agent.py --json

TCG inflates every figure there, so it is reported separately; it also
reports the kdamond's own CPU time.

``cpu_percent_per_64gib`` = CPU seconds per interval ÷ GiB managed × 64 ÷
the default interval (5 s) × 100 — target ≤ 1.  ``metadata_bytes_per_gib``
counts the agent's per-guest arrays that live between intervals (heat,
chunk layout) and those built each interval (samples, tiers).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import _report
from loki_nova.conf import memtier as memtier_conf
from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier.sim import sampler as sampler_mod
from loki_nova.memtier.sim import traces
from loki_nova.memtier import topology
from loki_nova.memtier.trackers import replay

GiB = 1024 ** 3
DEFAULT_INTERVAL = 5.0


def stand_in_topology(kfs):
    """Node 0 as this machine has it, plus a slow node 1 of the same size
    that stands in for PMem/CXL (nothing is ever moved to it)."""
    real = topology._read_nodes(kfs)
    cpus, total_mb, _ = real[0]
    dist = {0: 10, 1: 20}
    return topology.Topology((
        topology.Node(0, cpus, total_mb, dist, 0, 4),
        topology.Node(1, (), total_mb, {0: 20, 1: 10}, 1, 144)),
        'stand-in')


class VirtualPlacementAgent(agent_mod.Agent):
    """Stands in for a host where pages really move (this machine has one
    NUMA node and the mover runs in query mode): the probe query is made
    as usual, for its cost, but each chunk's tier is taken as where the
    agent's last moves put it, so the loop reaches its steady state
    instead of re-planning the same moves every interval."""

    def chunk_tiers(self, m):
        real = super().chunk_tiers(m)
        return real if m.tier is None else m.tier.copy()


def make_conf(tmp, tracker):
    path = os.path.join(tmp, 'memtier.conf')
    with open(path, 'w') as f:
        f.write('[memtier]\nwatchers = process\nregistration_dir = %s\n'
                'state_dir = %s\ndram_reserve_mb = 0\ndram_free_min_mb = 0\n'
                'tracker = %s\n'
                % (os.path.join(tmp, 'guests'), os.path.join(tmp, 'state'),
                   tracker))
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    conf(['--config-file', path], project='loki-nova')
    return conf.memtier


def zipf_source(seed=1, recorded=8):
    """Replay ``recorded`` intervals of sampled Zipf 0.99 accesses."""
    cache = {}

    def source(g, layout, n):
        if len(layout) not in cache:
            rng = np.random.default_rng(seed)
            trace = traces.make_trace('zipf', len(layout), rng)
            sampler = sampler_mod.AccessSampler(rng)
            cache[len(layout)] = [sampler.sample(trace.accesses(i))
                                  for i in range(recorded)]
        arrays = cache[len(layout)]
        return arrays[n % len(arrays)]
    return source


def kdamond_cpu_s(kfs):
    total = 0.0
    tick = os.sysconf('SC_CLK_TCK')
    base = 'sys/kernel/mm/damon/admin/kdamonds'
    if not kfs.exists(base + '/nr_kdamonds'):
        return None
    for i in range(kfs.read_int(base + '/nr_kdamonds')):
        pid = kfs.read_text('%s/%d/pid' % (base, i))
        if pid.lstrip('-').isdigit() and int(pid) > 0:
            fields = kfs.read_text('proc/%s/stat' % pid)
            fields = fields[fields.rindex(')') + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def metadata_bytes(agent):
    total = 0
    for m in agent.guests.values():
        n = len(m.layout)
        total += m.planner.heat.nbytes + m.layout.starts.nbytes \
            + m.layout.sizes.nbytes
        total += 2 * n     # samples and tiers of the interval, uint8 each
    return total


def main(argv=None):
    in_sandbox = os.environ.get('LOKI_SANDBOX') == '1'
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mb', type=int,
                        default=256 if in_sandbox else 8192)
    parser.add_argument('--aliases', type=int,
                        default=1 if in_sandbox else 8,
                        help='map the workload memory this many times, so '
                             'the agent manages aliases x size-mb of '
                             'present pages')
    parser.add_argument('--intervals', type=int, default=12)
    parser.add_argument('--warmup', type=int, default=None,
                        help='intervals before measuring (default: enough '
                             'for the first demotion of 3/4 of the memory '
                             'at the move cap, plus 3)')
    parser.add_argument('--tracker', choices=['replay', 'damon'],
                        default='damon' if in_sandbox else 'replay')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    if args.tracker == 'damon' and not in_sandbox:
        # DAMON on this machine belongs to the machine (shared/RIG.md).
        parser.exit(2, 'bench_agent: --tracker damon runs only in the '
                       'sandbox (python3 tools/sandbox.py run -- ...)\n')
    kfs = kernfs.KernelFS()
    with tempfile.TemporaryDirectory() as tmp:
        conf = make_conf(tmp, 'damon' if args.tracker == 'damon'
                         else 'auto')
        if args.warmup is None:
            per_interval = conf.move_rate_mb_per_s * conf.interval
            args.warmup = int(-(-args.size_mb * args.aliases * 3 // 4
                                // per_interval)) + 3
        reg = os.path.join(tmp, 'guests')
        proc = subprocess.Popen(
            [sys.executable, '-m', 'loki_nova.memtier.workload',
             '--size-mb', str(args.size_mb), '--hot-mb',
             str(max(1, args.size_mb // 8)), '--register-dir', reg,
             '--name', 'bench', '--aliases', str(args.aliases),
             '--floor-mb', str(args.size_mb * args.aliases // 4)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = proc.stdout.readline()
            if not ready.startswith('ready'):
                parser.exit(1, 'workload did not start: %r\n' % ready)
            if args.tracker == 'replay':
                agent = VirtualPlacementAgent(
                    conf, topology=stand_in_topology(kfs),
                    tracker=replay.ReplayTracker(zipf_source()),
                    mover=mover.Mover(mover.RateLimiter(1 << 50),
                                      query_only=True))
            else:
                agent = agent_mod.Agent(
                    conf, mover=mover.Mover(mover.RateLimiter(1 << 50),
                                            query_only=True))
            cpu, wall = [], []
            kd0 = None
            for i in range(args.warmup + args.intervals):
                if i == args.warmup:
                    kd0 = kdamond_cpu_s(kfs)
                    t0 = time.monotonic()
                report = agent.run_interval()
                if i >= args.warmup:
                    cpu.append(report.cpu_s)
                    wall.append(report.wall_s)
            span = time.monotonic() - t0
            kd1 = kdamond_cpu_s(kfs)
            managed = sum(m.guest.ram_bytes for m in agent.guests.values())
            meta = metadata_bytes(agent)
            agent.close()
        finally:
            proc.stdin.close()
            proc.wait(120)
    gib = managed / GiB
    cpu_s = statistics.median(cpu)
    report = {
        'where': 'sandbox (TCG)' if in_sandbox else 'this machine',
        'tracker': args.tracker,
        'managed_gib': round(gib, 3),
        'chunk_size_kb': conf.chunk_size_kb,
        'intervals': args.intervals,
        'warmup_intervals': args.warmup,
        'cpu_s_per_interval': round(cpu_s, 5),
        'wall_s_per_interval': round(statistics.median(wall), 5),
        'cpu_percent_per_64gib': round(
            cpu_s / gib * 64 / DEFAULT_INTERVAL * 100, 3),
        'metadata_bytes_per_gib': round(meta / gib),
        'metadata_fraction': meta / managed,
    }
    if args.tracker == 'damon' and kd0 is not None and kd1 is not None:
        report['kdamond_cpu_percent_of_wall'] = round(
            (kd1 - kd0) / span * 100, 3)
    _report.emit(report, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())

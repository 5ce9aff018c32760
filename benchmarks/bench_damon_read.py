#!/usr/bin/env python3
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

"""The DAMON tracker's two sources: what a read costs, what it covers.

Run it inside the sandbox (it needs DAMON)::

    python3 tools/sandbox.py run -- \\
        .venv/bin/python benchmarks/bench_damon_read.py --json

``--guests`` workload processes (each ``--size-mb`` with a hot part)
are monitored by one DamonTracker with the agent's DAMON intervals for
each source (sampling every 5 ms and aggregating every 100 ms for tried
regions; for the trace sampling 160 times and aggregating every 1 s or
a fifth of ``--interval``),
once per source: ``tried_regions`` (each read asks the guest's
kdamond for its last aggregation) and ``trace`` (each read takes every
aggregation since the last from DAMON's trace event).  Every
``--interval`` seconds, ``--rounds`` times, all guests are sampled one
after the other, as the agent does each interval.  Per source:

* ``pass_s``: median wall time to sample all guests (what the agent's
  interval spends measuring), ``cpu_s`` the process's CPU time for it;
* ``coverage``: median share of the wall time since a guest's previous
  sample that its sample covers (DAMON's aggregation intervals in it);
* ``cpu_share``: the process's CPU time over a whole round (the wait of
  ``--interval``, with the trace's collecting in it as the agent does
  every ``collect_every_s``, then the samples) per second of the round's
  wall time;
* ``lost_events``: trace events the tracing buffer overwrote before they
  were read (0 for tried regions);
* ``aggr_us``: DAMON's aggregation interval, each source's default for
  ``--interval``.

``--regions N`` holds every guest's DAMON at N regions (its minimum and
maximum), e.g. 1000, DAMON's most, to see what the sources cost when
the kdamonds report that many.

``pass_ratio`` = trace's ``pass_s`` / tried_regions' (lower is better);
``coverage_ratio`` = trace's ``coverage`` / tried_regions';
``cpu_ratio`` = trace's ``cpu_share`` / tried_regions'.  TCG slows
everything, the kdamonds included; the ratios are what count.

``placement`` runs the real agent (``loki-memtier-agent``, interval
``--agent-interval``) once per source on one workload of 128 MiB whose
16 MiB hot region alternates between two places every 700 ms (phases
shorter than the agent's interval), with a static DRAM budget of 24 MiB:
less than the two places together, so no placement holds all of them.
After ``--warmup`` intervals, at each of ``--intervals`` more: the share
of the two places' pages in DRAM (``hot_in_dram``, mean; at most 0.75)
and the MiB the agent moved (``moved_mib_per_interval``).  A view of the
last aggregation sees one place or the other, whichever the read falls
in; the whole interval sees both alike.  Each source runs with the
agent's defaults for it (hysteresis, DAMON's intervals), and the trace
twice more: with DAMON checking every 5 ms (tried regions' default; the
trace's checks 160 times an interval) and with the other source's
hysteresis of 256.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import _report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import pathlib  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402

from loki_nova.memtier import guest  # noqa: E402
from loki_nova.memtier import kernfs  # noqa: E402
from loki_nova.memtier import mover  # noqa: E402
from loki_nova.memtier.trackers import damon  # noqa: E402
from tests import workloads  # noqa: E402
from tests.sandbox import agentproc  # noqa: E402

CHUNK = 2 << 20
MiB = 1 << 20
PLACES_MB = (0, 64)
HOT_MB = 16
BUDGET_MB = 24
_MOVED = re.compile(r'interval (\d+): \d+ guest\(s\), ([\d.]+) MiB promoted, '
                    r'([\d.]+) MiB demoted')


def placement(source, args, hysteresis=None, sample_us=None):
    """The real agent on the alternating workload (see the docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        with workloads.Workload(
                '--size-mb', 128, '--hot-mb', HOT_MB,
                '--hot-offset-mb', PLACES_MB[0],
                '--alternate-mb', PLACES_MB[1], '--alternate-ms', 700,
                '--pause-ms', 20, '--register-dir', tmp / 'guests',
                '--name', 'alt', '--policy', 'static',
                '--floor-mb', BUDGET_MB, timeout=120) as w:
            options = dict(interval=args.agent_interval,
                           damon_source=source, usage_interval=0)
            if hysteresis is not None:
                options['hysteresis'] = hysteresis
            if sample_us is not None:
                options['damon_sample_us'] = sample_us
            agent = agentproc.AgentProcess(tmp, **options)
            shares = []
            try:
                n = agent.wait_interval_after(0, timeout=300)
                n = agent.wait_interval_after(n + args.warmup - 1)
                first = n
                for _ in range(args.intervals):
                    n = agent.wait_interval_after(n)
                    pages = np.arange(w.start, w.end, 4096, dtype=np.uint64)
                    nodes = mover.move_pages(w.pid, pages)
                    hot = np.concatenate([
                        nodes[p * 256:(p + HOT_MB) * 256]
                        for p in PLACES_MB])
                    shares.append(float((hot == 0).mean()))
            finally:
                status = agent.stop()
            text = agent.text()
        if status != 0 or 'Traceback' in text:
            raise SystemExit('bench_damon_read: the agent failed:\n'
                             + text[-3000:])
        moved = [float(p) + float(d) for i, p, d in _MOVED.findall(text)
                 if first < int(i) <= n]
    return {'hot_in_dram': round(statistics.mean(shares), 3),
            'moved_mib_per_interval': round(sum(moved) / len(moved), 1)}


def _rest(t, seconds):
    """Wait as the agent does between intervals: the tracker collects
    every ``collect_every_s`` if it asks to."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        every = t.collect_every_s
        time.sleep(left if every is None else min(left, every))
        if every is not None:
            t.collect()


def measure(source, guests, args):
    kfs = kernfs.KernelFS()
    regions = {}
    if args.regions:
        regions = dict(min_regions=args.regions, max_regions=args.regions)
    with tempfile.TemporaryDirectory() as state:
        t = damon.DamonTracker(kfs, state_dir=state, source=source,
                               interval_s=args.interval, **regions)
        if t.damon_source != source:
            raise SystemExit('bench_damon_read: source %s is not available '
                             'here' % source)
        try:
            t.update({g.key: (g, layout) for g, layout in guests})
            last = {}
            for g, layout in guests:          # the first read of each
                t.sample(g, layout)
                last[g.key] = time.monotonic()
            passes, cpus, coverage, rounds_cpu = [], [], [], []
            lost0 = t._trace.lost() if t._trace else 0
            for _ in range(args.rounds):
                r0, rw0 = time.process_time(), time.monotonic()
                _rest(t, args.interval)       # the agent's interval
                c0, w0 = time.process_time(), time.monotonic()
                for g, layout in guests:
                    t.sample(g, layout)
                    now = time.monotonic()
                    coverage.append(t.covered_s[g.key] / (now - last[g.key]))
                    last[g.key] = now
                passes.append(time.monotonic() - w0)
                cpus.append(time.process_time() - c0)
                rounds_cpu.append((time.process_time() - r0)
                                  / (time.monotonic() - rw0))
            lost = t._trace.lost() - lost0 if t._trace else 0
            aggr_us = t.attrs['aggr_us']
        finally:
            t.close()
    return {'aggr_us': aggr_us,
            'pass_s': round(statistics.median(passes), 4),
            'cpu_s': round(statistics.median(cpus), 4),
            'cpu_share': round(statistics.median(rounds_cpu), 4),
            'coverage': round(statistics.median(coverage), 4),
            'lost_events': lost}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--guests', type=int, default=4)
    parser.add_argument('--size-mb', type=int, default=32)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--regions', type=int,
                        help='hold each guest\'s DAMON at this many '
                             'regions (its min and max; default: DAMON\'s '
                             'own 10-1000)')
    parser.add_argument('--interval', type=float, default=2.0)
    parser.add_argument('--agent-interval', type=float, default=2.0)
    parser.add_argument('--warmup', type=int, default=4)
    parser.add_argument('--intervals', type=int, default=10)
    parser.add_argument('--no-placement', action='store_true')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    if os.environ.get('LOKI_SANDBOX') != '1':
        parser.exit(2, 'bench_damon_read: runs only in the sandbox '
                       '(python3 tools/sandbox.py run -- ...)\n')
    kfs = kernfs.KernelFS()
    procs = []
    try:
        for i in range(args.guests):
            procs.append(workloads.Workload(
                '--size-mb', args.size_mb, '--hot-mb', args.size_mb // 4))
        guests = []
        for i, w in enumerate(procs):
            g = guest.Guest('g%d' % i, guest.identify(kfs, w.pid),
                            (guest.RamRange(w.start, w.end),),
                            guest.Policy('static', 0), 'process')
            guests.append((g, guest.ChunkLayout(g.ranges, CHUNK)))
        report = {'guests': args.guests, 'interval_s': args.interval,
                  'rounds': args.rounds, 'regions': args.regions}
        for source in damon.SOURCES:
            report[source] = measure(source, guests, args)
    finally:
        for w in procs:
            w.close()
    tried, trace = report['tried_regions'], report['trace']
    report['pass_ratio'] = round(trace['pass_s'] / tried['pass_s'], 4)
    report['cpu_ratio'] = round(trace['cpu_share'] / tried['cpu_share'], 4)
    report['coverage_ratio'] = round(
        trace['coverage'] / tried['coverage'], 2)
    if not args.no_placement:
        # Each source with the agent's defaults for it, and the trace
        # with tried regions' 5 ms checks and with its hysteresis, 256.
        report['placement'] = {
            source: placement(source, args) for source in damon.SOURCES}
        report['placement']['trace, damon_sample_us 5000'] = placement(
            'trace', args, sample_us=5000)
        report['placement']['trace, hysteresis 256'] = placement(
            'trace', args, hysteresis=256)
    _report.emit(report, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())

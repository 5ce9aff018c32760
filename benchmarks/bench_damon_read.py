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
are monitored by one DamonTracker with the agent's DAMON intervals (5 ms
/ 100 ms), once per source: ``tried_regions`` (each read asks the guest's
kdamond for its last aggregation) and ``trace`` (each read takes every
aggregation since the last from DAMON's trace event).  Every
``--interval`` seconds, ``--rounds`` times, all guests are sampled one
after the other, as the agent does each interval.  Per source:

* ``pass_s``: median wall time to sample all guests (what the agent's
  interval spends measuring), ``cpu_s`` the process's CPU time for it;
* ``coverage``: median share of the wall time since a guest's previous
  sample that its sample covers (DAMON's aggregation intervals in it).

``pass_ratio`` = trace's ``pass_s`` / tried_regions' (lower is better);
``coverage_ratio`` = trace's ``coverage`` / tried_regions'.  TCG slows
everything, the kdamonds included; the ratios are what count.
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

from loki_nova.memtier import guest  # noqa: E402
from loki_nova.memtier import kernfs  # noqa: E402
from loki_nova.memtier.trackers import damon  # noqa: E402
from tests import workloads  # noqa: E402

CHUNK = 2 << 20


def measure(source, guests, args):
    kfs = kernfs.KernelFS()
    with tempfile.TemporaryDirectory() as state:
        t = damon.DamonTracker(kfs, state_dir=state, source=source)
        if t.damon_source != source:
            raise SystemExit('bench_damon_read: source %s is not available '
                             'here' % source)
        try:
            t.update({g.key: (g, layout) for g, layout in guests})
            last = {}
            for g, layout in guests:          # the first read of each
                t.sample(g, layout)
                last[g.key] = time.monotonic()
            passes, cpus, coverage = [], [], []
            for _ in range(args.rounds):
                time.sleep(args.interval)     # the agent's interval
                c0, w0 = time.process_time(), time.monotonic()
                for g, layout in guests:
                    t.sample(g, layout)
                    now = time.monotonic()
                    coverage.append(t.covered_s[g.key] / (now - last[g.key]))
                    last[g.key] = now
                passes.append(time.monotonic() - w0)
                cpus.append(time.process_time() - c0)
        finally:
            t.close()
    return {'pass_s': round(statistics.median(passes), 4),
            'cpu_s': round(statistics.median(cpus), 4),
            'coverage': round(statistics.median(coverage), 4)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--guests', type=int, default=4)
    parser.add_argument('--size-mb', type=int, default=32)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--interval', type=float, default=2.0)
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
                  'rounds': args.rounds}
        for source in damon.SOURCES:
            report[source] = measure(source, guests, args)
    finally:
        for w in procs:
            w.close()
    tried, trace = report['tried_regions'], report['trace']
    report['pass_ratio'] = round(trace['pass_s'] / tried['pass_s'], 4)
    report['coverage_ratio'] = round(
        trace['coverage'] / tried['coverage'], 2)
    _report.emit(report, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())

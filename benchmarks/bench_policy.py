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

"""Placement quality: loki against the baselines and the oracle.

Every trace is simulated with the simulator's defaults (a 16 GiB guest in
2 MiB chunks, DRAM 25 % of it, 100 intervals of 5 s of which 20 are
warm-up, moves capped at 256 MiB/s), once per ``--seeds`` seed; each
figure is the median over seeds.  Targets (shared/BENCH.md):

* Zipf 0.99 at 25 % DRAM: loki >= 0.97 of the oracle and above every
  baseline;
* moving hot set: loki back to >= 0.9 of the oracle within 5 intervals
  (``adaptation_intervals``).
"""

import argparse
import json
import statistics
import sys

from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import policies

TRACES = ('zipf', 'hotset', 'phases', 'scan', 'uniform')
BASELINES = ('first-touch', 'kernel-like', 'recency')


def run(traces, seeds, memory_gib):
    report = {}
    for trace in traces:
        runs = []
        for seed in seeds:
            config = engine.SimConfig(seed=seed)
            guest = engine.GuestSpec('guest', int(memory_gib * 1024), trace)
            runs.append(engine.run([guest], config))
        entry = {
            name: statistics.median(r.policy(name).hit_ratio for r in runs)
            for name in policies.POLICY_NAMES}
        entry['ratio_to_oracle'] = statistics.median(
            r.policy('loki').ratio_to_oracle for r in runs)
        entry['loki_migrated_gib'] = statistics.median(
            r.policy('loki').migrated_bytes / 2 ** 30 for r in runs)
        entry['loki_above_every_baseline'] = all(
            r.policy('loki').hit_ratio > r.policy(b).hit_ratio
            for r in runs for b in BASELINES)
        if runs[0].shift_at is not None:
            adaptation = [r.adaptation_intervals for r in runs]
            entry['adaptation_intervals'] = (
                None if None in adaptation else max(adaptation))
        report[trace] = entry
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trace', action='append', choices=TRACES)
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--memory-gib', type=float, default=16.0)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    report = run(args.trace or TRACES, range(1, args.seeds + 1),
                 args.memory_gib)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for trace, entry in report.items():
            print(trace)
            for key, value in entry.items():
                print('  %-26s %s' % (key, value))
    return 0


if __name__ == '__main__':
    sys.exit(main())

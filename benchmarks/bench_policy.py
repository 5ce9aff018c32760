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

Synthetic traces are simulated with the simulator's defaults (a 16 GiB
guest in 2 MiB chunks, DRAM 25 % of it, 100 intervals of 5 s of which 20
are warm-up, moves capped at 256 MiB/s), once per ``--seeds`` seed and
tracker window (below; the JSON's ``synthetic`` maps each window to its
traces); each figure is the median over seeds.  With the window
``interval`` the tracker is DAMON's trace as the agent reads it by
default: a check every 31.25 ms (``damon.default_sample_us``: 160 an
interval), the share of them that found a chunk accessed on 0-160; with
1 an idealised single read of 20 checks that tile the interval, on
0-20.  Targets (shared/BENCH.md):

* Zipf 0.99 at 25 % DRAM: loki >= 0.97 of the oracle and above every
  baseline (first touch, kernel-like, recency);
* moving hot set: loki back to >= 0.9 of the oracle within 5 intervals
  (``adaptation_intervals``).

Recorded traces (``loki-memtier record``; by default every
tests/data/traces/*.npz) are replayed whole -- their own interval length,
the first tenth as warm-up -- at DRAM 12.5, 25 and 50 % of their
footprint.  Goals, each reported pass/fail per trace and DRAM share:

* ``vs_oracle``: loki >= 0.9 of the oracle;
* ``vs_static_and_previous``: loki >= max(static-best, previous-interval);
* ``vs_first_touch``: loki never more than 0.01 below first touch.

Each recorded entry also gives ``migrated_mib``, what each policy that
moves chunks (loki, previous-interval, kernel-like, recency) migrated over
the replay: the hit ratios count no cost for moves, but a real host pays
for each in copying and in the guest's stalls.

Beside the goals each recorded entry reports ``held_out``: how far any
policy that does not know the future could get, to read the
``static-best`` goal against (``sim.hindsight``).  ``static-best`` picks
its chunks from the totals of the very intervals it is scored on, so on a
stationary program it also profits from the chance variation of those
intervals.  Its held-out variant picks for each half of the recording
from the totals of the other half; its leave-one-out variant scores each
interval against the pick from every other interval, future ones
included.  ``causal_top_k`` is the best of a few estimators that see what
loki sees (the tracker's samples of the intervals before), with no move
cap and no hysteresis: the previous interval, the sum of all intervals
before, and heats halved every 1, 2 or 4 intervals;
``causal_exact_top_k`` the same fed the true accesses.

Each recording is replayed once per tracker window (``--tracker-window``,
default 1 and ``interval``; see ``sim.tracefile``): with 1 the tracker's
one read per interval sees the interval's last DAMON snapshot (the
recordings aggregate over 1 s of 6 s intervals), with ``interval`` all of
them -- an agent whose ``damon_aggr_us`` is as long as its interval.  The
JSON's ``recorded`` maps each window to ``traces`` (per trace and DRAM
share, as above) and ``all_passed``.

``--compare-rules`` replays the recordings under both ways of turning
DAMON regions into chunk values (loki's ratio to the oracle for each,
with the first ``--tracker-window``); ``--hysteresis`` sets loki's
hysteresis, to compare values on both kinds of trace (default: the
agent's for what the tracker sees -- 64 with ``interval``, as with
``damon_source = trace``, the agent's default; 256 with a window of the
last snapshots, as with ``tried_regions``).
"""

import argparse
import glob
import json
import os
import statistics
import sys

from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import hindsight
from loki_nova.memtier.sim import policies
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.trackers import damon

TRACES = ('zipf', 'hotset', 'phases', 'scan', 'uniform')
BASELINES = ('first-touch', 'kernel-like', 'recency')
#: Policies that move chunks after their first touch (the oracle's moves
#: are free and unbounded, so it is left out), whose migrations the
#: recorded report gives beside their hit ratios.
MOVING = ('loki', 'previous-interval', 'kernel-like', 'recency')
RECORDED_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tests', 'data', 'traces')
DRAM_SHARES = (0.125, 0.25, 0.5)


def run(traces, seeds, memory_gib, params=None, window=1, sample_us=None):
    report = {}
    for trace in traces:
        runs = []
        for seed in seeds:
            config = engine.SimConfig(
                seed=seed, tracker_window=window,
                sample_us=(sample_us if window == tracefile.WINDOW_INTERVAL
                           else None))
            guest = engine.GuestSpec('guest', int(memory_gib * 1024), trace)
            runs.append(engine.run([guest], config, params=params))
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


def replay(path, dram_share, chunk_rule=damon.DEFAULT_CHUNK_RULE,
           params=None, window=1):
    """One recorded trace at one DRAM share, the tracker reading the last
    ``window`` snapshots of each interval: a ``SimResult``."""
    recording = tracefile.load(path)
    intervals = recording.intervals
    config = engine.SimConfig(
        intervals=intervals, warmup=max(1, intervals // 10),
        interval_s=float(recording.meta['interval_s']),
        chunk_size=int(recording.meta['chunk_size']),
        dram_share=dram_share, chunk_rule=chunk_rule, tracker_window=window)
    guest = engine.GuestSpec('guest', 0, floor=dram_share, trace_file=path)
    return engine.run([guest], config, params=params)


def recorded(paths, params=None, chunk_rule=damon.DEFAULT_CHUNK_RULE,
             window=1):
    report = {}
    for path in paths:
        per_share = {}
        for share in DRAM_SHARES:
            result = replay(path, share, chunk_rule, params, window)
            hit = {p.name: p.hit_ratio for p in result.policies}
            loki, oracle = hit['loki'], hit['oracle']
            best_baseline = max(hit['static-best'],
                                hit['previous-interval'])
            goals = {
                'vs_oracle': loki >= 0.9 * oracle,
                'vs_static_and_previous': loki >= best_baseline,
                'vs_first_touch': loki >= hit['first-touch'] - 0.01,
            }
            entry = {name: round(value, 4) for name, value in hit.items()}
            entry.update(
                ratio_to_oracle=round(loki / oracle, 4) if oracle else None,
                margin_vs_static_and_previous=round(loki - best_baseline,
                                                    4),
                migrated_mib={p.name: p.migrated_bytes // 2 ** 20
                              for p in result.policies
                              if p.name in MOVING},
                goals=goals, passed=all(goals.values()),
                held_out=held_out(result))
            per_share['%g%%' % (share * 100)] = entry
        report[os.path.basename(path)] = {
            'footprint_mib': result.guests[0].memory_mb,
            'intervals': result.config.intervals,
            'interval_s': result.config.interval_s,
            'dram': per_share}
    return report


def held_out(result):
    """The replay's ``sim.hindsight`` references (``result.hindsight``),
    with loki's hit ratio beside them."""
    refs = result.hindsight
    causal, causal_hit = hindsight.best(refs['causal'])
    exact, exact_hit = hindsight.best(refs['causal_exact'])
    return {
        'loki': round(result.policy('loki').hit_ratio, 4),
        'static_best_in_sample': round(refs['static_in_sample'], 4),
        'static_best_held_out': round(refs['static_held_out'], 4),
        'static_best_leave_one_out': round(refs['static_leave_one_out'],
                                           4),
        'causal_top_k': round(causal_hit, 4),
        'causal_estimator': causal,
        'causal_exact_top_k': round(exact_hit, 4),
        'causal_exact_estimator': exact,
    }


def compare_rules(paths, params=None, window=1):
    report = {}
    for path in paths:
        rows = {}
        for share in DRAM_SHARES:
            rows['%g%%' % (share * 100)] = {
                rule: round(replay(path, share, rule, params,
                                   window).policy('loki').ratio_to_oracle,
                            4)
                for rule in damon.CHUNK_RULES}
        report[os.path.basename(path)] = rows
    return report


def _print_recorded(report):
    columns = ('loki', 'oracle', 'static-best', 'previous-interval',
               'first-touch', 'kernel-like', 'recency')
    print('%-22s %5s ' % ('recorded trace', 'DRAM')
          + ' '.join('%8s' % c[:8] for c in columns) + '  goals')
    for name, trace in report.items():
        for share, entry in trace['dram'].items():
            failed = [g for g, ok in entry['goals'].items() if not ok]
            print('%-22s %5s ' % (name, share)
                  + ' '.join('%8.4f' % entry[c] for c in columns)
                  + '  ' + ('pass' if not failed
                            else 'FAIL ' + ','.join(failed)))
    print('%-22s %5s ' % ('migrated MiB', 'DRAM')
          + ' '.join('%8s' % c[:8] for c in MOVING))
    for name, trace in report.items():
        for share, entry in trace['dram'].items():
            print('%-22s %5s ' % (name, share) + ' '.join(
                '%8d' % entry['migrated_mib'][c] for c in MOVING))
    print('%-22s %5s %8s %9s %9s %9s %9s %9s  %s' % (
        'held out', 'DRAM', 'loki', 'static-in', 'static-ho', 'static-lo',
        'causal', 'exact', 'causal estimator (samples / exact)'))
    for name, trace in report.items():
        for share, entry in trace['dram'].items():
            h = entry['held_out']
            print('%-22s %5s %8.4f %9.4f %9.4f %9.4f %9.4f %9.4f  %s / %s'
                  % (name, share, h['loki'], h['static_best_in_sample'],
                     h['static_best_held_out'],
                     h['static_best_leave_one_out'], h['causal_top_k'],
                     h['causal_exact_top_k'], h['causal_estimator'],
                     h['causal_exact_estimator']))


WINDOW_MEANINGS = {
    '1': 'each read sees the last DAMON aggregation interval of the '
         'recording: the agent with damon_aggr_us equal to the '
         'recording\'s aggr_us',
    tracefile.WINDOW_INTERVAL: 'each read sees the whole interval: the '
                               'agent with damon_aggr_us as long as its '
                               'interval',
}


def _window(text):
    try:
        return tracefile.check_window(
            text if text == tracefile.WINDOW_INTERVAL else int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            'must be a whole number >= 1 or "%s", got %r'
            % (tracefile.WINDOW_INTERVAL, text)) from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trace', action='append', choices=TRACES)
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--memory-gib', type=float, default=16.0)
    parser.add_argument('--trace-file', action='append', metavar='FILE.npz',
                        help='recorded traces to replay (default: %s/*.npz)'
                             % os.path.relpath(RECORDED_DIR))
    parser.add_argument('--no-synthetic', action='store_true')
    parser.add_argument('--no-recorded', action='store_true')
    parser.add_argument('--compare-rules', action='store_true',
                        help='replay the recordings under each chunk rule')
    parser.add_argument('--hysteresis', type=int,
                        help='loki\'s hysteresis (default: the agent\'s '
                             'for what the tracker sees: 64 with '
                             '--tracker-window interval, as with '
                             'damon_source = trace, 256 otherwise)')
    parser.add_argument('--tracker-window', action='append',
                        type=_window, metavar='N|interval',
                        help='replay the recordings with the tracker '
                             'reading the last N DAMON snapshots of each '
                             'interval, or all ("interval"), and the '
                             'synthetic traces with one read of 20 checks '
                             '(N) or DAMON\'s trace over the interval; '
                             'repeatable (default: 1 and interval)')
    parser.add_argument('--sample-us', type=int,
                        help='synthetic traces with the window "interval": '
                             'microseconds between DAMON\'s checks (default '
                             'the agent\'s with the trace, the interval / '
                             '160)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    windows = args.tracker_window or [1, tracefile.WINDOW_INTERVAL]

    def window_params(window):
        if args.hysteresis is None:
            return None               # the engine's default_params
        return engine.default_params(
            engine.SimConfig(tracker_window=window), args.hysteresis)
    paths = args.trace_file or sorted(glob.glob(os.path.join(
        RECORDED_DIR, '*.npz')))
    report = {}
    if args.compare_rules:
        report['chunk_rules'] = compare_rules(
            paths, window_params(windows[0]), windows[0])
    else:
        if not args.no_synthetic:
            report['synthetic'] = {
                str(window): run(args.trace or TRACES,
                                 range(1, args.seeds + 1), args.memory_gib,
                                 window_params(window), window,
                                 args.sample_us)
                for window in windows}
        if not args.no_recorded and paths:
            report['recorded'] = {}
            for window in windows:
                traces = recorded(paths, window_params(window),
                                  window=window)
                report['recorded'][str(window)] = {
                    'traces': traces,
                    'all_passed': all(e['passed'] for t in traces.values()
                                      for e in t['dram'].values())}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for window, traces in report.get('synthetic', {}).items():
        print('synthetic, tracker window: %s' % window)
        for trace, entry in traces.items():
            print(trace)
            for key, value in entry.items():
                print('  %-26s %s' % (key, value))
    for window, entry in report.get('recorded', {}).items():
        print('tracker window: %s (%s)' % (window, WINDOW_MEANINGS.get(
            window, 'the last %s DAMON snapshots of each interval'
            % window)))
        _print_recorded(entry['traces'])
        print('all recorded goals passed: %s' % entry['all_passed'])
    for name, rows in report.get('chunk_rules', {}).items():
        for share, ratios in rows.items():
            print('%-22s %5s loki/oracle %s' % (name, share, '  '.join(
                '%s %.4f' % kv for kv in ratios.items())))
    return 0


if __name__ == '__main__':
    sys.exit(main())

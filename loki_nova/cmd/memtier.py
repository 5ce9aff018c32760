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

"""``loki-memtier``: the operator's command line.

Verbs: ``status`` (the host's tiers and guests, from its agent),
``heatmap`` (a guest's heat over recent intervals, as a PNG),
``simulate`` (trace-driven comparison of tiering policies, on synthetic
traces or recorded ones), ``record`` (a process's DAMON accesses to a trace
file, for ``simulate --trace-file``), ``flavor-properties`` (the flavor
properties of a tiered flavor).
"""

import argparse
import json
import os
import shlex
import sys

from loki_nova.memtier import recorder
from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import report
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.sim import traces
from loki_nova.memtier.trackers import damon
from loki_nova.virt import specs

MiB = 1024 * 1024


class _Parser(argparse.ArgumentParser):
    """Errors as one line naming the argument, exit status 2."""

    def error(self, message):
        self.exit(2, '%s: error: %s\n' % (self.prog, message))


def _fraction(name, low_open=True):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                '%s must be a number, got %r' % (name, text))
        ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
        if not ok:
            raise argparse.ArgumentTypeError(
                '%s must be in %s, got %s'
                % (name, '(0, 1]' if low_open else '[0, 1]', text))
        return value
    return parse


def _positive(name, kind=float):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                '%s must be a %s, got %r'
                % (name, 'number' if kind is float else 'whole number',
                   text))
        if not value > 0:
            raise argparse.ArgumentTypeError(
                '%s must be > 0, got %s' % (name, text))
        return value
    return parse


def _guest_spec(text):
    """``name=web,trace=zipf,memory-gib=16,policy=on_demand,floor=0.1,
    ceiling=0.5`` -> GuestSpec fields."""
    fields = {}
    keys = {'name': str, 'trace': str, 'memory-gib': float, 'policy': str,
            'floor': float, 'ceiling': float, 'alpha': float,
            'trace-file': str}
    for item in text.split(','):
        key, sep, value = item.partition('=')
        if not sep or key not in keys:
            raise argparse.ArgumentTypeError(
                '--guest takes comma-separated key=value pairs with keys %s;'
                ' got %r' % (', '.join(keys), item))
        try:
            fields[key] = keys[key](value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                '--guest %s must be a number, got %r' % (key, value))
    return fields


def _add_simulate(subparsers):
    parser = subparsers.add_parser(
        'simulate', help='compare tiering policies on synthetic or '
                         'recorded traces',
        description='Trace-driven simulation: loki against no tiering '
                    '(first touch), kernel-like promote-on-access, '
                    'recency-only, the previous interval\'s hottest, the '
                    'best static placement (hindsight) and the oracle, on '
                    'the same accesses and samples.')
    parser.add_argument(
        '--trace', action='append', choices=traces.TRACE_NAMES,
        help='trace to simulate, one experiment each; repeatable '
             '(default: zipf and hotset)')
    parser.add_argument(
        '--trace-file', action='append', metavar='FILE.npz',
        help='a recording of loki-memtier record to replay, one experiment '
             'each; repeatable (with --trace, both are run)')
    parser.add_argument(
        '--guest', action='append', type=_guest_spec, metavar='SPEC',
        help='a guest of one multi-guest experiment, e.g. name=db,'
             'trace=zipf,memory-gib=16,policy=on_demand,floor=0.1,'
             'ceiling=0.5 or name=kv,trace-file=redis.npz; repeatable '
             '(replaces --trace and --trace-file)')
    parser.add_argument('--memory-gib', type=_positive('--memory-gib'),
                        default=16.0, help='guest size (default 16)')
    parser.add_argument('--dram-share', type=_fraction('--dram-share'),
                        default=0.25,
                        help='host DRAM as a fraction of the footprint, in '
                             '(0, 1] (default 0.25)')
    parser.add_argument('--alpha', type=_positive('--alpha'), default=0.99,
                        help='Zipf exponent, > 0 (default 0.99)')
    parser.add_argument('--intervals', type=_positive('--intervals', int),
                        help='intervals to simulate (default 100, or all '
                             'of a recording)')
    parser.add_argument('--warmup', type=int,
                        help='intervals left out of the totals while '
                             'placement converges from first touch '
                             '(default 20, or a tenth of a recording)')
    parser.add_argument('--interval-s', type=_positive('--interval-s'),
                        help='interval length in seconds (default 5, or '
                             'the recording\'s)')
    parser.add_argument('--move-mb-per-s', type=float, default=256.0,
                        help='migration cap (default 256 MiB/s)')
    parser.add_argument('--chunk-kb', type=int, choices=(4, 2048),
                        help='chunk size (default 2048, or the '
                             'recording\'s)')
    parser.add_argument('--chunk-value', choices=damon.CHUNK_RULES,
                        default=damon.DEFAULT_CHUNK_RULE,
                        help='how the DAMON tracker makes a chunk\'s value '
                             'of the regions overlapping it, for recorded '
                             'traces: bytes (weighted by the bytes each '
                             'covers) or hottest (the hottest region); '
                             'default %s' % damon.DEFAULT_CHUNK_RULE)
    parser.add_argument('--tracker-window', type=_tracker_window,
                        default=1, metavar='N|interval',
                        help='for recorded traces: how many of each '
                             'interval\'s DAMON snapshots one read of the '
                             'tracker covers, back from the interval\'s '
                             'end -- 1 (default) is the recording\'s '
                             'aggregation interval, "interval" one as long '
                             'as the interval; for synthetic traces 1 (or '
                             'any N) is one read of --samples checks that '
                             'tile the interval, "interval" DAMON\'s trace '
                             'as the agent reads it (a check every '
                             '--sample-us, on 0-160)')
    parser.add_argument('--samples', type=_positive('--samples', int),
                        help='synthetic traces, --tracker-window 1: access '
                             'checks per interval (default 20)')
    parser.add_argument('--sample-us', type=_positive('--sample-us', int),
                        help='synthetic traces, --tracker-window interval: '
                             'microseconds between DAMON\'s checks '
                             '(default the agent\'s with the trace: the '
                             'interval / 160, at least 5000)')
    parser.add_argument('--detection', type=_fraction('--detection'),
                        default=0.9,
                        help='chance that a check sees an access that '
                             'happened (default 0.9)')
    parser.add_argument('--fast-ns', type=_positive('--fast-ns'),
                        default=81.0, help='DRAM latency (default 81)')
    parser.add_argument('--slow-ns', type=_positive('--slow-ns'),
                        default=305.0,
                        help='slow-tier latency (default 305, Optane PMem; '
                             'CXL is about 140-400)')
    parser.add_argument('--stall-fraction',
                        type=_fraction('--stall-fraction', low_open=False),
                        default=0.3,
                        help='share of all-DRAM run time spent waiting on '
                             'memory, for the slowdown model (default 0.3)')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--json', action='store_true',
                        help='print JSON instead of tables')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='write hit ratio over time per policy')
    parser.set_defaults(func=_simulate, verb_parser=parser)


def _recorded_defaults(guests):
    """(intervals, interval_s, chunk_size) of the first recording among
    ``guests``, the fewest intervals of all; None without recordings."""
    files = [g.trace_file for g in guests if g.trace_file is not None]
    if not files:
        return None
    recordings = [tracefile.load(f) for f in files]
    first = recordings[0].meta
    return (min(r.intervals for r in recordings), float(first['interval_s']),
            int(first['chunk_size']))


def _config(args, guests):
    recorded = _recorded_defaults(guests)
    intervals, interval_s, chunk_size = recorded or (100, 5.0, 2048 * 1024)
    intervals = args.intervals or intervals
    if args.warmup is not None:
        warmup = args.warmup
    else:
        warmup = min(20, intervals // 10) if recorded else \
            min(20, intervals - 1)
    return engine.SimConfig(
        intervals=intervals, warmup=warmup,
        chunk_size=args.chunk_kb * 1024 if args.chunk_kb else chunk_size,
        dram_share=args.dram_share,
        interval_s=args.interval_s or interval_s,
        move_mb_per_s=args.move_mb_per_s,
        samples=args.samples or 20, sample_us=args.sample_us,
        detection=args.detection,
        fast_ns=args.fast_ns, slow_ns=args.slow_ns,
        stall_fraction=args.stall_fraction, seed=args.seed,
        chunk_rule=args.chunk_value, tracker_window=args.tracker_window)


def _tracker_window(text):
    if text == tracefile.WINDOW_INTERVAL:
        return text
    try:
        return tracefile.check_window(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            '--tracker-window must be a whole number >= 1 or "%s", got %r'
            % (tracefile.WINDOW_INTERVAL, text)) from None


def _simulate(args, parser):
    whole = args.tracker_window == tracefile.WINDOW_INTERVAL
    if args.sample_us is not None and not whole:
        parser.error('--sample-us is for --tracker-window interval (DAMON\'s '
                     'trace over the interval); with --tracker-window %s a '
                     'synthetic trace is read with --samples checks'
                     % args.tracker_window)
    if args.samples is not None and whole:
        parser.error('--samples is for --tracker-window 1; with interval a '
                     'synthetic trace is read with a check every '
                     '--sample-us')
    try:
        if args.guest:
            experiments = [[_guest(fields, i, args)
                            for i, fields in enumerate(args.guest)]]
        else:
            experiments = [[engine.GuestSpec(
                name='guest', memory_mb=int(args.memory_gib * 1024),
                trace=trace, floor=args.dram_share, alpha=args.alpha)]
                for trace in (args.trace or ([] if args.trace_file
                                             else ['zipf', 'hotset']))]
            experiments += [[engine.GuestSpec(
                name='guest', memory_mb=0, floor=args.dram_share,
                trace_file=path)] for path in args.trace_file or []]
        results = []
        for guests in experiments:
            config = _config(args, guests)
            if not args.json:
                print('simulating %s ...' % ', '.join(
                    g.trace for g in guests), file=sys.stderr, flush=True)
            results.append(engine.run(guests, config))
    except ValueError as error:
        # TraceFileError is a ValueError naming the file.
        parser.error(str(error))

    if args.json:
        print(json.dumps([report.as_dict(r) for r in results], indent=1))
    else:
        print('\n\n'.join(report.table(r) for r in results))
    if args.plot:
        report.plot(results, args.plot)
        if not args.json:
            print('\nplot written to %s' % args.plot)
    return 0


def _guest(fields, index, args):
    return engine.GuestSpec(
        name=fields.get('name', 'guest%d' % index),
        memory_mb=int(fields.get('memory-gib', args.memory_gib) * 1024),
        trace=fields.get('trace', 'zipf'),
        policy=fields.get('policy', 'static'),
        floor=fields.get('floor', args.dram_share),
        ceiling=fields.get('ceiling'),
        alpha=fields.get('alpha', args.alpha),
        trace_file=fields.get('trace-file'))


def _address_range(text):
    lo, sep, hi = text.partition('-')
    try:
        start, end = int(lo, 0), int(hi, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            '--range takes START-END addresses (e.g. 0x7f0000000000-'
            '0x7f0010000000), got %r' % text)
    if not sep or start % 4096 or end % 4096 or end <= start:
        raise argparse.ArgumentTypeError(
            '--range %s must be a non-empty, 4 KiB aligned START-END'
            % text)
    return start, end


def _add_record(subparsers):
    parser = subparsers.add_parser(
        'record', help='record a process\'s DAMON accesses to a trace file',
        description='Record what DAMON sees of one process (a QEMU guest '
                    'or any program) interval by interval -- the raw '
                    'regions, with the monitored address ranges -- to a '
                    'compressed file that "loki-memtier simulate '
                    '--trace-file" replays against every policy and the '
                    'oracle.  It runs the agent\'s DAMON tracker, which '
                    'writes to DAMON only when no kdamond exists that it '
                    'did not start; so never alongside the agent or any '
                    'other DAMON user.  Needs root.')
    parser.add_argument('--pid', type=_positive('--pid', int), required=True,
                        help='the process to record (a QEMU guest\'s pid '
                             'or a program\'s)')
    parser.add_argument('--output', '-o', required=True, metavar='FILE.npz',
                        help='where to write the recording')
    parser.add_argument('--intervals', type=_positive('--intervals', int),
                        default=60, help='intervals to record (default 60)')
    parser.add_argument('--interval-s', type=_positive('--interval-s'),
                        default=1.0,
                        help='length of one interval, seconds (default 1)')
    parser.add_argument('--snapshots', type=_positive('--snapshots', int),
                        default=1,
                        help='DAMON region snapshots per interval, evenly '
                             'spaced, the last at its end; the replay '
                             'scores against all of them and lets policies '
                             'see only the last, as the agent does '
                             '(default 1)')
    parser.add_argument('--mappings', choices=recorder.MAPPINGS,
                        default='data',
                        help='which address ranges to record: data (the '
                             'writable anonymous and shared-memory '
                             'mappings) or guest-ram (a QEMU guest\'s memfd '
                             'RAM); default data')
    parser.add_argument('--range', action='append', type=_address_range,
                        dest='ranges', metavar='START-END',
                        help='record this address range instead; '
                             'repeatable')
    parser.add_argument('--chunk-kb', type=int, choices=(4, 2048),
                        default=2048,
                        help='the chunk size the replay uses unless told '
                             'otherwise (default 2048)')
    parser.add_argument('--sample-us', type=_positive('--sample-us', int),
                        default=5000,
                        help='DAMON sampling interval (default 5000 us)')
    parser.add_argument('--aggr-us', type=_positive('--aggr-us', int),
                        default=100000,
                        help='DAMON aggregation interval (default 100000 '
                             'us, as the agent with damon_source = '
                             'tried_regions)')
    parser.add_argument('--update-us', type=_positive('--update-us', int),
                        default=1000000,
                        help='DAMON operations update interval (default '
                             '1000000 us)')
    parser.add_argument('--min-regions', type=_positive('--min-regions',
                                                        int), default=10)
    parser.add_argument('--max-regions', type=_positive('--max-regions',
                                                        int), default=1000)
    parser.add_argument('--note', help='free text kept in the recording')
    parser.set_defaults(func=_record, verb_parser=parser)


def _record(args, parser):
    from loki_nova.memtier import guest as guest_mod
    from loki_nova.memtier import kernfs
    from loki_nova.memtier import trackers

    if args.min_regions > args.max_regions:
        parser.error('--min-regions must not exceed --max-regions')

    def progress(done, total):
        if done == total or done % 10 == 0:
            print('recorded %d/%d intervals' % (done, total),
                  file=sys.stderr, flush=True)

    options = dict(sample_us=args.sample_us, aggr_us=args.aggr_us,
                   update_us=args.update_us, min_regions=args.min_regions,
                   max_regions=args.max_regions)
    try:
        recording = recorder.record(
            args.pid, args.intervals, args.interval_s,
            snapshots=args.snapshots, mappings=args.mappings,
            ranges=args.ranges, chunk_size=args.chunk_kb * 1024,
            kfs=kernfs.KernelFS(), damon_options=options, note=args.note,
            on_interval=progress)
        recorder.write(args.output, recording)
    except trackers.TrackerUnavailable as exc:
        print('loki-memtier record: DAMON cannot be used here: %s' % exc,
              file=sys.stderr)
        return 1
    except (ProcessLookupError, guest_mod.GuestGone) as exc:
        print('loki-memtier record: %s' % exc, file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print('loki-memtier record: %s' % exc, file=sys.stderr)
        return 1
    mib = sum(b - a for a, b in recording.ranges.tolist()) / 2 ** 20
    print('recorded %d interval(s) of %g s of process %d (%d snapshots, %d '
          'regions; %.0f MiB in %d range(s)) to %s (%d KiB)'
          % (recording.intervals, args.interval_s, args.pid,
             len(recording.snapshot_interval), len(recording.regions), mib,
             len(recording.ranges), args.output,
             os.path.getsize(args.output) // 1024))
    return 0


def _add_flavor_properties(subparsers):
    parser = subparsers.add_parser(
        'flavor-properties',
        help='print the openstack flavor set command for a tiered flavor',
        description='Print the exact "openstack flavor set" command that '
                    'gives a flavor of --memory-mb a consistent loki '
                    'policy: the loki: extra specs and the Placement '
                    'resources: and trait: properties that go with them.')
    parser.add_argument('--memory-mb', type=int, required=True,
                        help='the flavor\'s RAM, in MiB')
    parser.add_argument('--policy', required=True,
                        choices=specs.POLICIES)
    floor = parser.add_mutually_exclusive_group()
    floor.add_argument('--dram-mb', type=int,
                       help='guaranteed DRAM (the floor), in MiB')
    floor.add_argument('--dram-percent', type=int,
                       help='guaranteed DRAM as a percentage of the '
                            'flavor\'s memory (rounded up to whole MiB)')
    parser.add_argument('--dram-max-mb', type=int,
                        help='most DRAM an on_demand guest may get '
                             '(default: all its memory)')
    parser.add_argument('--flavor', default='FLAVOR',
                        help='flavor name or ID to print in the command')
    parser.set_defaults(func=_flavor_properties, verb_parser=parser)


def _flavor_properties(args, parser):
    try:
        props = specs.flavor_properties(
            args.memory_mb, args.policy, dram_mb=args.dram_mb,
            dram_percent=args.dram_percent, dram_max_mb=args.dram_max_mb)
    except specs.SpecError as error:
        parser.error(str(error))
    lines = ['openstack flavor set %s' % shlex.quote(args.flavor)]
    lines += ['    --property %s' % shlex.quote('%s=%s' % kv)
              for kv in props]
    print(' \\\n'.join(lines))
    return 0


def build_parser():
    parser = _Parser(prog='loki-memtier',
                     description='Operate and study loki-nova memory '
                                 'tiering.')
    subparsers = parser.add_subparsers(dest='verb', metavar='VERB',
                                       parser_class=_Parser)
    subparsers.required = True
    from loki_nova.cmd import status
    status.add_parsers(subparsers)
    _add_simulate(subparsers)
    _add_record(subparsers)
    _add_flavor_properties(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args, args.verb_parser)


if __name__ == '__main__':
    sys.exit(main())

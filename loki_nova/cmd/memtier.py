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
``simulate`` (trace-driven comparison of tiering policies),
``flavor-properties`` (the flavor properties of a tiered flavor).
"""

import argparse
import json
import shlex
import sys

from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import report
from loki_nova.memtier.sim import traces
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
            'floor': float, 'ceiling': float, 'alpha': float}
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
        'simulate', help='compare tiering policies on synthetic traces',
        description='Trace-driven simulation: loki against no tiering '
                    '(first touch), kernel-like promote-on-access, '
                    'recency-only and the oracle, on the same accesses and '
                    'samples.')
    parser.add_argument(
        '--trace', action='append', choices=traces.TRACE_NAMES,
        help='trace to simulate, one experiment each; repeatable '
             '(default: zipf and hotset)')
    parser.add_argument(
        '--guest', action='append', type=_guest_spec, metavar='SPEC',
        help='a guest of one multi-guest experiment, e.g. name=db,'
             'trace=zipf,memory-gib=16,policy=on_demand,floor=0.1,'
             'ceiling=0.5; repeatable (replaces --trace)')
    parser.add_argument('--memory-gib', type=_positive('--memory-gib'),
                        default=16.0, help='guest size (default 16)')
    parser.add_argument('--dram-share', type=_fraction('--dram-share'),
                        default=0.25,
                        help='host DRAM as a fraction of the footprint, in '
                             '(0, 1] (default 0.25)')
    parser.add_argument('--alpha', type=_positive('--alpha'), default=0.99,
                        help='Zipf exponent, > 0 (default 0.99)')
    parser.add_argument('--intervals', type=_positive('--intervals', int),
                        default=100)
    parser.add_argument('--warmup', type=int, default=20,
                        help='intervals left out of the totals while '
                             'placement converges from first touch '
                             '(default 20)')
    parser.add_argument('--interval-s', type=_positive('--interval-s'),
                        default=5.0)
    parser.add_argument('--move-mb-per-s', type=float, default=256.0,
                        help='migration cap (default 256 MiB/s)')
    parser.add_argument('--chunk-kb', type=int, choices=(4, 2048),
                        default=2048, help='chunk size (default 2048)')
    parser.add_argument('--samples', type=int, default=20,
                        help='access checks per interval (default 20)')
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


def _simulate(args, parser):
    try:
        config = engine.SimConfig(
            intervals=args.intervals, warmup=args.warmup,
            chunk_size=args.chunk_kb * 1024, dram_share=args.dram_share,
            interval_s=args.interval_s, move_mb_per_s=args.move_mb_per_s,
            samples=args.samples, detection=args.detection,
            fast_ns=args.fast_ns, slow_ns=args.slow_ns,
            stall_fraction=args.stall_fraction, seed=args.seed)
        if args.guest:
            experiments = [[_guest(fields, i, args)
                            for i, fields in enumerate(args.guest)]]
        else:
            experiments = [[engine.GuestSpec(
                name='guest', memory_mb=int(args.memory_gib * 1024),
                trace=trace, floor=args.dram_share, alpha=args.alpha)]
                for trace in (args.trace or ['zipf', 'hotset'])]
        results = []
        for guests in experiments:
            if not args.json:
                print('simulating %s ...' % ', '.join(
                    g.trace for g in guests), file=sys.stderr, flush=True)
            results.append(engine.run(guests, config))
    except ValueError as error:
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
        alpha=fields.get('alpha', args.alpha))


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
    _add_flavor_properties(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args, args.verb_parser)


if __name__ == '__main__':
    sys.exit(main())

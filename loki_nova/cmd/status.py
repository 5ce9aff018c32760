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

"""``loki-memtier status`` and ``loki-memtier heatmap``: ask the host's
agent over RPC (the transport and host of the agent's own configuration
file, so run them on the host with the agent's config)."""

import json
import os
import sys
import threading

DEFAULT_CONFIG = '/etc/loki-nova/memtier.conf'


def add_parsers(subparsers):
    common = dict(add_help=True)
    status = subparsers.add_parser(
        'status', help='the host\'s tiers and tiered guests, from the agent',
        description='Ask this host\'s loki-memtier-agent (over the RPC '
                    'transport of its configuration file) for its memory '
                    'tiers and its guests as of its last interval.',
        **common)
    _bus_args(status)
    status.add_argument('--json', action='store_true',
                        help='print the agent\'s answer as JSON')
    status.set_defaults(func=_status, verb_parser=status)

    heat = subparsers.add_parser(
        'heatmap', help='plot a guest\'s heat over recent intervals',
        description='Ask the agent for INSTANCE\'s heat per chunk over its '
                    'recent intervals (up to 120) and write a heat map '
                    '(time across, guest memory up) and, under it, the '
                    'share of the guest in DRAM.', **common)
    heat.add_argument('instance', metavar='INSTANCE',
                      help='the instance uuid (or a process guest\'s name)')
    heat.add_argument('--output', '-o', required=True, metavar='FILE.png',
                      help='PNG file to write')
    _bus_args(heat)
    heat.set_defaults(func=_heatmap, verb_parser=heat)


def _bus_args(parser):
    parser.add_argument('--config-file', default=DEFAULT_CONFIG,
                        help='the agent\'s configuration file, for '
                             '[DEFAULT] transport_url and [memtier] host '
                             '(default %(default)s)')
    parser.add_argument('--host', help='the agent to ask (default: '
                                       '[memtier] host of the config)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait for the answer '
                             '(default %(default)s)')


class _Unreachable(Exception):
    pass


def _client(args, parser):
    from oslo_config import cfg
    import oslo_messaging as messaging

    from loki_nova.conf import memtier as memtier_conf
    from loki_nova.memtier import rpc

    if not os.path.exists(args.config_file):
        parser.error('--config-file %s does not exist; give the agent\'s '
                     'configuration file' % args.config_file)
    conf = cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    rpc.prepare_conf(conf)
    messaging.get_rpc_transport(conf)      # registers transport_url
    try:
        conf(['--config-file', args.config_file], project='loki-nova',
             default_config_files=[])
        transport = messaging.get_rpc_transport(conf)
    except (cfg.Error, messaging.MessagingException) as exc:
        parser.error('cannot use %s: %s' % (args.config_file, exc))
    host = args.host or conf.memtier.host
    return (rpc.AgentClient(transport, timeout=args.timeout, retry=2), host,
            transport)


def _ask(args, parser, method, *call_args):
    import oslo_messaging as messaging

    from loki_nova.memtier import rpc

    client, host, transport = _client(args, parser)
    result = {}

    def call():
        try:
            result['answer'] = getattr(client, method)({}, host, *call_args)
        except Exception as exc:
            result['error'] = exc

    # oslo.messaging keeps reconnecting to a broker that is down (for the
    # reply queue whatever ``retry`` says), so the call runs in a daemon
    # thread that is abandoned when the time is up.
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(args.timeout + 5)
    try:
        if caller.is_alive():
            raise _Unreachable(
                'no answer from loki-memtier-agent on %s within %.0f s: the '
                'message bus of %s (transport_url) is not reachable'
                % (host, args.timeout + 5, args.config_file))
        if 'error' in result:
            raise result['error']
        return result['answer']
    except messaging.MessageDeliveryFailure as exc:
        raise _Unreachable('cannot reach the message bus of %s: %s'
                           % (args.config_file, exc))
    except messaging.MessagingTimeout:
        raise _Unreachable(
            'no answer from loki-memtier-agent on %s within %.0f s: is it '
            'running (systemctl status loki-memtier-agent), with '
            '[memtier] rpc_enabled = true and the same transport_url as %s?'
            % (host, args.timeout, args.config_file))
    except rpc.GuestNotManaged as exc:
        raise _Unreachable(str(exc))
    finally:
        if not caller.is_alive():
            transport.cleanup()


def _mb(value):
    return '-' if value is None else '%.0f' % value


def format_status(stats):
    """The ``status`` table for a ``host_stats`` answer."""
    kept = ''
    if stats.get('dram_free_min_mb') is not None:   # older agents: none
        kept = ', %d MiB kept free%s' % (
            stats['dram_free_min_mb'],
            ' (on-demand guests held back for it)'
            if stats.get('held_back_by_free_dram') else '')
    lines = ['Tiers (interval %s, every %.1f s; host reserve %d MiB DRAM%s):'
             % (stats['interval'], stats['interval_s'],
                stats['dram_reserve_mb'], kept)]
    for tier in stats['tiers']:
        name = 'DRAM' if tier['rank'] == 0 else 'slow %d' % tier['rank']
        free = tier.get('free_mb')
        if free is None and tier['rank'] == 0:
            free = stats['fast_free_mb']    # an agent older than free_mb
        lines.append('  %-7s nodes %-8s %8d MiB, free %s MiB' % (
            name, ','.join(map(str, tier['nodes'])), tier['capacity_mb'],
            _mb(free)))
    for r in stats['reservations']:
        lines.append('  reserved %d MiB for %s (%.0f s ago)'
                     % (r['mb'], r['instance_uuid'], r['age_s']))
    head = ('INSTANCE', 'POLICY', 'FLOOR', 'BUDGET', 'DRAM', 'SLOW', 'HOT',
            'MOVES/S')
    rows = []
    for g in stats['guests']:
        moves = None
        if g.get('interval') is not None:
            moves = (g['promoted_mb'] + g['demoted_mb']) / stats['interval_s']
        rows.append((g['instance_uuid'], g['policy'], _mb(g['floor_mb']),
                     _mb(g.get('budget_mb')), _mb(g.get('dram_mb')),
                     _mb(g.get('slow_mb')), _mb(g.get('hot_mb')),
                     '-' if moves is None else '%.1f' % moves))
    lines.append('')
    if not rows:
        lines.append('No tiered guests.')
        return '\n'.join(lines)
    lines.append('Guests (MiB; moves in MiB/s):')
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in (head,) + tuple(rows):
        lines.append('  ' + '  '.join(
            str(x).ljust(w) if i < 2 else str(x).rjust(w)
            for i, (x, w) in enumerate(zip(row, widths))))
    return '\n'.join(lines)


def _status(args, parser):
    try:
        stats = _ask(args, parser, 'host_stats')
    except _Unreachable as exc:
        print('loki-memtier status: %s' % exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats, indent=1, sort_keys=True))
    else:
        print(format_status(stats))
    return 0


def plot_heat(heat, path):
    """Write the heat map of a ``guest_heat`` answer to ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    import numpy as np

    rows = np.array(heat['heat'], dtype=float)
    share = np.array(heat['dram_percent'], dtype=float)
    fig, (top, bottom) = pyplot.subplots(
        2, 1, figsize=(10, 6), sharex=True,
        gridspec_kw={'height_ratios': [3, 1]})
    extent = (heat['intervals'][0] - 0.5, heat['intervals'][-1] + 0.5,
              0, heat['chunks'] * heat['chunk_kb'] / 1024)
    image = top.imshow(rows.T, aspect='auto', origin='lower',
                       extent=extent, cmap='inferno', vmin=0,
                       vmax=max(1, rows.max()), interpolation='nearest')
    fig.colorbar(image, ax=top, label='heat (hottest chunk of a bin)')
    top.set_ylabel('guest memory (MiB)')
    top.set_title('%s: heat per chunk (%d KiB chunks), interval %.1f s'
                  % (heat['instance_uuid'], heat['chunk_kb'],
                     heat['interval_s']))
    bottom.plot(heat['intervals'], share.mean(axis=1), color='tab:blue')
    bottom.set_ylim(0, 100)
    bottom.set_ylabel('in DRAM (%)')
    bottom.set_xlabel('agent interval')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)


def _heatmap(args, parser):
    try:
        heat = _ask(args, parser, 'guest_heat', args.instance)
    except _Unreachable as exc:
        print('loki-memtier heatmap: %s' % exc, file=sys.stderr)
        return 1
    if not heat['intervals']:
        print('loki-memtier heatmap: the agent has no interval of %s yet'
              % args.instance, file=sys.stderr)
        return 1
    try:
        plot_heat(heat, args.output)
    except ImportError:
        parser.error('heat maps need matplotlib (pip install matplotlib)')
    print('heat map of %s over %d intervals written to %s'
          % (args.instance, len(heat['intervals']), args.output))
    return 0

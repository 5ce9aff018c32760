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

"""Options of the tiering agent, ``[memtier]`` in memtier.conf."""

import math
import socket

from oslo_config import cfg
from oslo_config import types

memtier_group = cfg.OptGroup(
    'memtier',
    title='Tiering agent options',
    help='How loki-memtier-agent samples, classifies and moves the memory '
         'of tiered guests on this host.')


class FiniteFloat(types.Float):
    """A float option's type that refuses nan and infinities.

    ``float()`` takes 'nan' and 'inf', and nan passes any ``min`` (every
    comparison with it is false): an interval of nan would spin the loop
    without waiting and one of inf cannot be waited for at all."""

    def __call__(self, value):
        number = super().__call__(value)
        if number is not None and not math.isfinite(number):
            bounds = []
            if self.min is not None:
                bounds.append('at least %g' % self.min)
            if self.max is not None:
                bounds.append('at most %g' % self.max)
            raise ValueError('must be a finite number%s, got %s' % (
                ' ' + ' and '.join(bounds) if bounds else '', number))
        return number


class FiniteFloatOpt(cfg.FloatOpt):
    """``cfg.FloatOpt`` of a ``FiniteFloat``: every float option of the
    agent is one."""

    def __init__(self, name, min=None, max=None, **kwargs):
        cfg.Opt.__init__(self, name, type=FiniteFloat(min, max), **kwargs)


memtier_opts = [
    FiniteFloatOpt(
        'interval',
        default=5.0,
        min=0.5,
        help='Length of one tiering interval, in seconds: a finite number, '
             'at least 0.5. Each interval the '
             'agent collects access samples, updates every guest\'s heat, '
             'recomputes DRAM budgets and moves pages. Default 5 s.'),
    cfg.IntOpt(
        'chunk_size_kb',
        default=2048,
        choices=[4, 2048],
        help='Size of the unit the agent tracks and moves, in KiB: 4 (a '
             'base page) or 2048 (a 2 MiB region). The agent keeps 20 '
             'bytes per chunk (4 of classifier state, 16 of address and '
             'size), so 4 KiB chunks cost 0.5 % of guest memory and 2 MiB '
             'chunks 10 KiB per GiB. Default 2048.'),
    cfg.IntOpt(
        'move_rate_mb_per_s',
        default=256,
        min=0,
        help='Cap on the rate at which the agent migrates memory between '
             'tiers, in MiB per second, over all guests of the host. '
             'Migration costs memory bandwidth and CPU; 100-200 MiB/s is '
             'common practice. 0 disables moves. Default 256.'),
    cfg.IntOpt(
        'dram_reserve_mb',
        default=2048,
        min=0,
        help='DRAM, in MiB, that the arbiter never hands to guests, so that '
             'the host itself (QEMU, libvirtd, the kernel) has room. It '
             'must be less than the DRAM tier\'s capacity: the agent '
             'refuses to start otherwise. Default 2048.'),
    cfg.IntOpt(
        'dram_free_min_mb',
        default=1024,
        min=0,
        help='DRAM, in MiB, that on-demand guests never grow into: DRAM '
             'above the guests\' floors is handed out only while the DRAM '
             'nodes keep this much available -- free pages, page cache and '
             'reclaimable slab, read from their meminfo each interval, as '
             'the kernel counts MemAvailable but without its watermark '
             'corrections, so keep it above the DRAM nodes\' high '
             'watermarks (/proc/zoneinfo). When untiered guests, the host '
             'or anything else the agent does not manage takes DRAM, '
             'on-demand guests are dialled back towards their floors until '
             'it is available again. Floors are never cut for it: they are '
             'guaranteed (Placement counted them). The agent logs when '
             'this holds on-demand guests back. 0 lets them take all of '
             'the available DRAM (dram_reserve_mb still applies, to the '
             'DRAM nodes\' capacity). Default 1024.'),
    cfg.IntOpt(
        'heat_decay_shift',
        default=1,
        min=0,
        max=15,
        help='How fast heat is forgotten, as a right shift N in bits: each '
             'interval a chunk keeps heat - (heat >> N). 1 halves it every '
             'interval; larger values remember longer and react more '
             'slowly. Default 1.'),
    cfg.IntOpt(
        'heat_per_access',
        default=64,
        min=1,
        max=65535,
        help='Heat added for every sampled access of a chunk in one '
             'interval, per unit of the common sample scale of 0-20 (the '
             'share of the tracker\'s checks that saw the chunk '
             'accessed). A tracker with a finer scale adds the same heat '
             'for the same share in smaller steps: DAMON\'s trace samples '
             'on 0-160 and adds heat_per_access / 8 per unit (8 at the '
             'default). A chunk counts as hot (a guest\'s hot demand) '
             'with at least this much heat. Heat saturates at 65535. '
             'Default 64.'),
    cfg.IntOpt(
        'hysteresis',
        min=0,
        sample_default='<256 (64 with damon_source = trace)>',
        help='A slow-tier chunk displaces a DRAM chunk only when its heat '
             'is higher by more than this, so that chunks of similar heat '
             'do not swap back and forth under sampling noise; a DRAM '
             'chunk that has gone cold (less heat than one sampled access '
             'and than the decay can still lower) gives way to any hotter '
             'slow-tier chunk. In heat units; 256 is four sampled accesses '
             'at the default heat_per_access, or a steady difference of '
             'two per interval at the default heat_decay_shift. Chosen on '
             'DAMON recordings of real programs (loki-memtier record and '
             'simulate --trace-file): 512 kept measurably hotter chunks out '
             'of DRAM there and 128 or less migrated more for no gain. On '
             'synthetic traces 256 stays within 0.5 % of 512\'s DRAM hit '
             'ratio but migrates three to six times as much; raise it where '
             'migration bandwidth is dear. A tracker that sees the whole '
             'interval (DAMON with damon_source = trace) reads nearly '
             'every chunk as a little accessed, so no DRAM chunk reads '
             'cold and 256 holds back swaps it should make: 64 scored '
             'best there on the recordings and in the sandbox. Default '
             '256 (64 with damon_source = trace).'),
    cfg.StrOpt(
        'classifier_backend',
        default='compiled',
        choices=[('compiled', 'the Cython kernel'),
                 ('vectorized', 'the NumPy formulation, many times slower'),
                 ('reference', 'the readable specification, for debugging '
                               'only')],
        help='Which implementation of the hot/cold classifier to run. All '
             'give identical results. Default compiled.'),
    cfg.StrOpt(
        'tracker',
        default='auto',
        choices=[('auto', 'the first the kernel offers, in the order below'),
                 ('damon', 'DAMON virtual-address monitoring through sysfs; '
                           'used only when the kernel has DAMON_VADDR, no '
                           'kernel module (DAMON_RECLAIM, LRU_SORT, STAT) '
                           'runs DAMON and every kdamond is the agent\'s'),
                 ('idle_page', 'the idle-page bitmap '
                               '(CONFIG_IDLE_PAGE_TRACKING)'),
                 ('soft_dirty', 'soft-dirty bits (writes only; the last '
                                'resort)')],
        help='How the agent samples which guest memory is accessed. With '
             'auto it logs why each tracker it skips cannot run. Default '
             'auto.'),
    cfg.IntOpt(
        'damon_sample_us',
        min=100,
        sample_default='<5000 (interval / 160 with damon_source = '
                       'trace)>',
        help='DAMON tracker: how often DAMON checks each region for an '
             'access, in microseconds. With damon_source = trace a sample '
             'is the share of the interval\'s checks that found a chunk '
             'accessed, on a scale of 0-160: at 5 ms a 5 s interval has '
             '1000 checks and every chunk found in 1-6 of them reads 1, '
             'so lukewarm chunks look alike; unset, the trace checks 160 '
             'times an interval (31.25 ms at the default 5 s interval, '
             'never below 5 ms), which also costs DAMON fewer checks. In '
             'the simulator, synthetic Zipf traces read that way placed '
             '0.978 of the oracle\'s DRAM hits against 0.959 at 5 ms. '
             'Unset, it is also no longer than a configured damon_aggr_us '
             '(but at least 5 ms); a value that is set is used as it is '
             'and must not exceed damon_aggr_us. Default 5000 (interval / '
             '160 with damon_source = trace).'),
    cfg.IntOpt(
        'damon_aggr_us',
        min=100,
        sample_default='<100000 (1000000 with damon_source = trace)>',
        help='DAMON tracker: DAMON\'s aggregation interval in '
             'microseconds, at least damon_sample_us. A sample scales the '
             'regions\' access counts (sampled checks that found them '
             'accessed) to 0-20 (0-160 with the trace). With damon_source '
             '= tried_regions each '
             'agent interval takes the last aggregation interval only, '
             'waiting for it to end (up to about 3 aggregation intervals, '
             'measured on a 6.12 kernel), and the kernel takes one read at '
             'a time, so the guests\' reads add up (the agent warns when '
             'they take more than half its interval): a guest whose '
             'working set is not touched again within one aggregation '
             'interval looks colder than it is, and longer intervals see '
             'more at the cost of longer waits. With damon_source = trace '
             'each agent interval takes every aggregation since the last, '
             'and the kdamond emits one trace event per region and '
             'aggregation: a guest of 1000 regions (DAMON\'s most) at 100 '
             'ms is 10,000 events a second for the kernel to format and '
             'the agent to parse, at 1 s a tenth of it; it should be '
             'well within the agent\'s interval. 100 ms and 1 s in the '
             'defaults; with the trace at most a fifth of the agent\'s '
             'interval. Default 100000 (1000000 with damon_source = '
             'trace).'),
    cfg.StrOpt(
        'damon_source',
        default='trace',
        choices=[('trace', 'every aggregation since the last agent '
                           'interval, from DAMON\'s damon_aggregated trace '
                           'event in a tracing instance of the agent\'s own '
                           '(needs tracefs mounted)'),
                 ('tried_regions', 'each agent interval asks every '
                                   'guest\'s kdamond for its regions of the '
                                   'last aggregation interval')],
        help='DAMON tracker: where each agent interval\'s regions come '
             'from. trace sees every aggregation of the interval, and a '
             'read waits for nothing (except for a guest whose kdamond has '
             'reported no aggregation yet); it costs a ring buffer of '
             'damon_trace_buffer_kb for each possible CPU, and the agent '
             'falls back to tried_regions, with a warning, when the '
             'kernel\'s tracefs is not mounted or has no DAMON events. '
             'tried_regions sees the last aggregation interval of each '
             'agent interval (100 ms of 5 s by default), its reads wait for '
             'the kdamond and queue behind each other, and each read walks '
             'a sysfs directory per DAMON region: in the sandbox, two '
             'guests of 1000 regions took 10.8 s to read against 0.10 s '
             'from the trace, and 2.5 s of CPU against 0.03 s. Default '
             'trace.'),
    cfg.IntOpt(
        'damon_trace_buffer_kb',
        default=1024,
        min=4,
        help='DAMON tracker with damon_source = trace: the tracing '
             'instance\'s ring buffer for each CPU, in KiB. The kernel '
             'allocates it for every possible CPU (unswappable kernel '
             'memory: 1024 KiB on a 64-CPU host is 64 MiB). A kdamond '
             'writes its events into the buffer of the CPU it runs on, '
             'about 52 bytes per DAMON region per aggregation (6.12), and '
             'the agent empties the buffers at each sample, after each '
             'guest\'s moves, and every 0.5 s between intervals and while '
             'a move waits for move_rate_mb_per_s: a buffer '
             'must hold what the kdamonds of one CPU emit meanwhile. One '
             'guest of 1000 regions (DAMON\'s most) emits 52 KiB a second '
             'at the trace\'s default 1 s aggregation, 520 KiB at 100 ms. '
             'When a buffer overflows the oldest events are lost, samples '
             'cover the rest of the interval and the agent warns. Default '
             '1024.'),
    cfg.DictOpt(
        'node_tiers',
        default={},
        help='Override of the kernel\'s memory tiers, as node:rank pairs '
             'where rank 0 is DRAM and 1, 2, ... are ever slower tiers, '
             'e.g. "0:0,1:0,2:1". Only the nodes named are used. Empty (the '
             'default) takes the tiers from /sys/devices/virtual/'
             'memory_tiering.'),
    cfg.ListOpt(
        'watchers',
        default=['libvirt', 'process'],
        item_type=cfg.types.String(choices=['libvirt', 'process']),
        help='Where the agent finds its guests: libvirt (running domains '
             'with loki metadata) and/or process (registrations in '
             'registration_dir). Default libvirt,process (both).'),
    cfg.StrOpt(
        'libvirt_uri',
        default='qemu:///system',
        help='The libvirt connection URI through which the libvirt watcher '
             'lists running domains and reads their XML. Default '
             'qemu:///system.'),
    cfg.StrOpt(
        'registration_dir',
        default='/run/loki-memtier/guests',
        help='Directory of the process watcher\'s registrations, one JSON '
             'file per registered process. Default '
             '/run/loki-memtier/guests.'),
    cfg.StrOpt(
        'state_dir',
        default='/run/loki-memtier',
        help='Directory for the agent\'s runtime state, such as which '
             'kdamonds it started, so that a restarted agent recognises '
             'its own. It lives under /run because kernel state does not '
             'survive a reboot. Default /run/loki-memtier.'),
    cfg.IntOpt(
        'move_batch_pages',
        default=4096,
        min=1,
        help='Most 4 KiB pages passed to one move_pages(2) call; a batch '
             'is also kept to a tenth of a second at the move rate cap (and '
             'at least 16 pages). The guest\'s identity is re-checked before '
             'every call. Default 4096 (16 MiB).'),
    cfg.IntOpt(
        'probes_per_chunk',
        default=1,
        min=1,
        max=512,
        help='Pages per chunk whose node is queried each interval to learn '
             'which tier the chunk is on; the majority wins. Each query '
             'costs about 0.3 microseconds of agent CPU, so more probes buy '
             'precision for chunks the kernel split between tiers at a '
             'price. Default 1 (the agent moves whole chunks).'),
    cfg.StrOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<the machine\'s host name>',
        help='Name of this host on the message bus: the agent serves RPC '
             'as server HOST of topic loki-memtier, and nova-compute\'s '
             'LokiDriver calls it by its own [DEFAULT] host, so the two '
             'must be equal. Default: the machine\'s host name, as Nova\'s.'),
    cfg.BoolOpt(
        'rpc_enabled',
        default=True,
        help='Serve the RPC API (reserve_dram, guest_stats, host_stats) '
             'and send usage notifications over the transport of '
             '[DEFAULT] transport_url. Without it nova-compute\'s '
             'reserve_dram calls time out and spawns go on without '
             'waiting for room. The agent tiers either way, and a broker '
             'that is down never stops tiering. Default true.'),
    cfg.IntOpt(
        'reservation_ttl',
        default=300,
        min=1,
        help='How long, in seconds, DRAM reserved by reserve_dram for a '
             'guest about to start stays held if no guest with that '
             'instance uuid appears. Default 300.'),
    FiniteFloatOpt(
        'usage_interval',
        default=60.0,
        min=0,
        help='Period, in seconds (a finite number, at least 0), of the '
             'usage notifications (event type '
             'loki.memtier.instance.usage, one per tiered instance, for '
             'billing and telemetry). They go out only when '
             '[oslo_messaging_notifications] driver is set (e.g. '
             'messagingv2). 0 turns them off. The period is rounded up to '
             'whole tiering intervals. Default 60.'),
    cfg.StrOpt(
        'metrics_listen',
        default='',
        help='Address and TCP port, as HOST:PORT or [IPV6]:PORT, on which '
             'the agent serves Prometheus metrics over HTTP at /metrics, '
             'e.g. 127.0.0.1:9464. Empty (the default) serves none. Any '
             'address is taken as given, 0.0.0.0 or [::] for every '
             'interface: the metrics have no authentication and name the '
             'instances of this host, so give a loopback or management '
             'network address and limit who can reach it. Port 0 takes a '
             'free port, which the log names. An address the agent cannot '
             'listen on (a port in use) stops it at start.'),
]


def register_opts(conf):
    conf.register_group(memtier_group)
    conf.register_opts(memtier_opts, group=memtier_group)


def list_opts():
    return {memtier_group: memtier_opts}

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

"""Options of the compute driver, ``[loki]`` in nova.conf."""

from oslo_config import cfg

from loki_nova.conf.memtier import FiniteFloatOpt

loki_group = cfg.OptGroup(
    'loki',
    title='LokiDriver (tiered memory) options',
    help='How the loki compute driver finds this host\'s memory tiers and '
         'reports the slow tier to Placement. Used only with '
         'compute_driver = loki.LokiDriver.')

loki_opts = [
    cfg.DictOpt(
        'node_tiers',
        default={},
        help='Explicit tier of every host NUMA node with memory, as '
             'node:rank pairs; rank 0 is DRAM, 1 and above are slower tiers '
             '(PMem, CXL). Example: "0:0,1:0,2:1". Empty (the default) '
             'means the kernel\'s memory tiers '
             '(/sys/devices/virtual/memory_tiering) decide. Set it when the '
             'kernel puts slow memory in the DRAM tier because the firmware '
             'has no HMAT table. It must name every node with memory.'),
    cfg.StrOpt(
        'sysfs_root',
        default='/',
        help='Directory under which the driver reads '
             'sys/devices/virtual/memory_tiering. Default "/", the host '
             'itself; only containers and tests need another value.'),
    cfg.IntOpt(
        'slow_memory_reserved_mb',
        default=0,
        min=0,
        help='Slow-tier memory, in MiB, kept out of the '
             'CUSTOM_LOKI_SLOW_MEMORY_MB inventory reported to Placement '
             '(the slow-tier counterpart of reserved_host_memory_mb). '
             'Default 0.'),
    FiniteFloatOpt(
        'slow_memory_allocation_ratio',
        default=1.0,
        min=0.0,
        help='Allocation ratio of the CUSTOM_LOKI_SLOW_MEMORY_MB inventory. '
             'Values above 1.0 overcommit the slow tier, which only swap can '
             'back; keep 1.0 unless the host has swap sized for it. '
             'Default 1.0.'),
    cfg.IntOpt(
        'reserve_dram_timeout',
        default=30,
        min=0,
        max=3600,
        help='Seconds spawn waits for the host\'s tiering agent '
             '(loki-memtier-agent) to make room in DRAM for a tiered '
             'guest\'s floor (RPC reserve_dram over [DEFAULT] '
             'transport_url, to the agent serving this host\'s [DEFAULT] '
             'host). The guest starts after the answer, or, if the agent '
             'is unreachable or has not made room in time, after this '
             'timeout plus 5 s with a warning in the log: Placement has '
             'already set the floor aside, and the agent pulls on-demand '
             'guests back when it sees the new guest. 0 skips the call. '
             'Default 30.'),
]


def register_opts(conf):
    conf.register_group(loki_group)
    conf.register_opts(loki_opts, group=loki_group)


def list_opts():
    return {loki_group: loki_opts}

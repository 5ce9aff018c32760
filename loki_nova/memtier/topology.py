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

"""The host's NUMA nodes and memory tiers.

Nodes come from ``/sys/devices/system/node`` (memory, CPUs, distances) and
tiers from the kernel's memory tiers, ``/sys/devices/virtual/memory_tiering/
memory_tierN/nodelist``: the kernel groups nodes by abstract distance
(fed by HMAT/CDAT, or by the driver that onlined the memory, e.g. dax kmem
for PMem), and a lower N is a faster tier.  Any number of tiers is
supported; rank 0 is DRAM, ranks 1, 2, ... are ever slower tiers.

An operator can override the kernel's view with ``[memtier] node_tiers``
(``node:rank`` pairs).  The agent refuses to start, saying what it saw,
when there is no slow tier at all: one node only, or every node in one
memory tier - the usual state of a 6.x kernel without HMAT, where a
CPU-less CXL node lands in the default tier with DRAM.
"""

import dataclasses
import re

from loki_nova.memtier import kernfs as kernfs_mod

NODE_DIR = 'sys/devices/system/node'
TIER_DIR = 'sys/devices/virtual/memory_tiering'
_TIER_RE = re.compile(r'^memory_tier(\d+)$')
_NODE_RE = re.compile(r'^node(\d+)$')


class TopologyError(Exception):
    """The host has no usable tiers, or the override is wrong."""


@dataclasses.dataclass(frozen=True)
class Node:
    id: int
    cpus: tuple
    total_mb: int
    #: Distance to every node, by node id.
    distances: dict
    #: Tier rank: 0 DRAM, 1.. slower tiers.
    rank: int
    #: The kernel's memory_tierN this node is in (None when overridden
    #: or when the kernel has no memory tiers).
    kernel_tier: int = None

    @property
    def tier_code(self):
        """The classifier's tier code of this node: 0 fast, rank slow."""
        return self.rank


@dataclasses.dataclass(frozen=True)
class Topology:
    nodes: tuple
    #: 'kernel' or 'override'.
    source: str

    def node(self, node_id):
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def fast_nodes(self):
        return tuple(n for n in self.nodes if n.rank == 0)

    @property
    def slow_nodes(self):
        return tuple(n for n in self.nodes if n.rank > 0)

    @property
    def ranks(self):
        return sorted({n.rank for n in self.nodes})

    @property
    def fast_mb(self):
        return sum(n.total_mb for n in self.fast_nodes)

    @property
    def slow_mb(self):
        return sum(n.total_mb for n in self.slow_nodes)

    def demotion_target(self, from_node=None):
        """The slow node nearest to ``from_node`` (default: the first fast
        node), preferring the next tier down."""
        src = self.node(from_node) if from_node is not None \
            else self.fast_nodes[0]
        return min(self.slow_nodes,
                   key=lambda n: (n.rank, src.distances.get(n.id, 255),
                                  n.id)).id

    def promotion_target(self, from_node=None):
        """The fast node nearest to ``from_node`` (default: the first)."""
        if from_node is None:
            return self.fast_nodes[0].id
        src = self.node(from_node)
        return min(self.fast_nodes,
                   key=lambda n: (src.distances.get(n.id, 255), n.id)).id

    def node_to_tier(self):
        """A 256-entry table from node id to classifier tier code (255 for
        nodes the agent does not use)."""
        table = [255] * 256
        for n in self.nodes:
            if n.id < 256:
                table[n.id] = n.tier_code
        return table

    def describe(self):
        parts = []
        for rank in self.ranks:
            ns = [n for n in self.nodes if n.rank == rank]
            parts.append('%s: node%s %s (%d MiB)' % (
                'DRAM' if rank == 0 else 'slow tier %d' % rank,
                's' if len(ns) > 1 else '',
                ','.join(str(n.id) for n in ns),
                sum(n.total_mb for n in ns)))
        return '; '.join(parts) + ' (from %s)' % self.source


def parse_node_tiers(mapping):
    """``{'0': '0', '1': '1'}`` (oslo DictOpt) or ``{0: 0}`` → {node: rank}
    with a clear error for anything else."""
    out = {}
    for key, value in mapping.items():
        try:
            node, rank = int(key), int(value)
            if node < 0 or rank < 0 or rank > 254:
                raise ValueError
        except (TypeError, ValueError):
            raise TopologyError(
                'node_tiers entry %s:%s is not node:rank with node >= 0 and '
                'rank 0 (DRAM) to 254, e.g. "0:0,1:0,2:1"'
                % (key, value)) from None
        out[node] = rank
    return out


def _read_nodes(kfs):
    try:
        names = kfs.listdir(NODE_DIR)
    except kernfs_mod.KernelFSError:
        names = []
    ids = sorted(int(m.group(1)) for m in map(_NODE_RE.match, names) if m)
    if kfs.exists(NODE_DIR + '/has_memory'):
        with_memory = set(kfs.read_list(NODE_DIR + '/has_memory'))
        ids = [i for i in ids if i in with_memory]
    nodes = {}
    for i in ids:
        base = '%s/node%d' % (NODE_DIR, i)
        cpus = kfs.read_list(base + '/cpulist')
        meminfo = kfs.read_node_meminfo(base + '/meminfo')
        if 'MemTotal' not in meminfo:
            raise TopologyError('%s has no MemTotal line'
                                % kfs.path(base + '/meminfo'))
        total_kb = meminfo['MemTotal']
        if total_kb < 0:
            raise TopologyError('%s gives node%d a MemTotal of %d kB, less '
                                'than 0' % (kfs.path(base + '/meminfo'), i,
                                            total_kb))
        dist_row = kfs.read_ints(base + '/distance')
        nodes[i] = (cpus, total_kb // 1024, dist_row)
    online = sorted(nodes)
    # distance rows are ordered by online node id
    all_online = kfs.read_list(NODE_DIR + '/online') \
        if kfs.exists(NODE_DIR + '/online') else online
    out = {}
    for i, (cpus, total_mb, row) in nodes.items():
        distances = dict(zip(all_online, row))
        out[i] = (cpus, total_mb, distances)
    return out


def read_kernel_tiers(kfs):
    """{node: kernel memory_tier number}, or {} without memory tiers."""
    if not kfs.exists(TIER_DIR):
        return {}
    tiers = {}
    for name in kfs.listdir(TIER_DIR):
        m = _TIER_RE.match(name)
        if not m:
            continue
        for node in kfs.read_list('%s/%s/nodelist' % (TIER_DIR, name)):
            tiers[node] = int(m.group(1))
    return tiers


NUMA_BALANCING = '/proc/sys/kernel/numa_balancing'
DEMOTION_ENABLED = '/sys/kernel/mm/numa/demotion_enabled'
# kernel.numa_balancing is a bit mask: 1 is the classic NUMA balancing,
# 2 its memory-tiering mode (Linux 5.18 and later).
NUMA_BALANCING_NORMAL = 1
NUMA_BALANCING_MEMORY_TIERING = 2


def kernel_tiering_conflicts(kfs):
    """What the kernel itself does to move pages between tiers, which the
    agent's budgets would compete with: a list of sentences (empty when
    it leaves tiering to the agent)."""
    out = []
    try:
        mode = kfs.read_int(NUMA_BALANCING)
    except (OSError, ValueError):
        mode = 0
    if mode & NUMA_BALANCING_MEMORY_TIERING:
        out.append(
            'kernel.numa_balancing = %d includes the kernel\'s memory-'
            'tiering mode (2): the kernel promotes slow-tier pages on its '
            'own and undoes DRAM budgets; set it to 0 (sysctl -w '
            'kernel.numa_balancing=0) to leave tiering to the agent' % mode)
    elif mode & NUMA_BALANCING_NORMAL:
        out.append(
            'kernel.numa_balancing = %d: NUMA balancing moves the pages a '
            'task touches to the node of the CPU it runs on, and every CPU '
            'is on a DRAM node, so it promotes the slow-tier pages guests '
            'touch past their DRAM budgets; set it to 0 (sysctl -w '
            'kernel.numa_balancing=0) to leave tiering to the agent' % mode)
    try:
        demotion = kfs.read_text(DEMOTION_ENABLED).strip()
    except (OSError, ValueError):
        demotion = ''
    if demotion in ('true', '1', 'Y'):
        out.append(
            '%s is true: under memory pressure the kernel demotes DRAM '
            'pages to the slow tier outside the agent\'s plan (the agent '
            'promotes the hot ones back); write false there to leave '
            'tiering to the agent' % DEMOTION_ENABLED)
    return out


def check_dram_reserve(topo, reserve_mb):
    """Raise ``TopologyError`` unless ``reserve_mb`` (``[memtier]
    dram_reserve_mb``) leaves some of ``topo``'s DRAM to guests."""
    if reserve_mb >= topo.fast_mb:
        raise TopologyError(
            '[memtier] dram_reserve_mb = %d is at or above the DRAM '
            'capacity of this host, %d MiB (node%s %s): no guest could '
            'have any DRAM. Set it below %d' % (
                reserve_mb, topo.fast_mb,
                's' if len(topo.fast_nodes) > 1 else '',
                ','.join(str(n.id) for n in topo.fast_nodes), topo.fast_mb))


def discover(kfs=None, node_tiers=None):
    """Read the topology; ``node_tiers`` ({node: rank}) overrides the
    kernel's tiers.  Raises ``TopologyError`` when there is no slow tier,
    saying what was seen."""
    kfs = kfs or kernfs_mod.KernelFS()
    nodes = _read_nodes(kfs)
    if not nodes:
        raise TopologyError('no NUMA node with memory under %s'
                            % kfs.path(NODE_DIR))
    kernel = read_kernel_tiers(kfs)
    seen = ', '.join('node%d (%d MiB, %s)' % (
        i, nodes[i][1], ('cpus %s' % kernfs_mod.format_list(nodes[i][0]))
        if nodes[i][0] else 'no CPUs') for i in sorted(nodes))
    if node_tiers:
        node_tiers = parse_node_tiers(node_tiers)
        missing = sorted(set(node_tiers) - set(nodes))
        if missing:
            raise TopologyError(
                'node_tiers names node%s %s, which %s not exist or %s no '
                'memory; this host has %s' % (
                    's' if len(missing) > 1 else '',
                    ', '.join(map(str, missing)),
                    'do' if len(missing) > 1 else 'does',
                    'have' if len(missing) > 1 else 'has', seen))
        ranks = dict(node_tiers)
        source = 'override'
    else:
        if not kernel:
            raise TopologyError(
                'the kernel reports no memory tiers (%s is missing); this '
                'host has %s. Use a kernel with memory tiering (6.1+) or set '
                '[memtier] node_tiers' % (kfs.path(TIER_DIR), seen))
        # Dense ranks in kernel tier order: lowest memory_tierN is DRAM.
        order = sorted(set(kernel[i] for i in nodes if i in kernel))
        ranks = {i: order.index(kernel[i]) for i in nodes if i in kernel}
        source = 'kernel memory tiers'
    built = tuple(
        Node(i, nodes[i][0], nodes[i][1], nodes[i][2], ranks[i],
             kernel.get(i) if source != 'override' else None)
        for i in sorted(ranks))
    topo = Topology(built, source)
    if not topo.fast_nodes:
        raise TopologyError(
            'node_tiers %s gives no node rank 0 (DRAM); this host has %s'
            % (','.join('%d:%d' % kv for kv in sorted(ranks.items())), seen))
    empty = [n.id for n in topo.fast_nodes if n.total_mb <= 0]
    if empty:
        # Budgets are shares of the DRAM capacity: a DRAM node the kernel
        # gives no memory is a misread host or a wrong node_tiers.
        raise TopologyError(
            'DRAM (rank 0) %s %s less than 1 MiB of MemTotal (%s); this '
            'host has %s. Rank as DRAM only nodes with memory%s' % (
                ', '.join('node%d' % i for i in empty),
                'have' if len(empty) > 1 else 'has',
                ', '.join(kfs.path(NODE_DIR + '/node%d/meminfo' % i)
                          for i in empty), seen,
                ' in node_tiers' if source == 'override'
                else ': set [memtier] node_tiers'))
    if not topo.slow_nodes:
        if source == 'override':
            what = 'node_tiers %s' % ','.join(
                '%d:%d' % kv for kv in sorted(ranks.items()))
        else:
            what = 'kernel memory tiers: %s' % '; '.join(
                'memory_tier%d = node%s' % (
                    t, ','.join(str(i) for i in sorted(kernel)
                                if kernel[i] == t))
                for t in sorted(set(kernel.values())))
        raise TopologyError(
            'no slow memory tier to manage: %s puts every node in one tier '
            '(%s). The agent needs DRAM and at least one slower tier; if '
            'the slow memory is a plain NUMA node the kernel could not '
            'rank (no HMAT), set [memtier] node_tiers, e.g. "0:0,1:1"'
            % (what, seen))
    return topo

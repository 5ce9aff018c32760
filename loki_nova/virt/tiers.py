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

"""The host's memory tiers as the driver sees them.

Capacities and CPUs come from libvirt's host capabilities (the NUMA cells
Nova itself uses); which cell is fast and which is slow comes from the
kernel's memory tiers, read with the agent's topology module, or from
``[loki] node_tiers``.  No Nova import here, so it is testable alone.
"""

import dataclasses
import logging

from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier import topology

LOG = logging.getLogger(__name__)


class TierError(ValueError):
    """The tier configuration contradicts the host; the message says how."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One host NUMA cell from libvirt's capabilities."""
    id: int
    memory_mb: int
    cpus: int


@dataclasses.dataclass(frozen=True)
class HostTiers:
    #: {node id: MiB} of DRAM nodes; every memory node on an untiered host.
    fast: dict
    #: {node id: MiB} of slower nodes; empty on an untiered host.
    slow: dict
    #: Where the split came from, for logs.
    source: str

    @property
    def tiered(self):
        return bool(self.slow)

    @property
    def fast_mb(self):
        return sum(self.fast.values())

    @property
    def slow_mb(self):
        return sum(self.slow.values())

    @property
    def fast_nodes(self):
        return sorted(self.fast)

    @property
    def slow_nodes(self):
        return sorted(self.slow)

    def describe(self):
        def part(nodes):
            return ', '.join('node%d %d MiB' % (n, nodes[n])
                             for n in sorted(nodes)) or 'none'
        return 'DRAM: %s; slow: %s (from %s)' % (
            part(self.fast), part(self.slow), self.source)


def untiered(cells, why):
    return HostTiers({c.id: c.memory_mb for c in cells}, {}, why)


def discover(cells, kfs=None, node_tiers=None):
    """Split ``cells`` (``Cell``s) into tiers.

    With ``node_tiers`` ({node: rank} or oslo's {'node': 'rank'}) every cell
    with memory must be named, and nothing else; otherwise the kernel's
    memory tiers decide: the lowest ``memory_tierN`` holding a cell is DRAM.
    A host whose kernel reports no tiers, or one tier only, is untiered; a
    CPU-less cell on such a host gets a warning, since that is usually slow
    memory the firmware did not describe (no HMAT).  Raises ``TierError``
    for an override that does not match the host."""
    cells = [c for c in cells if c.memory_mb > 0]
    if not cells:
        return HostTiers({}, {}, 'no NUMA cells with memory')
    ids = {c.id for c in cells}
    seen = ', '.join('node%d (%d MiB, %s)' % (
        c.id, c.memory_mb, '%d CPUs' % c.cpus if c.cpus else 'no CPUs')
        for c in sorted(cells, key=lambda c: c.id))
    if node_tiers:
        try:
            ranks = topology.parse_node_tiers(node_tiers)
        except topology.TopologyError as exc:
            raise TierError('[loki] %s' % exc) from None
        unknown = sorted(set(ranks) - ids)
        missing = sorted(ids - set(ranks))
        if unknown or missing:
            raise TierError(
                '[loki] node_tiers must name exactly the NUMA nodes with '
                'memory; %s%s; this host has %s' % (
                    'it names %s, not on this host' % ', '.join(
                        'node%d' % n for n in unknown) if unknown else '',
                    ('%sit leaves out %s' % ('; ' if unknown else '',
                                             ', '.join('node%d' % n
                                                       for n in missing)))
                    if missing else '', seen))
        if 0 not in ranks.values():
            raise TierError('[loki] node_tiers gives no node rank 0 (DRAM); '
                            'this host has %s' % seen)
        source = '[loki] node_tiers'
    else:
        kfs = kfs or kernfs_mod.KernelFS()
        try:
            kernel = topology.read_kernel_tiers(kfs)
        except kernfs_mod.KernelFSError as exc:
            LOG.warning('loki: cannot read the kernel memory tiers (%s); '
                        'treating the host as untiered', exc)
            kernel = {}
        kernel = {n: t for n, t in kernel.items() if n in ids}
        order = sorted(set(kernel.values()))
        if len(order) < 2 or set(kernel) != ids:
            if any(not c.cpus for c in cells):
                LOG.warning(
                    'loki: this host has a NUMA node without CPUs (%s) but '
                    'the kernel memory tiers (%s) do not rank it below '
                    'DRAM, so loki treats the host as untiered. If that '
                    'node is '
                    'PMem or CXL memory, set [loki] node_tiers.',
                    seen, ', '.join('node%d: memory_tier%d' % kv
                                    for kv in sorted(kernel.items()))
                    or 'none')
            return untiered(cells, 'kernel memory tiers: one tier')
        ranks = {n: order.index(t) for n, t in kernel.items()}
        source = 'kernel memory tiers %s' % ', '.join(
            'memory_tier%d' % t for t in order)
    by_id = {c.id: c for c in cells}
    fast = {n: by_id[n].memory_mb for n, r in ranks.items() if r == 0}
    slow = {n: by_id[n].memory_mb for n, r in ranks.items() if r > 0}
    if not slow:
        return untiered(cells, source + ': one tier')
    return HostTiers(fast, slow, source)

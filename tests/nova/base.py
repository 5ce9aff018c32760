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

"""Base class for LokiDriver tests in Nova's in-process harness.

Two stand-ins are used, both for hardware that cannot exist here:

* fake libvirt (Nova's ``fakelibvirt``) models each compute host; a tiered
  host is two DRAM cells with CPUs plus CPU-less cells, the way a host with
  PMem in system-RAM mode or a CXL memory expander looks to libvirt;
* a generated sysfs tree stands in for the kernel's
  ``/sys/devices/virtual/memory_tiering`` of such hosts (DRAM in
  ``memory_tier4``, slow nodes in ``memory_tier22``), read by the real tier
  discovery through ``[loki] sysfs_root``.
"""

import copy
import os
import sys

import fixtures
from lxml import etree
from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import base

from loki_nova.memtier import metadata
from loki_nova.virt import driver as loki_driver  # noqa: F401 ([loki] opts)
from loki_nova.virt import specs

GIB_KB = 1024 * 1024
#: DRAM per host (two cells with CPUs) and slow memory per CPU-less cell.
DRAM_KB = 16 * GIB_KB
SLOW_KB = 32 * GIB_KB
NS = {'loki': metadata.NAMESPACE}


def slow_cell(node_id, kb=SLOW_KB):
    """A CPU-less host NUMA cell: PMem/CXL memory as libvirt reports it."""
    from nova.virt.libvirt import config as vconfig
    cell = vconfig.LibvirtConfigCapsNUMACell()
    cell.id = node_id
    cell.memory = kb
    cell.cpus = []
    cell.mempages = fakelibvirt.create_mempages([(4, kb // 4)])
    return cell


def write_memory_tiers(root, fast, slow):
    """The memory_tiering directory of a kernel that ranked ``fast`` nodes
    as DRAM and ``slow`` nodes one tier below (HMAT-described slow memory)."""
    base_dir = os.path.join(root, 'sys/devices/virtual/memory_tiering')
    for tier, nodes in (('memory_tier4', fast), ('memory_tier22', slow)):
        if not nodes:
            continue
        os.makedirs(os.path.join(base_dir, tier), exist_ok=True)
        with open(os.path.join(base_dir, tier, 'nodelist'), 'w') as f:
            f.write(','.join(str(n) for n in sorted(nodes)) + '\n')


class LokiTestBase(base.ServersTestBase):
    """ServersTestBase with LokiDriver as the compute driver."""

    microversion = 'latest'
    ADMIN_API = True

    #: Node ids that may be slow on any host of the test; the kernel tiers
    #: tree lists them all, each host uses the ones it has.
    SLOW_NODE_IDS = (2, 3, 4, 5)

    def _setup_services(self):
        # The wheel installs Nova's api-paste.ini under sys.prefix.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        root = self.useFixture(fixtures.TempDir()).path
        write_memory_tiers(root, (0, 1), self.SLOW_NODE_IDS)
        self.flags(sysfs_root=root, group='loki')
        # No tiering agent runs beside these computes: spawns must not
        # wait for one (tests/nova/test_reserve_dram.py starts one).
        self.flags(reserve_dram_timeout=0, group='loki')
        super()._setup_services()

    def setUp(self):
        super().setUp()
        # Every XML Nova hands to libvirt, per host, in order.
        self.defined = []
        real_define = fakelibvirt.Connection.defineXML
        defined = self.defined

        def define_xml(conn, xml):
            defined.append((conn.hostname, xml))
            return real_define(conn, xml)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Connection.defineXML', define_xml))

    def _clear_attrs(self):
        # nova.test.TestCase deletes public attributes after each test to
        # save memory; under pytest that breaks pytest's own teardown.
        pass

    def _setup_compute_service(self):
        self.flags(compute_driver='loki.LokiDriver')

    def start_loki_compute(self, hostname, slow=(2,), slow_kb=SLOW_KB,
                           hugepages_2m=0):
        """A compute with two DRAM cells (0, 1; 4 CPUs, 16 GiB in all) and
        one CPU-less cell per id in ``slow``; ``slow=()`` is an untiered
        host.  ``hugepages_2m`` 2 MiB pages are reserved on each DRAM
        cell."""
        mempages = None
        if hugepages_2m:
            cell_kb = DRAM_KB // 2
            mempages = {
                cell: fakelibvirt.create_mempages(
                    [(4, (cell_kb - hugepages_2m * 2048) // 4),
                     (2048, hugepages_2m)])
                for cell in (0, 1)}
        host_info = fakelibvirt.HostInfo(cpu_nodes=2, cpu_sockets=1,
                                         cpu_cores=2, cpu_threads=1,
                                         kB_mem=DRAM_KB, mempages=mempages)
        for node_id in slow:
            host_info.numa_topology.cells.append(slow_cell(node_id, slow_kb))
        return self.start_compute(hostname=hostname, host_info=host_info)

    # -- helpers for assertions -------------------------------------------

    def tiered_flavor(self, memory_mb=4096, policy='static', split=True,
                      **kwargs):
        extra = dict(specs.flavor_properties(memory_mb, policy, **kwargs))
        if not split:
            extra = {k: v for k, v in extra.items()
                     if not k.startswith(('resources:', 'trait:'))}
        return self._create_flavor(memory_mb=memory_mb, extra_spec=extra)

    def last_xml(self, hostname=None, name=None):
        """The last domain XML defined (on ``hostname``), parsed."""
        for host, xml in reversed(self.defined):
            if hostname and host != hostname:
                continue
            root = etree.fromstring(xml)
            if name and root.findtext('name') != name:
                continue
            return root
        self.fail('no domain was defined on %s' % (hostname or 'any host'))

    def domain_xml(self, hostname, server):
        conn = self.computes[hostname].driver._host.get_connection()
        dom = conn.lookupByUUIDString(server['id'])
        return etree.fromstring(dom.XMLDesc(0))

    def instance_name(self, server):
        return server['OS-EXT-SRV-ATTR:instance_name']

    def provider(self, hostname):
        return self._get_provider_uuid_by_name(hostname)

    def inventory(self, hostname):
        return self.placement.get(
            '/resource_providers/%s/inventories' % self.provider(hostname),
            version='1.26').body['inventories']

    def usages(self, hostname):
        return self._get_provider_usages(self.provider(hostname))

    def traits(self, hostname):
        return set(self.placement.get(
            '/resource_providers/%s/traits' % self.provider(hostname),
            version='1.6').body['traits'])

    def instance(self, server):
        return objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'])


def libvirt_roundtrip(root):
    """Define ``root`` (a domain XML element) in libvirt's built-in test
    driver (a real libvirt parser, no hypervisor), read it back and
    undefine it: what a real libvirt keeps of the XML."""
    import libvirt
    conn = libvirt.open('test:///default')
    try:
        dom = conn.defineXML(etree.tostring(root, encoding='unicode'))
        try:
            return etree.fromstring(dom.XMLDesc(0))
        finally:
            dom.undefine()
    finally:
        conn.close()


def libvirt_roundtrip_tiering(root):
    """``libvirt_roundtrip`` of only the parts loki writes (memory
    backing, numatune, loki metadata) in a minimal domain: for XML whose
    other parts come from fake libvirt's own ``XMLDesc`` (which real
    libvirt would not accept, e.g. duplicate disk addresses)."""
    domain = etree.Element('domain', type='test')
    etree.SubElement(domain, 'name').text = 'loki-roundtrip'
    etree.SubElement(domain, 'memory').text = root.findtext('memory')
    etree.SubElement(domain, 'vcpu').text = '1'
    os_el = etree.SubElement(domain, 'os')
    etree.SubElement(os_el, 'type').text = 'hvm'
    for name in ('memoryBacking', 'numatune'):
        el = root.find(name)
        if el is not None:
            domain.append(copy.deepcopy(el))
    meta = root.find('metadata/loki:memtier', NS)
    if meta is not None:
        etree.SubElement(domain, 'metadata').append(copy.deepcopy(meta))
    return libvirt_roundtrip(domain)


def numatune(root):
    """(mode, nodeset) of <numatune><memory>, and memnodes as a dict."""
    tune = root.find('numatune')
    if tune is None:
        return None, None, {}
    mem = tune.find('memory')
    memnodes = {int(m.get('cellid')): (m.get('mode'), m.get('nodeset'))
                for m in tune.findall('memnode')}
    if mem is None:
        return None, None, memnodes
    return mem.get('mode'), mem.get('nodeset'), memnodes


def loki_metadata(root):
    el = root.find('metadata/loki:memtier', NS)
    if el is None:
        return None
    return metadata.from_xml(etree.tostring(el, encoding='unicode'))


def memory_backing(root):
    mb = root.find('memoryBacking')
    if mb is None:
        return None
    source = mb.find('source')
    access = mb.find('access')
    return (source.get('type') if source is not None else None,
            access.get('mode') if access is not None else None)

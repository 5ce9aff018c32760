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

"""A guest's loki XML through Nova's lifecycle operations.

After spawn, hard reboot, resize (confirm and revert, tiered <-> untiered),
cold migration, live migration, evacuation and delete, the XML libvirt
receives must carry the right ``<numatune>``, ``<memoryBacking>`` and
``<loki:memtier>`` metadata for the host the guest is on.  Hosts here have
DRAM on nodes 0-1 and their slow memory on different node numbers (2 on one
host, 3 on the other), so XML kept from the wrong host shows.

Two things fake libvirt cannot do are stood in for, as Nova's own libvirt
functional tests do: the disk copy of a resize/cold migration
(``migrate_disk_and_power_off``) and the migration itself
(``migrateToURI3`` creates the domain on the destination from the
``destination_xml`` it is given).  Fake libvirt's ``XMLDesc`` also drops
the ``<numatune><memory>``, ``<memoryBacking>`` and ``<metadata>`` a real
libvirt keeps; ``KeptSections`` puts them back, so that a live migration
starts from the XML the source host really runs.
"""

import os

import fixtures
from lxml import etree
from nova import conf
from nova.tests.fixtures import libvirt as fakelibvirt

from loki_nova.virt import driver as loki_driver
from tests.nova import base

CONF = conf.CONF
#: Elements of a domain's XML that real libvirt reports back as defined
#: and fake libvirt drops (or, for numatune, rewrites).
KEPT = ('numatune', 'memoryBacking', 'metadata')
MEM_MB = 4096


class KeptSections(fixtures.Fixture):
    """Make fake libvirt's ``XMLDesc`` return the ``KEPT`` elements of the
    XML the domain was defined or created with."""

    def _setUp(self):
        real_init = fakelibvirt.Domain.__init__
        real_desc = fakelibvirt.Domain.XMLDesc

        def init(dom, connection, xml, *args, **kwargs):
            real_init(dom, connection, xml, *args, **kwargs)
            root = etree.fromstring(xml)
            dom._loki_kept = [etree.tostring(el, encoding='unicode')
                              for name in KEPT
                              for el in root.findall(name)]

        def xml_desc(dom, flags):
            root = etree.fromstring(real_desc(dom, flags))
            for name in KEPT:
                for el in root.findall(name):
                    root.remove(el)
            for text in getattr(dom, '_loki_kept', ()):
                root.append(etree.fromstring(text))
            return etree.tostring(root, encoding='unicode')

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.__init__', init))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.XMLDesc', xml_desc))


class LifecycleBase(base.LokiTestBase):

    def setUp(self):
        super().setUp()
        self.useFixture(KeptSections())
        # Resize and cold migration copy disks over ssh; nothing to copy
        # here (Nova's libvirt functional tests stub this the same way).
        # LokiDriver's own override still runs and calls this one.
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', return_value='{}'))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            self._migrate_stub))
        #: (source host, destination host, destination_xml) per migration.
        self.migrations = []
        self._lm_hosts = None

    def _migrate_stub(self, domain, dconnuri, params, flags):
        src, dest = self._lm_hosts
        xml = params['destination_xml']
        self.migrations.append((src, dest, xml))
        self.connection(dest).createXML(xml, 0)
        domain.complete_job()

    def live_migrate(self, server, src, dest):
        self._lm_hosts = (src, dest)
        server = self._live_migrate(server, host=dest)
        self.assertEqual(dest, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual((src, dest), self.migrations[-1][:2])
        self.assertTrue(self.has_domain(dest, server))
        # The destination's published node numbers were used up: a later
        # migration cannot pick up stale ones.
        self.assertNotIn(loki_driver.MIGRATION_NODES_KEY,
                         self.instance(server).system_metadata)
        sent = etree.fromstring(self.migrations[-1][2])
        # A real libvirt parser keeps the rewritten numatune and backing.
        kept = base.libvirt_roundtrip_tiering(sent)
        self.assertEqual(base.numatune(sent), base.numatune(kept))
        self.assertEqual(base.memory_backing(sent), base.memory_backing(kept))
        self.assertEqual(base.loki_metadata(sent), base.loki_metadata(kept))
        return server, sent

    # -- helpers -----------------------------------------------------------

    def connection(self, hostname):
        return self.computes[hostname].driver._host.get_connection()

    def has_domain(self, hostname, server):
        try:
            self.connection(hostname).lookupByUUIDString(server['id'])
        except fakelibvirt.libvirtError:
            return False
        return True

    def split(self, hostname):
        """(DRAM MiB, slow MiB) allocated on ``hostname``."""
        usages = self.usages(hostname)
        return usages['MEMORY_MB'], usages['CUSTOM_LOKI_SLOW_MEMORY_MB']

    def boot(self, flavor, host):
        server = self._create_server(flavor_id=flavor, host=host,
                                     networks='none')
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        return server

    def xml_on(self, hostname, server):
        """The last XML defined for ``server`` on ``hostname``."""
        return self.last_xml(hostname, self.instance_name(server))

    def assert_tiered(self, root, nodeset, policy='static', floor=1024,
                      ceiling=None):
        self.assertEqual(('restrictive', nodeset, {}), base.numatune(root))
        self.assertEqual(('memfd', 'shared'), base.memory_backing(root))
        meta = base.loki_metadata(root)
        self.assertIsNotNone(meta, 'no <loki:memtier> metadata')
        self.assertEqual((policy, floor), (meta.policy, meta.floor_mb))
        if ceiling is not None:
            self.assertEqual(ceiling, meta.ceiling_mb)

    def assert_untiered(self, root):
        self.assertEqual(('strict', '0-1', {}), base.numatune(root))
        self.assertIsNone(base.loki_metadata(root))
        backing = base.memory_backing(root)
        self.assertNotEqual('memfd', backing and backing[0])


class TestResize(LifecycleBase):

    def test_spawn_reboot_resize_revert_confirm_delete(self):
        self.start_loki_compute('host_a', slow=(2,))
        self.start_loki_compute('host_b', slow=(3,))
        static = self.tiered_flavor(MEM_MB, 'static', dram_percent=25)
        on_demand = self.tiered_flavor(MEM_MB, 'on_demand', dram_mb=1024,
                                       dram_max_mb=3072)
        plain = self._create_flavor(memory_mb=MEM_MB)

        server = self.boot(static, 'host_a')
        self.assert_tiered(self.xml_on('host_a', server), '0-2')

        count = len(self.defined)
        server = self._reboot_server(server, hard=True)
        self.assertGreater(len(self.defined), count, 'reboot defined none')
        self.assert_tiered(self.xml_on('host_a', server), '0-2')

        # tiered -> untiered, reverted: tiered again on host_a.
        server = self._resize_server(server, plain)
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        self.assert_untiered(self.xml_on('host_b', server))
        count = len(self.defined)
        server = self._revert_resize(server)
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertGreater(len(self.defined), count, 'revert defined none')
        self.assert_tiered(self.last_xml(), '0-2')
        self.assertFalse(self.has_domain('host_b', server))

        # tiered -> untiered, confirmed.
        server = self._resize_server(server, plain)
        self.assert_untiered(self.xml_on('host_b', server))
        server = self._confirm_resize(server)
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        # (The source's domain is not checked here: the harness has one
        # CONF.host, the last compute started, and the libvirt driver's
        # confirm only undefines when instance.host differs from it.)
        self.assertTrue(self.has_domain('host_b', server))
        self.assertEqual((MEM_MB, 0), self.split('host_b'))

        # untiered -> tiered, reverted: untiered again on host_b.
        server = self._resize_server(server, on_demand)
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assert_tiered(self.xml_on('host_a', server), '0-2',
                           'on_demand', 1024, 3072)
        server = self._revert_resize(server)
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        self.assert_untiered(self.last_xml())

        # untiered -> tiered, confirmed.
        server = self._resize_server(server, on_demand)
        server = self._confirm_resize(server)
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assert_tiered(self.xml_on('host_a', server), '0-2',
                           'on_demand', 1024, 3072)
        self.assertFalse(self.has_domain('host_b', server))
        self.assertEqual((1024, 3072), self.split('host_a'))

        # delete: no domain, no instance directory left.
        inst_dir = os.path.join(CONF.instances_path, server['id'])
        self.assertTrue(self.has_domain('host_a', server))
        self.assertTrue(os.path.isdir(inst_dir))
        self._delete_server(server)
        self.assertFalse(self.has_domain('host_a', server))
        self.assertFalse(self.has_domain('host_b', server))
        self.assertFalse(os.path.exists(inst_dir))


class TestMigration(LifecycleBase):

    def test_cold_then_live_migration_between_slow_node_numbers(self):
        self.start_loki_compute('host_a', slow=(2,))
        self.start_loki_compute('host_b', slow=(3,))
        static = self.tiered_flavor(MEM_MB, 'static', dram_percent=25)
        plain = self._create_flavor(memory_mb=MEM_MB)
        tiered = self.boot(static, 'host_a')
        untiered = self.boot(plain, 'host_a')
        self.assert_tiered(self.xml_on('host_a', tiered), '0-2')
        self.assert_untiered(self.xml_on('host_a', untiered))

        # Cold migration: the XML is built anew on host_b.
        tiered = self._migrate_server(tiered, host='host_b')
        self.assert_tiered(self.xml_on('host_b', tiered), '0-1,3')
        tiered = self._confirm_resize(tiered)
        self.assertEqual('host_b', tiered['OS-EXT-SRV-ATTR:host'])

        # Live migration host_b -> host_a: the XML libvirt receives is the
        # source's, rewritten for host_a's slow node 2.
        tiered, dest_xml = self.live_migrate(tiered, 'host_b', 'host_a')
        self.assert_tiered(dest_xml, '0-2')
        # ... and back: node 3, not the 2 the source runs on.
        tiered, dest_xml = self.live_migrate(tiered, 'host_a', 'host_b')
        self.assert_tiered(dest_xml, '0-1,3')
        self.assertEqual((1024, 3072), self.split('host_b'))

        # An untiered guest stays on DRAM only.
        untiered, dest_xml = self.live_migrate(untiered, 'host_a', 'host_b')
        self.assert_untiered(dest_xml)

    def test_evacuate(self):
        self.start_loki_compute('host_a', slow=(2,))
        self.start_loki_compute('host_b', slow=(3,))
        static = self.tiered_flavor(MEM_MB, 'on_demand', dram_mb=1024,
                                    dram_max_mb=2048)
        server = self.boot(static, 'host_a')
        self.assert_tiered(self.xml_on('host_a', server), '0-2',
                           'on_demand', 1024, 2048)

        service = self.admin_api.get_services(
            host='host_a', binary='nova-compute')[0]
        self.computes['host_a'].stop()
        self.admin_api.put_service(service['id'], {'forced_down': 'true'})
        server = self._evacuate_server(server, expected_host='host_b')
        self.assert_tiered(self.xml_on('host_b', server), '0-1,3',
                           'on_demand', 1024, 2048)
        self.assertTrue(self.has_domain('host_b', server))

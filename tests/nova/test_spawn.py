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

"""Spawning guests with LokiDriver in the harness: the XML Nova really sends
to libvirt (and what a real libvirt parser keeps of it) for each policy and
each combination with NUMA, page size and vPMEM, and the build failures of
inconsistent flavors."""

import os

from nova import conf
from nova import objects

from loki_nova.virt import specs
from tests.nova import base

CONF = conf.CONF


class TestSpawn(base.LokiTestBase):

    def _boot(self, flavor, state='ACTIVE'):
        return self._create_server(flavor_id=flavor, networks='none',
                                   expected_state=state)

    def _assert_tiered_xml(self, root, nodeset, policy, floor, ceiling):
        self.assertEqual(('restrictive', nodeset), base.numatune(root)[:2])
        self.assertEqual(('memfd', 'shared'), base.memory_backing(root))
        meta = base.loki_metadata(root)
        self.assertEqual((policy, floor, ceiling),
                         (meta.policy, meta.floor_mb, meta.ceiling_mb))

    def test_static_guest(self):
        self.start_loki_compute('tiered1', slow=(2,))
        server = self._boot(self.tiered_flavor(4096, 'static',
                                               dram_percent=25))
        sent = self.last_xml('tiered1')
        self._assert_tiered_xml(sent, '0-2', 'static', 1024, 1024)
        self.assertEqual({}, base.numatune(sent)[2])
        # A real libvirt parser keeps every part of it.
        self._assert_tiered_xml(base.libvirt_roundtrip(sent), '0-2',
                                'static', 1024, 1024)
        self.assertEqual(self.instance_name(server), sent.findtext('name'))
        usage = self.usages('tiered1')
        self.assertEqual(1024, usage['MEMORY_MB'])
        self.assertEqual(3072, usage[specs.SLOW_RC])

    def test_on_demand_guest(self):
        self.start_loki_compute('tiered1', slow=(2, 3))
        self._boot(self.tiered_flavor(4096, 'on_demand', dram_mb=1024,
                                      dram_max_mb=3072))
        sent = self.last_xml('tiered1')
        self._assert_tiered_xml(sent, '0-3', 'on_demand', 1024, 3072)
        self._assert_tiered_xml(base.libvirt_roundtrip(sent), '0-3',
                                'on_demand', 1024, 3072)

    def test_untiered_guest_confined_to_dram(self):
        self.start_loki_compute('tiered1', slow=(2,))
        flavor = self._create_flavor(memory_mb=2048)
        self._boot(flavor)
        for root in (self.last_xml('tiered1'),
                     base.libvirt_roundtrip(self.last_xml('tiered1'))):
            self.assertEqual(('strict', '0-1'), base.numatune(root)[:2])
            self.assertIsNone(base.loki_metadata(root))
            self.assertIsNone(base.memory_backing(root))
        usage = self.usages('tiered1')
        self.assertEqual(2048, usage['MEMORY_MB'])
        self.assertEqual(0, usage.get(specs.SLOW_RC, 0))

    def test_untiered_host_untouched_xml(self):
        self.start_loki_compute('plain1', slow=())
        self._boot(self._create_flavor(memory_mb=2048))
        root = self.last_xml('plain1')
        self.assertEqual((None, None, {}), base.numatune(root))
        self.assertIsNone(base.loki_metadata(root))

    def test_numa_guest_cells_get_their_dram_cell_plus_slow(self):
        self.start_loki_compute('tiered1', slow=(2,))
        flavor = self.tiered_flavor(4096, 'static', dram_percent=50)
        self.api_fixture.admin_api.post_extra_spec(
            flavor, {'extra_specs': {'hw:numa_nodes': '2'}})
        self._boot(flavor)
        for root in (self.last_xml('tiered1'),
                     base.libvirt_roundtrip(self.last_xml('tiered1'))):
            mode, nodeset, memnodes = base.numatune(root)
            self.assertEqual(('restrictive', '0-2'), (mode, nodeset))
            self.assertEqual({0: ('restrictive', '0,2'),
                              1: ('restrictive', '1-2')}, memnodes)
            self.assertEqual(('memfd', 'shared'), base.memory_backing(root))

    def test_small_pages_supported(self):
        self.start_loki_compute('tiered1', slow=(2,))
        flavor = self.tiered_flavor(2048, 'static', dram_mb=512)
        self.api_fixture.admin_api.post_extra_spec(
            flavor, {'extra_specs': {'hw:mem_page_size': 'small'}})
        self._boot(flavor)
        root = self.last_xml('tiered1')
        self.assertIsNone(root.find('memoryBacking/hugepages'))
        self.assertEqual(('memfd', 'shared'), base.memory_backing(root))
        self.assertEqual('restrictive', base.numatune(root)[0])

    def test_small_pages_in_any_spelling_nova_reads(self):
        # Nova reads a number as KiB and a size with a unit in bytes
        # (hardware._get_numa_pagesize_constraint): all of these are the
        # host's 4 KiB pages.
        self.start_loki_compute('tiered1', slow=(2,))
        for page in ('4KiB', '4096B', '4', '4KB'):
            flavor = self.tiered_flavor(2048, 'static', dram_mb=512)
            self.api_fixture.admin_api.post_extra_spec(
                flavor, {'extra_specs': {'hw:mem_page_size': page}})
            server = self._boot(flavor)
            root = self.last_xml('tiered1', self.instance_name(server))
            self.assertIsNone(root.find('memoryBacking/hugepages'), page)
            self.assertEqual(('memfd', 'shared'), base.memory_backing(root))
            self.assertEqual('restrictive', base.numatune(root)[0], page)
            self._delete_server(server)

    def test_pages_that_may_be_huge_rejected(self):
        self.start_loki_compute('tiered1', slow=(2,), hugepages_2m=1024)
        for page in ('large', 'any', '2048'):
            flavor = self.tiered_flavor(2048, 'static', dram_mb=512)
            self.api_fixture.admin_api.post_extra_spec(
                flavor, {'extra_specs': {'hw:mem_page_size': page}})
            server = self._boot(flavor, 'ERROR')
            self._assert_failed_cleanly(
                server, 'hw:mem_page_size=%s: not with a tiered' % page,
                'set small or 4KiB, remove it or set')
        # A bare number is KiB: 4096 is a 4 MiB page (the scheduler finds
        # no host with such pages here; the check is the driver's, called
        # as spawn calls it).
        driver = self.computes['tiered1'].driver
        image = objects.ImageMeta.from_dict({'properties': {}})
        for page in ('4096', '1GiB'):
            extra = dict(specs.flavor_properties(4096, 'static',
                                                 dram_mb=1024))
            extra['hw:mem_page_size'] = page
            flavor = objects.Flavor(name='pages', memory_mb=4096,
                                    extra_specs=extra)
            with self.assertRaisesRegex(
                    specs.SpecError,
                    r'hw:mem_page_size=%s: not with a tiered' % page):
                driver.check_tiered_flavor(flavor, image)

    def test_locked_memory_as_nova_reads_it_rejected(self):
        # Nova takes y, t, on, 1, true, yes in any case as true
        # (strutils.bool_from_string); locked memory needs a page size.
        self.start_loki_compute('tiered1', slow=(2,))
        for value in ('y', 't', 'Y', 'On'):
            flavor = self.tiered_flavor(2048, 'static', dram_mb=512)
            self.api_fixture.admin_api.post_extra_spec(
                flavor, {'extra_specs': {'hw:locked_memory': value,
                                         'hw:mem_page_size': 'small'}})
            server = self._boot(flavor, 'ERROR')
            self._assert_failed_cleanly(
                server, 'hw:locked_memory/hw:cpu_realtime: not with a '
                'tiered loki:memory_tier_policy')
        flavor = self.tiered_flavor(2048, 'static', dram_mb=512)
        self.api_fixture.admin_api.post_extra_spec(
            flavor, {'extra_specs': {'hw:locked_memory': 'n',
                                     'hw:mem_page_size': 'small'}})
        self._boot(flavor)
        self.assertEqual(('memfd', 'shared'),
                         base.memory_backing(self.last_xml('tiered1')))

    def _unchecked_flavor(self, extra):
        """A flavor whose extra specs were set before microversion 2.86,
        which nova-api stores without checking."""
        api = self.api_fixture.admin_api
        microversion = api.microversion
        api.microversion = '2.85'
        try:
            return self._create_flavor(memory_mb=4096, extra_spec=extra)
        finally:
            api.microversion = microversion

    def test_keys_and_numbers_loki_would_misread_fail_cleanly(self):
        self.start_loki_compute('tiered1', slow=(2,))
        cases = [
            # Keys are case sensitive: this would run untiered.
            ({'LOKI:memory_tier_policy': 'static', 'LOKI:dram_mb': '1024'},
             ['LOKI:dram_mb is not read: extra spec keys are case '
              'sensitive; rename it to loki:dram_mb']),
            ({'loki:memory_tier_policy': 'none', 'Loki:dram_mb': '1024'},
             ['rename it to loki:dram_mb']),
            ({specs.POLICY: 'static', specs.DRAM_PERCENT: '25',
              'loki:dram_gb': '1'},
             ['loki:dram_gb is not a loki extra spec; valid keys: '
              'loki:memory_tier_policy, loki:dram_mb, loki:dram_percent, '
              'loki:dram_max_mb']),
            ({specs.POLICY: 'static', specs.DRAM_MB: '+1024'},
             ['loki:dram_mb must be a whole number written with the digits '
              '0-9 only']),
            ({specs.POLICY: 'static', specs.DRAM_MB: '1_024'},
             ['0-9 only', "got '1_024'"]),
        ]
        for extra, needles in cases:
            server = self._boot(self._unchecked_flavor(extra), 'ERROR')
            message = self._assert_failed_cleanly(server, *needles)
            self.assertIn('Invalid input', message)
        self.assertEqual([], [x for h, x in self.defined])

    def _assert_failed_cleanly(self, server, *needles):
        message = server['fault']['message']
        for needle in needles:
            self.assertIn(needle, message)
        name = self.instance_name(server)
        for _host, xml in self.defined:
            self.assertNotIn('<name>%s</name>' % name, xml)
        for compute in self.computes.values():
            conn = compute.driver._host.get_connection()
            self.assertNotIn(name, [d.name() for d in conn.listAllDomains()])
        self.assertFalse(os.path.exists(
            os.path.join(CONF.instances_path, server['id'])))
        return message

    def test_huge_pages_rejected(self):
        self.start_loki_compute('tiered1', slow=(2,), hugepages_2m=1024)
        flavor = self.tiered_flavor(2048, 'static', dram_mb=512)
        self.api_fixture.admin_api.post_extra_spec(
            flavor, {'extra_specs': {'hw:mem_page_size': '2MB'}})
        server = self._boot(flavor, 'ERROR')
        self._assert_failed_cleanly(server, 'hw:mem_page_size=2MB',
                                    'remove it or set')

    def test_vpmem_rejected(self):
        # A host with vPMEM namespaces needs ndctl and real PMem; the check
        # itself is the driver's, called as spawn calls it.
        self.start_loki_compute('tiered1', slow=(2,))
        driver = self.computes['tiered1'].driver
        extra = dict(specs.flavor_properties(4096, 'static', dram_mb=1024))
        extra['hw:pmem'] = '4GB'
        flavor = objects.Flavor(name='pmem', memory_mb=4096,
                                extra_specs=extra)
        image = objects.ImageMeta.from_dict({'properties': {}})
        with self.assertRaisesRegex(specs.SpecError, r'hw:pmem \(vPMEM\)'):
            driver.check_tiered_flavor(flavor, image)

    def test_inconsistent_flavors_fail_cleanly(self):
        self.start_loki_compute('tiered1', slow=(2,))
        cases = [
            ({specs.POLICY: 'static', specs.DRAM_MB: '8192'},
             ['loki:dram_mb', 'from 1 to the flavor memory (4096 MiB)']),
            ({specs.POLICY: 'on_demand', specs.DRAM_MB: '2048',
              specs.DRAM_MAX_MB: '1024'},
             ['loki:dram_max_mb', 'from the floor (2048 MiB)']),
            ({specs.POLICY: 'static'},
             ['exactly one of loki:dram_mb and loki:dram_percent',
              'neither']),
            ({specs.POLICY: 'static', specs.DRAM_MB: '1024',
              specs.DRAM_PERCENT: '25'},
             ['exactly one of loki:dram_mb and loki:dram_percent', 'both']),
            ({specs.POLICY: 'static', specs.DRAM_MB: '1024',
              'resources:MEMORY_MB': '2048',
              'resources:%s' % specs.SLOW_RC: '2048'},
             ['resources:MEMORY_MB=2048 contradicts loki floor 1024 MiB',
              'valid: resources:MEMORY_MB=1024, '
              'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=3072']),
            ({specs.DRAM_PERCENT: '25'},
             ['loki:dram_percent without loki:memory_tier_policy']),
        ]
        for extra, needles in cases:
            flavor = self._create_flavor(memory_mb=4096, extra_spec=extra)
            server = self._boot(flavor, 'ERROR')
            message = self._assert_failed_cleanly(server, *needles)
            self.assertIn('Invalid input', message)
        self.assertEqual([], [x for h, x in self.defined])

    def test_tiered_without_split_accepted_with_warning(self):
        self.start_loki_compute('tiered1', slow=(2,))
        flavor = self.tiered_flavor(4096, 'static', split=False,
                                    dram_percent=25)
        self._boot(flavor)
        self.assertIn('carries no resources:MEMORY_MB',
                      self.stdlog.logger.output)
        usage = self.usages('tiered1')
        self.assertEqual(4096, usage['MEMORY_MB'])
        self.assertEqual(0, usage.get(specs.SLOW_RC, 0))
        self._assert_tiered_xml(self.last_xml('tiered1'), '0-2', 'static',
                                1024, 1024)

    def test_tiered_flavor_on_untiered_host_fails(self):
        self.start_loki_compute('plain1', slow=())
        flavor = self.tiered_flavor(4096, 'static', split=False,
                                    dram_percent=25)
        server = self._boot(flavor, 'ERROR')
        self._assert_failed_cleanly(
            server, 'loki:memory_tier_policy=static: this host has no slow '
            'memory tier', 'trait:CUSTOM_LOKI_TIERED_MEMORY=required')

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

"""What LokiDriver reports to the real Placement service, and where the
scheduler puts tiered and untiered flavors because of it."""

from loki_nova.virt import specs
from tests.nova import base

FAST_MB = base.DRAM_KB // 1024
SLOW_MB = base.SLOW_KB // 1024


class TestPlacement(base.LokiTestBase):

    def test_tiered_host_inventory_and_trait(self):
        self.flags(slow_memory_reserved_mb=2048,
                   slow_memory_allocation_ratio=1.5, group='loki')
        self.flags(reserved_host_memory_mb=512)
        self.start_loki_compute('tiered1', slow=(2, 3))
        inv = self.inventory('tiered1')
        self.assertEqual(FAST_MB, inv['MEMORY_MB']['total'])
        self.assertEqual(FAST_MB, inv['MEMORY_MB']['max_unit'])
        self.assertEqual(512, inv['MEMORY_MB']['reserved'])
        slow = inv[specs.SLOW_RC]
        self.assertEqual((2 * SLOW_MB, 2 * SLOW_MB, 2048, 1.5, 1, 1),
                         (slow['total'], slow['max_unit'], slow['reserved'],
                          slow['allocation_ratio'], slow['min_unit'],
                          slow['step_size']))
        self.assertIn(specs.TRAIT, self.traits('tiered1'))

    def test_untiered_host_reports_like_libvirt_driver(self):
        self.start_loki_compute('loki1', slow=())
        self.flags(compute_driver='libvirt.LibvirtDriver')
        self.start_loki_compute('libvirt1', slow=())
        self.assertEqual(self.inventory('libvirt1'),
                         self.inventory('loki1'))
        self.assertEqual(self.traits('libvirt1'), self.traits('loki1'))
        self.assertNotIn(specs.SLOW_RC, self.inventory('loki1'))
        self.assertNotIn(specs.TRAIT, self.traits('loki1'))

    def test_a_host_not_running_qemu_guests_is_untiered(self):
        # LXC containers have no QEMU RAM for the agent to tier: the slow
        # node stays out of Placement, as with the libvirt driver.
        self.flags(virt_type='lxc', group='libvirt')
        self.start_loki_compute('lxc1', slow=(2,))
        driver = self.computes['lxc1'].driver
        self.assertFalse(driver.host_tiers.tiered)
        self.assertIn('virt_type lxc', driver.host_tiers.describe())
        self.assertNotIn(specs.SLOW_RC, self.inventory('lxc1'))
        self.assertNotIn(specs.TRAIT, self.traits('lxc1'))

    def test_flavors_land_and_consume_by_class(self):
        self.start_loki_compute('tiered1', slow=(2,))
        self.start_loki_compute('plain1', slow=())
        tiered = self.tiered_flavor(4096, 'static', dram_percent=25)
        plain = self._create_flavor(memory_mb=1024)
        tiered_servers = [
            self._create_server(flavor_id=tiered, networks='none')
            for _ in range(3)]
        plain_servers = [
            self._create_server(flavor_id=plain, networks='none')
            for _ in range(4)]
        for server in tiered_servers:
            self.assertEqual('tiered1', server['OS-EXT-SRV-ATTR:host'])
            alloc = self._get_allocations_by_server_uuid(server['id'])
            self.assertEqual({'MEMORY_MB': 1024, specs.SLOW_RC: 3072},
                             {k: v for k, v in alloc[
                                 self.provider('tiered1')][
                                     'resources'].items()
                              if k != 'VCPU' and k != 'DISK_GB'})
        for server in plain_servers:
            alloc = self._get_allocations_by_server_uuid(server['id'])
            for rp in alloc.values():
                self.assertNotIn(specs.SLOW_RC, rp['resources'])
        self.assertEqual(3 * 3072, self.usages('tiered1')[specs.SLOW_RC])
        self.assertNotIn(specs.SLOW_RC, self.usages('plain1'))
        # Untiered guests that did land on the tiered host used DRAM only.
        plain_on_tiered = sum(
            1 for s in plain_servers
            if s['OS-EXT-SRV-ATTR:host'] == 'tiered1')
        self.assertEqual(3 * 1024 + plain_on_tiered * 1024,
                         self.usages('tiered1')['MEMORY_MB'])


class TestHostLosesSlowTier(base.LokiTestBase):

    def test_slow_class_kept_reserved_while_guests_hold_it(self):
        self.start_loki_compute('tiered1', slow=(2,))
        flavor = self.tiered_flavor(4096, 'static', dram_percent=25)
        self._create_server(flavor_id=flavor, networks='none')
        # After a kernel update the slow node lands in the DRAM tier.
        self.flags(node_tiers={'0': '0', '1': '0', '2': '0'}, group='loki')
        self.restart_compute_service('tiered1')
        self._run_periodics()
        inv = self.inventory('tiered1')
        slow = inv[specs.SLOW_RC]
        self.assertEqual(slow['total'], slow['reserved'])
        self.assertEqual(SLOW_MB, slow['total'])
        self.assertNotIn(specs.TRAIT, self.traits('tiered1'))
        self.assertEqual(3072, self.usages('tiered1')[specs.SLOW_RC])
        self.assertIn('keeping the class fully reserved',
                      self.stdlog.logger.output)

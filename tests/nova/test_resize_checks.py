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

"""A resize to an inconsistent tiered flavor, and a resize or cold
migration of a tiered guest to a host without a slow tier, are refused
before the guest stops: the server stays ACTIVE on its host with its old
flavor and XML, and the instance fault names the spec."""

import time

import fixtures
from nova import context as nova_context
from nova import objects

from loki_nova.virt import specs
from tests.nova import base


class TestResizeChecks(base.LokiTestBase):

    # Casts stay casts, as between real services: the failure is handled
    # on the source compute, not thrown back into the API request.
    CAST_AS_CALL = False

    def _faults(self, server, count=1):
        """The server's instance faults, once there are ``count``: the
        source compute's handler may write one after the instance is back
        to ACTIVE."""
        deadline = time.monotonic() + 30
        while True:
            faults = objects.InstanceFaultList.get_by_instance_uuids(
                nova_context.get_admin_context(), [server['id']])
            if len(faults) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(len(faults), count,
                                'no instance fault within 30 s')
        return [fault.message for fault in faults]

    def _migration_failed(self, server, count):
        """Wait for the server's ``count``-th migration to fail."""
        deadline = time.monotonic() + 30
        while True:
            migrations = sorted(
                (m for m in self.admin_api.api_get(
                    '/os-migrations').body['migrations']
                 if m['instance_uuid'] == server['id']),
                key=lambda m: m['id'])
            if len(migrations) >= count and \
                    migrations[count - 1]['status'] in ('error', 'failed'):
                return migrations[count - 1]
            self.assertLess(time.monotonic(), deadline,
                            'migration %d did not fail within 30 s: %s'
                            % (count, migrations))
            time.sleep(0.05)

    def test_tiered_guest_not_moved_to_an_untiered_host(self):
        # Resize and cold migration copy disks over ssh; nothing to copy
        # here (as in test_lifecycle).  LokiDriver's checks still run.
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', return_value='{}'))
        self.start_loki_compute('host_a', slow=(2,))
        self.start_loki_compute('host_c', slow=())
        # Without the trait the scheduler accepts host_c; the driver's
        # check is what stops the move.
        flavor = self.tiered_flavor(4096, 'static', split=False,
                                    dram_percent=25)
        server = self._create_server(flavor_id=flavor, networks='none',
                                     host='host_a')
        bigger = self.tiered_flavor(4096, 'static', split=False,
                                    dram_percent=50)
        conn = self.computes['host_a'].driver._host.get_connection()
        defined = len(self.defined)
        for number, action in enumerate((
                {'migrate': {'host': 'host_c'}},
                {'resize': {'flavorRef': bigger}}), 1):
            self.api.post_server_action(server['id'], action)
            migration = self._migration_failed(server, number)
            self.assertEqual('host_c', migration['dest_compute'])
            server = self._wait_for_server_parameter(
                server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
            self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
            self.assertEqual('25', server['flavor']['extra_specs'][
                specs.DRAM_PERCENT])
            # Never stopped, never defined anywhere, nothing held on host_c.
            self.assertEqual(defined, len(self.defined))
            self.assertTrue(conn.lookupByUUIDString(server['id']).isActive())
            # (Nova gives the allocations back after the instance is
            # ACTIVE again.)
            deadline = time.monotonic() + 30
            while self.usages('host_c')['MEMORY_MB']:
                self.assertLess(time.monotonic(), deadline,
                                'host_c still holds the guest\'s memory')
                time.sleep(0.05)
            for message in self._faults(server, number):
                self.assertIn('loki:memory_tier_policy=static: the '
                              'destination host_c has no slow memory tier',
                              message)
                self.assertIn('trait:CUSTOM_LOKI_TIERED_MEMORY=required',
                              message)

        # A tiered destination is still fine, and the guest is tiered there.
        self.start_loki_compute('host_b', slow=(3,))
        server = self._migrate_server(server, host='host_b')
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        root = self.last_xml('host_b', self.instance_name(server))
        self.assertEqual(('restrictive', '0-1,3'), base.numatune(root)[:2])
        self.assertEqual('static', base.loki_metadata(root).policy)
        self.assertIn('the destination host_b has a slow memory tier',
                      self.stdlog.logger.output)

    def test_resize_to_inconsistent_flavor_rolls_back(self):
        self.start_loki_compute('tiered1', slow=(2,))
        self.start_loki_compute('tiered2', slow=(3,))
        good = self.tiered_flavor(4096, 'static', dram_percent=25)
        server = self._create_server(flavor_id=good, networks='none')
        host = server['OS-EXT-SRV-ATTR:host']
        defined_before = len(self.defined)
        bad = self._create_flavor(memory_mb=4096, extra_spec={
            specs.POLICY: 'on_demand', specs.DRAM_MB: '2048',
            specs.DRAM_MAX_MB: '1024'})
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': bad}})
        self._wait_for_migration_status(server, ['error', 'failed'])
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(4096, server['flavor']['ram'])
        self.assertEqual('25', server['flavor']['extra_specs'][
            specs.DRAM_PERCENT])
        # The guest was never stopped or redefined anywhere.
        self.assertEqual(defined_before, len(self.defined))
        dom = self.computes[host].driver._host.get_connection() \
            .lookupByUUIDString(server['id'])
        self.assertTrue(dom.isActive())
        # The fault is written by the source compute's handler, which may
        # finish after the instance is back to ACTIVE: wait for it.
        deadline = time.monotonic() + 30
        while True:
            faults = objects.InstanceFaultList.get_by_instance_uuids(
                nova_context.get_admin_context(), [server['id']])
            if faults or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(faults, 'no instance fault within 30 s')
        self.assertIn('loki:dram_max_mb must be an integer from the floor',
                      faults[0].message)

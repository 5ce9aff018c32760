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

"""A resize to an inconsistent tiered flavor is refused before the guest
stops: the server stays ACTIVE on its host with its old flavor and XML,
and the instance fault names the spec."""

import time

from nova import context as nova_context
from nova import objects

from loki_nova.virt import specs
from tests.nova import base


class TestResizeChecks(base.LokiTestBase):

    # Casts stay casts, as between real services: the failure is handled
    # on the source compute, not thrown back into the API request.
    CAST_AS_CALL = False

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

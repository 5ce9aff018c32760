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

"""Spawning tiered and untiered guests with LokiDriver in the harness."""

from tests.nova import base


class TestSpawn(base.LokiTestBase):

    def test_static_guest_xml_and_placement(self):
        self.start_loki_compute('tiered1', slow=(2,))
        flavor = self.tiered_flavor(4096, 'static', dram_percent=25)
        server = self._create_server(flavor_id=flavor, networks='none')
        server = self._wait_for_state_change(server, 'ACTIVE')
        root = self.last_xml('tiered1')
        self.assertEqual(('restrictive', '0-2', {}), base.numatune(root))
        self.assertEqual(('memfd', 'shared'), base.memory_backing(root))
        policy = base.loki_metadata(root)
        self.assertEqual(('static', 1024), (policy.policy, policy.floor_mb))
        usage = self.usages('tiered1')
        self.assertEqual(1024, usage['MEMORY_MB'])
        self.assertEqual(3072, usage['CUSTOM_LOKI_SLOW_MEMORY_MB'])

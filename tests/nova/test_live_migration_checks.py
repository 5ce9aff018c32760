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

"""A tiered guest is not live-migrated to a host without a slow tier: the
pre-checks refuse it and the guest stays where it is, untouched."""

from loki_nova.virt import driver as loki_driver
from tests.nova import base


class TestLiveMigrationChecks(base.LokiTestBase):

    # As between real services: the pre-check failure ends the migration
    # in the conductor instead of coming back through the API request.
    CAST_AS_CALL = False

    def test_tiered_guest_refused_by_untiered_destination(self):
        self.start_loki_compute('host_a', slow=(2,))
        self.start_loki_compute('host_c', slow=())
        # Without the trait the scheduler would accept host_c; the driver's
        # pre-check is what stops it.
        flavor = self.tiered_flavor(2048, 'static', split=False,
                                    dram_percent=50)
        server = self._create_server(flavor_id=flavor, networks='none',
                                     host='host_a')
        defined = len(self.defined)
        server = self._live_migrate(server, 'error', host='host_c')
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(defined, len(self.defined))
        conn = self.computes['host_a'].driver._host.get_connection()
        self.assertTrue(conn.lookupByUUIDString(server['id']).isActive())
        self.assertIn('the destination did not report a slow memory tier',
                      self.stdlog.logger.output)
        self.assertNotIn(loki_driver.MIGRATION_NODES_KEY,
                         self.instance(server).system_metadata)

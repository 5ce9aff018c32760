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

"""LokiDriver.spawn asks the host's tiering agent for DRAM before the
guest starts.  The agent here is the real agent loop and RPC server in
threads of the test process (see tests/agentbus.py for its stand-ins),
on the same in-memory oslo.messaging bus as Nova's services."""

import pathlib

import fixtures
from nova import conf

from loki_nova.memtier import rpc
from tests import agentbus
from tests.nova import base

CONF = conf.CONF


class TestReserveDram(base.LokiTestBase):

    def setUp(self):
        super().setUp()
        self.flags(reserve_dram_timeout=30, group='loki')

    def _start_agent(self, host, **memtier):
        tmp = pathlib.Path(self.useFixture(fixtures.TempDir()).path)
        (tmp / 'guests').mkdir()
        running = agentbus.Running(agentbus.make_conf(
            tmp, host=host, **memtier), fixture_kfs=True)
        calls = []
        real = running.agent.reserve_dram
        defined = self.defined

        def reserve_dram(instance_uuid, mb, timeout):
            # What libvirt had been given when the call arrived.
            calls.append((instance_uuid, mb, timeout,
                          [h for h, _ in defined if h == host]))
            return real(instance_uuid, mb, timeout)

        running.agent.reserve_dram = reserve_dram
        running.__enter__()
        self.addCleanup(running.__exit__, None, None, None)
        return running, calls

    def _boot(self, flavor):
        return self._create_server(flavor_id=flavor, networks='none',
                                   expected_state='ACTIVE')

    def test_spawn_reserves_the_floor_before_the_guest_is_defined(self):
        self.start_loki_compute('tiered1', slow=(2,))
        running, calls = self._start_agent('tiered1')
        server = self._boot(self.tiered_flavor(4096, 'on_demand',
                                               dram_mb=1024,
                                               dram_max_mb=2048))
        self.assertEqual([(server['id'], 1024, 30, [])], calls)
        # The guest never shows up in this agent's watchers, so the
        # reservation is still held for it.
        self.assertEqual(1024, running.agent.reservations[server['id']].mb)
        log = self.stdlog.logger.output
        self.assertIn('the tiering agent made room for 1024 MiB of DRAM',
                      log)
        self.assertEqual(1, len([h for h, _ in self.defined
                                 if h == 'tiered1']))

    def test_untiered_guests_and_a_zero_timeout_make_no_call(self):
        self.start_loki_compute('tiered1', slow=(2,))
        running, calls = self._start_agent('tiered1')
        self._boot(self.api.post_flavor(
            {'flavor': {'name': 'plain', 'ram': 1024, 'vcpus': 1,
                        'disk': 0}})['id'])
        self.flags(reserve_dram_timeout=0, group='loki')
        self._boot(self.tiered_flavor(2048, 'static', dram_percent=50))
        self.assertEqual([], calls)
        self.assertEqual(2, len([h for h, _ in self.defined
                                 if h == 'tiered1']))

    def test_an_unreachable_agent_delays_but_does_not_stop_the_spawn(self):
        self.flags(reserve_dram_timeout=1, group='loki')
        self.start_loki_compute('tiered1', slow=(2,))
        # An agent serving another host does not answer for tiered1.
        running, calls = self._start_agent('tiered9')
        server = self._create_server(
            flavor_id=self.tiered_flavor(4096, 'static', dram_percent=25),
            networks='none', expected_state='BUILD')
        # The spawn waits for the 1 s timeout plus the reply margin.
        server = self._wait_for_state_change(server, 'ACTIVE',
                                             max_retries=60)
        self.assertEqual([], calls)
        log = self.stdlog.logger.output
        self.assertIn('no answer from the tiering agent on tiered1 to '
                      'reserve_dram(1024 MiB) (MessagingTimeout', log)
        self.assertIn('starting the guest anyway', log)
        self.assertEqual('ACTIVE', server['status'])

    def test_an_agent_without_room_is_logged_and_the_spawn_goes_on(self):
        self.start_loki_compute('tiered1', slow=(2,))
        # The agent's fast tier has 1024 MiB; its host reserve takes 1000.
        running, calls = self._start_agent('tiered1', dram_reserve_mb=1000)
        server = self._boot(self.tiered_flavor(4096, 'static',
                                               dram_percent=25))
        self.assertEqual(1, len(calls))
        log = self.stdlog.logger.output
        self.assertIn('the tiering agent on tiered1 answered %s to '
                      'reserve_dram(1024 MiB)' % rpc.INSUFFICIENT, log)
        self.assertIn('nothing was reserved', log)
        self.assertEqual({}, running.agent.reservations)
        self.assertEqual('ACTIVE', server['status'])

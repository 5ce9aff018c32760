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
from nova.tests.fixtures import libvirt as fakelibvirt

from loki_nova.memtier import rpc
from tests import agentbus
from tests.nova import base

CONF = conf.CONF


class AgentTestBase(base.LokiTestBase):
    """Computes that wait for the host's tiering agent, and agents."""

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

    def _boot(self, flavor, state='ACTIVE'):
        return self._create_server(flavor_id=flavor, networks='none',
                                   expected_state=state)


class TestReserveDram(AgentTestBase):

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


class TestReleaseDram(AgentTestBase):
    """A spawn that fails after its DRAM was reserved gives it back, so
    that it does not count against the host's guests until it expires."""

    def _fail_first_define(self, hosts=None):
        """Make libvirt refuse the first guest defined on any of ``hosts``
        (all hosts when None), as a real libvirt refuses a domain it
        cannot start; returns the list the failing host is put in."""
        failed = []
        real_define = fakelibvirt.Connection.defineXML

        def define_xml(conn, xml):
            if not failed and (hosts is None or conn.hostname in hosts):
                failed.append(conn.hostname)
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError,
                    'internal error: injected define failure',
                    error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
            return real_define(conn, xml)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Connection.defineXML', define_xml))
        return failed

    @staticmethod
    def _record_releases(running, fail=False):
        released = []
        real = running.agent.release_dram

        def release_dram(instance_uuid):
            released.append(instance_uuid)
            if fail:
                raise RuntimeError('injected release failure')
            return real(instance_uuid)

        running.agent.release_dram = release_dram
        return released

    def test_a_rescheduled_spawn_releases_its_reservation(self):
        self.start_loki_compute('tiered1', slow=(2,))
        self.start_loki_compute('tiered2', slow=(3,))
        agents = {host: self._start_agent(host)
                  for host in ('tiered1', 'tiered2')}
        releases = {host: self._record_releases(running)
                    for host, (running, _calls) in agents.items()}
        failed = self._fail_first_define()
        server = self._boot(self.tiered_flavor(4096, 'static',
                                               dram_percent=25))
        # The first host reserved, failed to define the guest and released;
        # the build went on to the other host, which holds the floor.
        first, = failed
        second, = set(agents) - {first}
        self.assertEqual(second, server['OS-EXT-SRV-ATTR:host'])
        for host in (first, second):
            self.assertEqual([server['id']],
                             [c[0] for c in agents[host][1]], host)
        self.assertEqual([server['id']], releases[first])
        self.assertEqual([], releases[second])
        self.assertNotIn(server['id'], agents[first][0].agent.reservations)
        self.assertEqual(
            1024, agents[second][0].agent.reservations[server['id']].mb)
        self.assertIn('the tiering agent on %s answered %s to release_dram'
                      % (first, rpc.RELEASED), self.stdlog.logger.output)

    def test_a_failed_release_does_not_hide_the_spawn_error(self):
        self.start_loki_compute('tiered1', slow=(2,))
        running, calls = self._start_agent('tiered1')
        released = self._record_releases(running, fail=True)
        self._fail_first_define()
        server = self._boot(self.tiered_flavor(4096, 'static',
                                               dram_percent=25), 'ERROR')
        self.assertEqual([server['id']], [c[0] for c in calls])
        self.assertEqual([server['id']], released)
        log = self.stdlog.logger.output
        self.assertIn('the DRAM reserved for the guest could not be released '
                      'on tiered1 (RuntimeError: injected release failure)',
                      log)
        # What Nova got from the spawn is libvirt's error, not the
        # release's: it rescheduled the build for it (there was no other
        # host, so the build failed).
        self.assertIn('was re-scheduled: internal error: injected define '
                      'failure', log)
        self.assertNotIn('re-scheduled: injected release failure', log)
        self.assertIn('Exhausted all hosts', server['fault']['message'])

    def test_no_release_when_nothing_was_reserved(self):
        self.start_loki_compute('tiered1', slow=(2,))
        # The agent's fast tier has 1024 MiB; its host reserve takes 1000.
        running, calls = self._start_agent('tiered1', dram_reserve_mb=1000)
        released = self._record_releases(running)
        self._fail_first_define()
        self._boot(self.tiered_flavor(4096, 'static', dram_percent=25),
                   'ERROR')
        self.assertEqual(1, len(calls))
        self.assertEqual([], released)

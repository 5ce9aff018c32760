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

"""The agent's loop while libvirtd is stopped and started again.

Real here: libvirtd (stopped and restarted by pid, only when this test
process started it), a QEMU (TCG) guest defined as the rig's tiered guests
are (two guest NUMA cells, memfd RAM, loki metadata, the rig's kernel), a
workload process registered for the process watcher, both watchers as the
configuration builds them, /proc, and move_pages(2).  The agent needs the
guest's QEMU process and RAM mappings, not its kernel, so the test does
not wait for the guest to finish booting (that alone takes 8-40 s here).

Stand-ins, as in tests/unit/test_agent.py: this machine has one NUMA node,
so the memory topology is the fixture tree tests/fixtures/kernfs/two_tier
(a fast and a slow tier) and the real mover runs in query-only mode (it
asks where pages are and moves nothing); its kernel has no usable access
tracker, so the replay tracker supplies the access samples.

The agent is driven one ``run_interval()`` at a time; the only waits are
the rig's bounded waits for libvirtd to be gone and to accept connections
again.
"""

import contextlib
import logging
import os

import libvirt
import numpy as np
from oslo_config import cfg
import pytest

from loki_nova.conf import memtier as memtier_conf
from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier import topology
from loki_nova.memtier.trackers import replay
from tests import libvirt_rig as rig
from tests import workloads

pytestmark = pytest.mark.libvirt

# The rig's fixtures, bound here so pytest finds them.
libvirt_daemons = rig.libvirt_daemons
rig_dir = rig.rig_dir
tiny_guest_image = rig.tiny_guest_image

AGENT_LOG = agent_mod.__name__
TWO_TIER = os.path.join(os.path.dirname(__file__), '..', 'fixtures',
                        'kernfs', 'two_tier')
POLICY = guest.Policy('on_demand', 64, 160)
CELLS_MIB = (128, 64)
PROC_KEY = 'proc1'
PROC_FLOOR_MB = 8
OUTAGE_INTERVALS = 4


@pytest.fixture
def tiered_domain(libvirt_daemons, rig_dir, tiny_guest_image):
    """A started tiered domain (``rig.TinyGuest``) on its own connection;
    removed at the end over a fresh one (the first dies with libvirtd)."""
    if rig.libvirtd_started_here() is None:
        pytest.skip('libvirtd was already running when the tests started; '
                    'only a libvirtd started by this test process may be '
                    'stopped')
    conns = [libvirt.open(rig.URI)]
    rig.remove_stale_domains(conns[0])
    guests = rig.TinyGuests(conns[0], rig_dir, tiny_guest_image)
    try:
        yield guests.create(numa_cells_mib=CELLS_MIB, loki=POLICY)
    finally:
        conns.append(libvirt.open(rig.URI))
        guests.reattach(conns[-1])
        guests.cleanup()
        for conn in conns:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()


def make_agent(tmp_path):
    path = tmp_path / 'memtier.conf'
    path.write_text('[memtier]\n'
                    'watchers = process, libvirt\n'
                    'libvirt_uri = %s\n'
                    'registration_dir = %s\n'
                    'state_dir = %s\n'
                    'dram_reserve_mb = 0\ndram_free_min_mb = 0\n'
                    'interval = 1.0\n' % (rig.URI, tmp_path / 'guests',
                                          tmp_path / 'state'))
    conf = cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    conf(['--config-file', str(path)], project='loki-nova')

    def hot_first_quarter(g, layout, n):
        out = np.zeros(len(layout), np.uint8)
        out[:len(layout) // 4] = 20
        return out

    return agent_mod.Agent(
        conf.memtier,
        topology=topology.discover(kernfs.KernelFS(TWO_TIER)),
        tracker=replay.ReplayTracker(hot_first_quarter),
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))


def proc_start_time(pid):
    with open('/proc/%d/stat' % pid) as f:
        return int(f.read().rsplit(')', 1)[1].split()[19])


class Recorder:
    """Runs intervals; keeps what each one logged and which identities
    ``guest.verify`` checked in it."""

    def __init__(self, agent, caplog, monkeypatch):
        self.agent = agent
        self.caplog = caplog
        self.verified = []
        real = guest.verify

        def verify(kfs, g):
            self.verified.append((g.key, g.identity))
            return real(kfs, g)
        monkeypatch.setattr(guest, 'verify', verify)

    def run(self, uuid):
        """One interval; asserts that both guests were tiered in it.
        Returns the report, the agent's log lines and the identities
        verified."""
        self.caplog.clear()
        self.verified = []
        report = self.agent.run_interval()
        for key, floor in ((PROC_KEY, PROC_FLOOR_MB),
                           (uuid, POLICY.floor_mb)):
            st = report.guests.get(key)
            assert st is not None, (key, report)
            assert st.error is None and st.tiered, st
            assert st.budget_mb >= floor, st
        lines = [(r.levelno, r.getMessage()) for r in self.caplog.records
                 if r.name == AGENT_LOG]
        return report, lines, list(self.verified)


def test_agent_keeps_both_watchers_guests_across_a_libvirtd_restart(
        tmp_path, tiered_domain, caplog, monkeypatch):
    dom = tiered_domain
    caplog.set_level(logging.INFO)
    with workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                            '--register-dir', tmp_path / 'guests',
                            '--name', PROC_KEY,
                            '--floor-mb', PROC_FLOOR_MB) as work:
        qemu_pid = dom.pid()
        domain_id = dom.dom.ID()
        identity = guest.Identity(qemu_pid, proc_start_time(qemu_pid),
                                  dom.uuid)
        agent = make_agent(tmp_path)
        rec = Recorder(agent, caplog, monkeypatch)

        # Before: both watchers' guests are managed.
        _, lines, _ = rec.run(dom.uuid)
        assert any('managing guest %s (libvirt, ' % dom.uuid in m
                   for _, m in lines), lines
        assert any('managing guest %s (process, ' % PROC_KEY in m
                   for _, m in lines), lines
        managed = agent.guests[dom.uuid]
        planner = managed.planner
        assert managed.guest.identity == identity
        assert agent.guests[PROC_KEY].guest.identity.pid == work.pid
        rec.run(dom.uuid)
        intervals = 2

        with rig.libvirtd_stopped() as libvirtd_pid:
            # libvirtd's process is gone and qemu:///system refuses
            # connections (the rig waited for both); QEMU is not its
            # child (it is reparented when started) and keeps running.
            assert not rig.can_connect()
            assert rig.daemon_pid('libvirtd', '/run/libvirtd.pid') is None
            assert os.path.exists('/proc/%d' % qemu_pid)
            assert proc_start_time(qemu_pid) == identity.start_time

            warned = []
            for n in range(OUTAGE_INTERVALS):
                report, lines, verified = rec.run(dom.uuid)
                intervals += 1
                # (a) still tiered, and still the process checked each
                # interval: pid, start time and -uuid on its command line.
                assert agent.guests[dom.uuid] is managed
                assert (dom.uuid, identity) in verified
                assert report.guests[dom.uuid].source == 'libvirt'
                assert report.guests[PROC_KEY].source == 'process'
                assert not [m for _, m in lines
                            if 'dropped' in m or 'managing guest' in m]
                warned += [(n, m) for lvl, m in lines
                           if lvl >= logging.WARNING]

        # (b) The outage is logged with its reason, not every interval:
        # at most once per distinct reason, all within the first two
        # intervals.  (Seen here: the watcher's old connection fails in
        # the first scan -- "lost libvirtd ... during a scan: Cannot
        # write data: Broken pipe" -- and the next scan cannot connect, a
        # second reason, so two warnings.)
        prefix = 'LibvirtWatcher unavailable, keeping its 1 known guest(s): '
        assert all(m.startswith(prefix) for _, m in warned), warned
        reasons = [m[len(prefix):] for _, m in warned]
        assert reasons and len(reasons) == len(set(reasons)), warned
        assert all(n < 2 for n, _ in warned), warned
        for reason in reasons:
            if reason.startswith('cannot connect'):
                assert reason.startswith('cannot connect to libvirtd at '
                                         '%s: ' % rig.URI), reason
                assert 'libvirt-sock' in reason, reason
            else:
                assert reason.startswith('lost libvirtd at %s during a '
                                         'scan: ' % rig.URI), reason

        # libvirtd is back (the rig waited until it accepts connections).
        assert rig.libvirtd_started_here() not in (None, libvirtd_pid)
        _, lines, verified = rec.run(dom.uuid)
        intervals += 1
        assert (logging.INFO, 'LibvirtWatcher is back') in lines, lines
        assert not [m for lvl, m in lines if lvl >= logging.WARNING], lines

        # (c) The same QEMU process and domain, managed as the same guest:
        # not dropped and added again (its planner, and the tracker's
        # per-guest interval count, went on).
        assert dom.pid() == qemu_pid
        assert proc_start_time(qemu_pid) == identity.start_time
        conn = libvirt.open(rig.URI)
        try:
            again = conn.lookupByUUIDString(dom.uuid)
            assert again.isActive() and again.ID() == domain_id
        finally:
            conn.close()
        assert agent.guests[dom.uuid] is managed
        assert managed.planner is planner
        assert managed.guest.identity == identity
        assert (dom.uuid, identity) in verified
        assert not [m for _, m in lines
                    if 'dropped' in m or 'managing guest' in m], lines
        assert agent.tracker.count == {dom.uuid: intervals,
                                       PROC_KEY: intervals}

        _, lines, _ = rec.run(dom.uuid)
        assert not [m for _, m in lines
                    if 'LibvirtWatcher' in m or 'dropped' in m], lines

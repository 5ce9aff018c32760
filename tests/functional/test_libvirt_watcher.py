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

"""The libvirt watcher against a real libvirtd and real QEMU (TCG) guests.

One guest boots (two guest NUMA cells, so two RAM backends); the others
idle in the BIOS, which is all a running QEMU process needs.  The tests
share them and run in file order: the last one destroys the booted guest.
"""

import collections
import ctypes
import errno
import logging
import os
import re
import subprocess
import types

import pytest

from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier.watcher import WatcherUnavailable
from loki_nova.memtier.watcher import libvirt as lvwatcher
from tests import libvirt_rig as rig

pytestmark = pytest.mark.libvirt

# The rig's fixtures, bound here so pytest finds them.
libvirt_daemons = rig.libvirt_daemons
libvirt_conn = rig.libvirt_conn
rig_dir = rig.rig_dir
tiny_guest_image = rig.tiny_guest_image

LOGGER = lvwatcher.__name__
MiB = 1 << 20
ON_DEMAND = guest.Policy('on_demand', 64, 160)
STATIC = guest.Policy('static', 16)
CELLS_MIB = (128, 64)
HOT_PAGES = 16 * MiB // 4096       # the rig's /init rewrites 16 MiB
BAD_METADATA = ('<loki:memtier xmlns:loki="http://loki-nova.org/xmlns/'
                'memtier/1.0"><loki:policy>turbo</loki:policy>'
                '<loki:dram_floor_mb>1</loki:dram_floor_mb></loki:memtier>')


@pytest.fixture(scope='module')
def domains(libvirt_conn, rig_dir, tiny_guest_image):
    guests = rig.TinyGuests(libvirt_conn, rig_dir, tiny_guest_image)
    try:
        tiered = guests.create(numa_cells_mib=CELLS_MIB, loki=ON_DEMAND)
        ns = types.SimpleNamespace(
            tiered=tiered,
            # No guest NUMA: one backend (pc.ram).
            flat=guests.create(boot=False, memory_mib=48, loki=STATIC),
            plain=guests.create(boot=False, memory_mib=32),
            malformed=guests.create(boot=False, memory_mib=32,
                                    loki=BAD_METADATA),
            anonymous=guests.create(boot=False, memory_mib=32, memfd=False,
                                    loki=STATIC),
            stopped=guests.create(boot=False, start=False, memory_mib=32,
                                  loki=STATIC))
        tiered.wait_booted()
        yield ns
    finally:
        guests.cleanup()


def ours(found, domains):
    uuids = {g.uuid for g in vars(domains).values()}
    return {k: v for k, v in found.items() if k in uuids}


def proc_start_time(pid):
    with open('/proc/%d/stat' % pid) as f:
        return int(f.read().rsplit(')', 1)[1].split()[19])


def memfd_ranges(pid):
    """The memfd RAM lines of /proc/PID/maps, read here independently."""
    out = []
    with open('/proc/%d/maps' % pid) as f:
        for line in f:
            if line.rstrip('\n').endswith(
                    ' /memfd:memory-backend-memfd (deleted)'):
                lo, hi = line.split()[0].split('-')
                out.append(guest.RamRange(int(lo, 16), int(hi, 16)))
    return sorted(out, key=lambda r: r.start)


def warnings_about(caplog, name):
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno >= logging.WARNING
            and name in r.getMessage()]


def test_scan_finds_exactly_the_tiered_running_domains(domains):
    found = ours(lvwatcher.LibvirtWatcher(rig.URI).scan(), domains)
    assert set(found) == {domains.tiered.uuid, domains.flat.uuid}

    for dom, policy, nranges in ((domains.tiered, ON_DEMAND, 2),
                                 (domains.flat, STATIC, 1)):
        g = found[dom.uuid]
        pid = dom.pid()          # /run/libvirt/qemu/NAME.pid
        assert g.key == dom.uuid
        assert g.source == 'libvirt'
        assert g.identity == guest.Identity(pid, proc_start_time(pid),
                                            dom.uuid)
        assert g.policy == policy
        assert g.ranges == tuple(memfd_ranges(pid))
        assert len(g.ranges) == nranges
        assert g.ram_bytes == dom.memory_bytes
    assert found[domains.tiered.uuid].ram_bytes == sum(CELLS_MIB) * MiB
    assert sorted(r.size for r in found[domains.tiered.uuid].ranges) == \
        sorted(c * MiB for c in CELLS_MIB)


def test_unmanageable_domains_are_logged_by_name_once(domains, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    watcher = lvwatcher.LibvirtWatcher(rig.URI)
    found = ours(watcher.scan(), domains)
    assert set(found) == {domains.tiered.uuid, domains.flat.uuid}

    [bad] = warnings_about(caplog, domains.malformed.name)
    assert domains.malformed.uuid in bad
    assert "<loki:policy> must be one of static, on_demand, got 'turbo'" \
        in bad
    [anon] = warnings_about(caplog, domains.anonymous.name)
    assert ("no guest RAM mapping '/memfd:memory-backend-memfd' in /proc/%d/"
            "maps" % domains.anonymous.pid()) in anon
    assert "<source type='memfd'/>" in anon
    # No metadata or not running: ignored without a warning.
    assert not warnings_about(caplog, domains.plain.name)
    assert not warnings_about(caplog, domains.stopped.name)
    assert any(domains.plain.name in r.getMessage()
               and 'no loki metadata' in r.getMessage()
               for r in caplog.records)

    caplog.clear()
    assert set(ours(watcher.scan(), domains)) == set(found)
    assert not warnings_about(caplog, domains.malformed.name)
    assert not warnings_about(caplog, domains.anonymous.name)


def test_missing_wrong_or_dead_pid_skips_the_domain(domains, tmp_path,
                                                    caplog):
    # A root whose /proc is the real one but whose pid files are ours.
    os.symlink('/proc', tmp_path / 'proc')
    pid_dir = tmp_path / 'run' / 'libvirt' / 'qemu'
    pid_dir.mkdir(parents=True)
    # flat: no pid file.  tiered: the pid of this test (not its QEMU).
    (pid_dir / (domains.tiered.name + '.pid')).write_text('%d' % os.getpid())
    exited = subprocess.Popen(['true'])
    exited.wait()
    (pid_dir / (domains.anonymous.name + '.pid')).write_text(
        '%d' % exited.pid)

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    watcher = lvwatcher.LibvirtWatcher(rig.URI, kernfs.KernelFS(tmp_path))
    assert ours(watcher.scan(), domains) == {}

    [flat] = warnings_about(caplog, domains.flat.name)
    assert 'no QEMU pid: cannot read %s/run/libvirt/qemu/%s.pid' % (
        tmp_path, domains.flat.name) in flat
    [tiered] = warnings_about(caplog, domains.tiered.name)
    assert 'process %d from %s' % (
        os.getpid(), pid_dir / (domains.tiered.name + '.pid')) in tiered
    assert 'is not domain %s' % domains.tiered.uuid in tiered
    [anon] = warnings_about(caplog, domains.anonymous.name)
    assert 'QEMU process %d (from %s) does not exist' % (
        exited.pid, pid_dir / (domains.anonymous.name + '.pid')) in anon


def test_partly_memfd_backed_ram_is_not_guessed(domains, tmp_path, caplog):
    """If the memfd mappings do not add up to the domain's memory, the
    domain is skipped rather than managed with part of its RAM."""
    tiered = domains.tiered
    pid = tiered.pid()
    proc = tmp_path / 'proc' / str(pid)
    proc.mkdir(parents=True)
    for name in ('stat', 'cmdline'):
        os.symlink('/proc/%d/%s' % (pid, name), proc / name)
    with open('/proc/%d/maps' % pid) as f:
        lines = f.readlines()
    ram = [i for i, line in enumerate(lines)
           if 'memory-backend-memfd' in line]
    assert len(ram) == 2
    del lines[ram[1]]
    (proc / 'maps').write_text(''.join(lines))
    pid_dir = tmp_path / 'run' / 'libvirt' / 'qemu'
    pid_dir.mkdir(parents=True)
    os.symlink(tiered.pid_file, pid_dir / (tiered.name + '.pid'))

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    watcher = lvwatcher.LibvirtWatcher(rig.URI, kernfs.KernelFS(tmp_path))
    assert tiered.uuid not in watcher.scan()
    [skip] = warnings_about(caplog, tiered.name)
    assert ('its 1 RAM mapping(s) \'/memfd:memory-backend-memfd\' in '
            '/proc/%d/maps hold %d bytes, the domain has %d'
            % (pid, _size(lines[ram[0]]), sum(CELLS_MIB) * MiB)) in skip


def _size(maps_line):
    lo, hi = maps_line.split()[0].split('-')
    return int(hi, 16) - int(lo, 16)


def test_move_pages_query_on_guest_ram(domains):
    """move_pages(2) with nodes=NULL reports the node of every page of the
    memfd backends: 0 (this host's only node) for pages the guest touched,
    -ENOENT for pages never touched.  Nothing is moved."""
    g = ours(lvwatcher.LibvirtWatcher(rig.URI).scan(),
             domains)[domains.tiered.uuid]
    libc = ctypes.CDLL(None, use_errno=True)
    counts = collections.Counter()
    for r in g.ranges:
        n = r.size // 4096
        pages = (ctypes.c_void_p * n)(*range(r.start, r.end, 4096))
        status = (ctypes.c_int * n)()
        rc = libc.syscall(279, g.identity.pid, ctypes.c_ulong(n), pages,
                          None, status, 0)
        assert rc == 0, os.strerror(ctypes.get_errno())
        counts.update(status)
    assert set(counts) <= {0, -errno.ENOENT}, counts
    assert counts[0] >= HOT_PAGES, counts


def test_destroyed_guest_is_gone_and_not_listed(domains):
    tiered = domains.tiered
    watcher = lvwatcher.LibvirtWatcher(rig.URI)
    g = watcher.scan()[tiered.uuid]
    kfs = kernfs.KernelFS()
    guest.verify(kfs, g)

    tiered.destroy()
    with pytest.raises(guest.GuestGone, match='process %d exited'
                       % g.identity.pid):
        guest.verify(kfs, g)
    assert tiered.uuid not in watcher.scan()

    tiered.undefine()
    found = watcher.scan()
    assert tiered.uuid not in found
    assert domains.flat.uuid in found


def test_watcher_reconnects_after_losing_libvirtd(domains):
    watcher = lvwatcher.LibvirtWatcher(rig.URI)
    assert domains.flat.uuid in watcher.scan()
    watcher._conn.close()        # as if libvirtd had gone away
    assert domains.flat.uuid in watcher.scan()


def test_unreachable_libvirtd_raises_watcher_unavailable():
    uri = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'
    watcher = lvwatcher.LibvirtWatcher(uri)
    with pytest.raises(WatcherUnavailable,
                       match='cannot connect to libvirtd at %s: .*'
                       '/nonexistent/libvirt-sock' % re.escape(uri)):
        watcher.scan()
    with pytest.raises(WatcherUnavailable):
        watcher.scan()

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

"""``loki-memtier record`` on a directory tree standing in for /proc and
DAMON's sysfs (the real kernel: tests/sandbox/test_record.py)."""

import numpy as np
import pytest

from loki_nova.memtier import kernfs
from loki_nova.memtier import recorder
from loki_nova.memtier import trackers
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.trackers import damon
from loki_nova.memtier.trackers import pagemap

PID = 4242
MiB = 1 << 20
HEAP = 0x55d000000000
DATA = 0x7f0000000000
MAPS = '''\
55cfff000000-55cfff010000 r-xp 00000000 08:01 1234 /usr/bin/prog
55cfff010000-55cfff011000 rw-p 00010000 08:01 1234 /usr/bin/prog
55d000000000-55d000400000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000800000 rw-p 00000000 00:00 0
7f0000800000-7f0001000000 rw-s 00000000 00:01 77 /dev/zero (deleted)
7f0001000000-7f0001001000 ---p 00000000 00:00 0
7f0002000000-7f0002100000 r--p 00000000 08:01 99 /usr/lib/libc.so.6
7f0002100000-7f0002101000 rw-p 00100000 08:01 99 /usr/lib/libc.so.6
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
'''


def test_data_mappings_are_anonymous_heap_and_shared_memory():
    maps = kernfs._parse_maps(MAPS.splitlines())
    assert recorder.data_ranges(maps) == [
        (HEAP, HEAP + 4 * MiB), (DATA, DATA + 16 * MiB)]


def test_guest_ram_is_qemus_memfd():
    maps = kernfs._parse_maps([
        '7f0000000000-7f0040000000 rw-s 00000000 00:01 5 '
        '/memfd:memory-backend-memfd (deleted)',
        '7f0040000000-7f0040800000 rw-p 00000000 00:00 0'])
    try:
        assert recorder.guest_ram_ranges(maps) == [(DATA, DATA + 1024 * MiB)]
    except ImportError:
        pytest.skip('libvirt-python is not installed')


def stand_in(root, kdamonds=0):
    """The process and an idle DAMON, as files under ``root``."""
    proc = root / ('proc/%d' % PID)
    proc.mkdir(parents=True)
    (proc / 'stat').write_text('%d (prog) S' % PID + ' 0' * 18 + ' 1 0 0\n')
    (proc / 'maps').write_text(MAPS)
    (proc / 'cmdline').write_bytes(b'prog\0--serve\0')
    # Present: the first MiB of the heap and the first 2 MiB of the data.
    with open(proc / 'pagemap', 'wb') as f:
        for start, pages in ((HEAP, 256), (DATA, 512)):
            f.seek(start // 4096 * 8)
            f.write(np.full(pages, pagemap.PRESENT, np.uint64).tobytes())
    admin = root / damon.KDAMONDS
    admin.mkdir(parents=True)
    (admin / 'nr_kdamonds').write_text('%d\n' % kdamonds)
    k = admin / '0'
    ctx = k / 'contexts/0'
    for d in ('monitoring_attrs/intervals', 'monitoring_attrs/nr_regions',
              'targets/0', 'schemes/0/access_pattern/sz',
              'schemes/0/access_pattern/nr_accesses',
              'schemes/0/access_pattern/age',
              'schemes/0/tried_regions'):
        (ctx / d).mkdir(parents=True)
    (ctx / 'avail_operations').write_text('vaddr fvaddr paddr\n')
    (k / 'pid').write_text('900\n')
    (k / 'state').write_text('off\n')
    if kdamonds:
        (k / 'state').write_text('on\n')
    return ctx / 'schemes/0/tried_regions'


def put_regions(tried, rows):
    for old in tried.iterdir():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    for i, row in enumerate(rows):
        d = tried / str(i)
        d.mkdir()
        for name, value in zip(('start', 'end', 'nr_accesses', 'age'), row):
            (d / name).write_text('%d\n' % value)


class FakeTime:
    """A clock that moves only when slept on; each sleep lets the stand-in
    kernel publish the next regions."""

    def __init__(self, tried, snapshots):
        self.now = 100.0
        self.tried = tried
        self.snapshots = list(snapshots)
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds
        put_regions(self.tried, self.snapshots.pop(0))


def test_record_keeps_every_snapshot_raw(tmp_path):
    tried = stand_in(tmp_path)
    snaps = [[(DATA, DATA + 2 * MiB, 20 - k, k),
              (DATA + 2 * MiB, DATA + 16 * MiB, k, 1)] for k in range(6)]
    fake = FakeTime(tried, snaps)
    kfs = kernfs.KernelFS(str(tmp_path))
    rec = recorder.record(PID, intervals=3, interval_s=2.0, snapshots=2,
                          kfs=kfs, clock=fake.clock, sleep=fake.sleep,
                          damon_options={'aggr_us': 200000}, note='test')
    # Evenly spaced, the last at each interval's end.
    assert fake.slept == [1.0] * 6
    assert rec.intervals == 3
    assert rec.snapshot_interval.tolist() == [0, 0, 1, 1, 2, 2]
    assert rec.snapshot_time.tolist() == [1, 2, 3, 4, 5, 6]
    for k in range(6):
        assert rec.snapshot(k).tolist() == [list(r) for r in snaps[k]]
    assert rec.ranges.tolist() == [[HEAP, HEAP + 4 * MiB],
                                   [DATA, DATA + 16 * MiB]]
    assert rec.present_start.tolist() == [[HEAP, HEAP + MiB],
                                          [DATA, DATA + 2 * MiB]]
    assert rec.present_end.tolist() == rec.present_start.tolist()
    assert rec.meta['aggr_us'] == 200000 and rec.meta['sample_us'] == 5000
    assert rec.meta['pid'] == PID and rec.meta['command'] == 'prog --serve'
    assert rec.meta['note'] == 'test' and rec.meta['mappings'] == 'data'
    assert rec.max_accesses == 40
    # DAMON was configured for this pid, asked for the regions, and left
    # with no kdamond.
    admin = tmp_path / damon.KDAMONDS
    assert (admin / '0/contexts/0/targets/0/pid_target').read_text() == \
        str(PID)
    assert (admin / '0/state').read_text() == 'update_schemes_tried_regions'
    assert (admin / 'nr_kdamonds').read_text() == '0'
    # What it recorded replays.
    path = str(tmp_path / 'rec.npz')
    recorder.write(path, rec)
    trace = tracefile.RecordedTrace(path)
    # The footprint: the heap's present chunk and all 8 data chunks (the
    # heap's second chunk was neither present nor accessed).
    assert trace.intervals == 3 and trace.chunks == 9


def test_explicit_ranges_are_recorded_as_given(tmp_path):
    tried = stand_in(tmp_path)
    fake = FakeTime(tried, [[(DATA, DATA + 4096, 1, 0)]] * 2)
    rec = recorder.record(PID, intervals=2, interval_s=1.0,
                          ranges=[(DATA, DATA + 4 * MiB)],
                          kfs=kernfs.KernelFS(str(tmp_path)),
                          clock=fake.clock, sleep=fake.sleep)
    assert rec.ranges.tolist() == [[DATA, DATA + 4 * MiB]]
    assert rec.meta['mappings'] == 'explicit'


def test_record_leaves_someone_elses_damon_alone(tmp_path):
    stand_in(tmp_path, kdamonds=1)
    sysfs = tmp_path / 'sys'
    before = {str(p): p.read_bytes() for p in sysfs.rglob('*')
              if p.is_file()}
    with pytest.raises(trackers.TrackerUnavailable, match='did not create'):
        recorder.record(PID, intervals=1, interval_s=1.0,
                        kfs=kernfs.KernelFS(str(tmp_path)),
                        clock=lambda: 0.0, sleep=lambda s: None)
    after = {str(p): p.read_bytes() for p in sysfs.rglob('*')
             if p.is_file()}
    assert after == before


def test_recording_stops_when_the_process_is_gone(tmp_path):
    tried = stand_in(tmp_path)
    kfs = kernfs.KernelFS(str(tmp_path))
    stat = tmp_path / ('proc/%d/stat' % PID)

    def sleep_then_recycle(seconds):
        fake.sleep(seconds)
        # The pid now names a process started later.
        stat.write_text('%d (other) S' % PID + ' 0' * 18 + ' 9 0 0\n')

    fake = FakeTime(tried, [[(DATA, DATA + 4096, 1, 0)]] * 4)
    rec = recorder.record(PID, intervals=4, interval_s=1.0, kfs=kfs,
                          clock=fake.clock, sleep=sleep_then_recycle)
    assert rec.intervals == 1


def test_a_target_that_exits_mid_interval_ends_the_recording(tmp_path):
    """The kdamond stops with its target, and asking it for regions then
    fails: the intervals recorded before are kept."""
    tried = stand_in(tmp_path)
    stat = tmp_path / ('proc/%d/stat' % PID)
    fake = FakeTime(tried, [[(DATA, DATA + 4096, 1, 0)]] * 4)

    def sleep(seconds):
        fake.sleep(seconds)
        if len(fake.slept) == 4:       # interval 1, second snapshot
            stat.write_text('%d (prog) Z' % PID + ' 0' * 18 + ' 1 0 0\n')
            for d in tried.iterdir():
                for f in d.iterdir():
                    f.unlink()
                d.rmdir()
            tried.rmdir()

    rec = recorder.record(PID, intervals=3, interval_s=1.0, snapshots=2,
                          kfs=kernfs.KernelFS(str(tmp_path)),
                          clock=fake.clock, sleep=sleep)
    assert rec.intervals == 1 and len(rec.snapshot_interval) == 2

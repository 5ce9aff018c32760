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

"""tests/guestload.c, the workload of the rig's test VMs, run here as a
plain process: the frames it reports are the ones the kernel shows in
its pagemap, and its verification finds a word changed behind its back
(written through /proc/PID/mem of this test's own child)."""

import os
import selectors
import shutil
import signal
import struct
import subprocess
import time

import pytest

from tests import libvirt_rig as rig

DATA_MB = 16
HOT_MB = 4
PAGE = 4096

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which('gcc'),
    reason='needs root (frame numbers in pagemap, mlock) and gcc')


class Lines:
    """A child's stdout, read line by line with a bounded wait."""

    def __init__(self, proc):
        self.proc = proc
        self.text = ''
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def until(self, predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate(self.text):
            left = deadline - time.monotonic()
            assert left > 0, 'not within %d s:\n%s' % (timeout, self.text)
            assert self.proc.poll() is None, self.text
            if self.sel.select(left):
                self.text += os.read(self.proc.stdout.fileno(),
                                     65536).decode()
        return self.text


def data_mapping(pid):
    """(start, end) of the child's one anonymous mapping of DATA_MB."""
    found = []
    with open('/proc/%d/maps' % pid) as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split('-'))
            if end - start == DATA_MB << 20 and len(fields) == 5:
                found.append((start, end))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def guestload(tmp_path):
    program = rig.build_guestload(str(tmp_path / 'guestload'))
    proc = subprocess.Popen([program, str(DATA_MB), str(HOT_MB), '1'],
                            stdout=subprocess.PIPE)
    yield proc, Lines(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()


def test_frames_are_the_pagemaps_and_a_changed_word_is_found(guestload):
    proc, lines = guestload
    text = lines.until(lambda t: 'verify 1:' in t)
    assert rig.filled_mb(text) == DATA_MB
    assert rig.verifications(text) == [(1, DATA_MB * 256, 0, True)]

    start, _ = data_mapping(proc.pid)
    with open('/proc/%d/pagemap' % proc.pid, 'rb') as f:
        f.seek(start // PAGE * 8)
        entries = struct.unpack('<%dQ' % (HOT_MB * 256),
                                f.read(HOT_MB * 256 * 8))
    assert all(e >> 63 for e in entries)    # present (and locked)
    expected = sorted(e & ((1 << 55) - 1) for e in entries)
    assert rig.hot_frames(text) == expected

    # One word of the last page, changed behind the workload's back.
    with open('/proc/%d/mem' % proc.pid, 'r+b', buffering=0) as mem:
        at = start + (DATA_MB << 20) - 8
        mem.seek(at)
        word = mem.read(8)
        mem.seek(at)
        mem.write(bytes(b ^ 0xff for b in word))
    done = len(rig.verifications(text))
    text = lines.until(lambda t: len(rig.verifications(t)) > done + 1)
    _, pages, bad, ok = rig.verifications(text)[-1]
    assert (pages, bad, ok) == (DATA_MB * 256, 1, False)

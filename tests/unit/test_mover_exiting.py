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

"""move_pages(2) on a process that is exiting.

Between the kernel's release of a dying process's memory and the moment
it becomes a zombie, move_pages fails with EINVAL while /proc/PID/stat
still shows a live state letter; only the PF_EXITING task flag says the
process is on its way out.  Seen in the sandbox (tests/sandbox/
test_agent_faults.py) when a guest was killed during a move: the agent
logged an error instead of dropping the guest.  The window is too short
to hit on purpose, so the syscall and /proc are stood in for here."""

import ctypes
import errno
import os

import numpy as np
import pytest

from loki_nova.memtier import kernfs
from loki_nova.memtier import mover

PID = 4242
PAGES = np.arange(4, dtype=np.uint64) * np.uint64(4096) + np.uint64(1 << 30)
# task->flags of a user process: PF_RANDOMIZE | PF_FORKNOEXEC | ...
LIVE_FLAGS = 0x400140


def stat_line(state, flags):
    """A /proc/PID/stat line; the command name has a space and a ')'."""
    rest = [state, '1', str(PID), str(PID), '0', '-1', str(flags)] + \
        ['0'] * 12 + ['81234'] + ['0'] * 30
    return '%d (qemu (x) y) %s' % (PID, ' '.join(rest))


@pytest.fixture
def einval(monkeypatch):
    """move_pages fails with EINVAL, as for a process with no memory."""
    def fake(nr, pid, n, pages, nodes, status, flags):
        ctypes.set_errno(errno.EINVAL)
        return -1
    monkeypatch.setattr(mover, '_libc', (fake, 279))


def proc_says(monkeypatch, line=None, error=None):
    def read_text(self, rel):
        assert rel == 'proc/%d/stat' % PID
        if error is not None:
            raise kernfs.KernelFSError(error, 'cannot read ' + rel)
        return line
    monkeypatch.setattr(kernfs.KernelFS, 'read_text', read_text)


@pytest.mark.parametrize('state,flags', [
    ('R', LIVE_FLAGS | mover.PF_EXITING),     # released its memory
    ('D', LIVE_FLAGS | mover.PF_EXITING),
    ('Z', LIVE_FLAGS | mover.PF_EXITING),     # a zombie
    ('X', LIVE_FLAGS),
])
def test_einval_from_a_process_on_its_way_out_means_it_is_gone(
        einval, monkeypatch, state, flags):
    proc_says(monkeypatch, stat_line(state, flags))
    for node in (1, None):        # a move and a query alike
        with pytest.raises(ProcessLookupError, match='is exiting'):
            mover.move_pages(PID, PAGES, node)


@pytest.mark.parametrize('error', [errno.ENOENT, errno.ESRCH])
def test_einval_from_a_reaped_process_means_it_is_gone(einval, monkeypatch,
                                                       error):
    proc_says(monkeypatch, error=error)
    with pytest.raises(ProcessLookupError):
        mover.move_pages(PID, PAGES, 1)


@pytest.mark.parametrize('state', ['R', 'S', 'D'])
def test_einval_from_a_live_process_is_an_error(einval, monkeypatch, state):
    proc_says(monkeypatch, stat_line(state, LIVE_FLAGS))
    with pytest.raises(mover.MoveError, match='Invalid argument'):
        mover.move_pages(PID, PAGES, 1)


def test_an_unreadable_stat_is_not_taken_for_an_exit(einval, monkeypatch):
    proc_says(monkeypatch, error=errno.EACCES)
    with pytest.raises(mover.MoveError, match='Invalid argument'):
        mover.move_pages(PID, PAGES, 1)


def test_the_stat_fields_are_read_where_the_kernel_puts_them():
    """Field 3 is the state and field 9 the flags: this process is alive
    and not exiting."""
    assert not mover._exiting(os.getpid())

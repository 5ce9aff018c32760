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

"""The one door to sysfs and procfs.

Every read and write of kernel files by the agent goes through a
``KernelFS`` rooted at a directory: ``/`` on a host, a directory tree in the
unit tests (``tests/fixtures/kernfs``), the sandbox kernel's own ``/`` in the
sandbox tests.  Paths are given relative to the root, e.g.
``'sys/devices/system/node/online'``.

Writes under ``sys/kernel/mm/damon`` are refused unless the ``KernelFS`` was
made with ``allow_damon_writes=True``: only the DAMON tracker asks for that,
and only after it has checked that no one else's kdamond exists.
"""

import dataclasses
import errno
import os

DAMON_DIR = 'sys/kernel/mm/damon'


class KernelFSError(OSError):
    """A kernel file could not be read or written; names the file."""


@dataclasses.dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str

    @property
    def size(self):
        return self.end - self.start


def parse_list(text):
    """Parse a kernel cpu/node list such as ``0-3,8,10-11`` into a sorted
    tuple of ints.  An empty string is the empty list."""
    out = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(','):
        part = part.strip()
        try:
            if '-' in part:
                lo, hi = part.split('-', 1)
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ValueError('%r is not a kernel cpu/node list (like '
                             '"0-3,8")' % text) from None
    return tuple(sorted(out))


def format_list(items):
    """The inverse of ``parse_list`` (without range compression)."""
    return ','.join(str(i) for i in sorted(items))


class KernelFS:
    """sysfs/procfs access below ``root``."""

    def __init__(self, root='/', allow_damon_writes=False):
        self.root = os.path.abspath(root)
        self.allow_damon_writes = allow_damon_writes

    def __repr__(self):
        return 'KernelFS(%r)' % self.root

    def path(self, rel):
        rel = rel.lstrip('/')
        return os.path.join(self.root, rel)

    def exists(self, rel):
        return os.path.exists(self.path(rel))

    def listdir(self, rel):
        try:
            return sorted(os.listdir(self.path(rel)))
        except OSError as exc:
            raise KernelFSError(exc.errno, 'cannot list %s: %s'
                                % (self.path(rel), exc.strerror)) from None

    def read_text(self, rel):
        try:
            with open(self.path(rel)) as f:
                return f.read().strip()
        except OSError as exc:
            raise KernelFSError(exc.errno, 'cannot read %s: %s'
                                % (self.path(rel), exc.strerror)) from None

    def read_int(self, rel):
        text = self.read_text(rel)
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            raise KernelFSError(errno.EINVAL, '%s holds %r, not an integer'
                                % (self.path(rel), text)) from None

    def _refuse_damon_write(self, rel):
        """Raise unless writing ``rel`` is allowed: anything that resolves
        into a DAMON directory (ours below root, or the machine's) needs
        ``allow_damon_writes``."""
        if self.allow_damon_writes:
            return
        real = os.path.realpath(self.path(rel))
        for damon in (os.path.realpath(self.path(DAMON_DIR)),
                      '/' + DAMON_DIR):
            if real == damon or real.startswith(damon + os.sep):
                raise PermissionError(
                    errno.EPERM, 'refusing to write %s: DAMON writes are '
                    'only allowed to the DAMON tracker on a DAMON it owns'
                    % self.path(rel))

    def write_text(self, rel, value):
        self._refuse_damon_write(rel)
        try:
            with open(self.path(rel), 'w') as f:
                f.write(str(value))
        except OSError as exc:
            raise KernelFSError(exc.errno, 'cannot write %r to %s: %s'
                                % (str(value), self.path(rel),
                                   exc.strerror)) from None

    def open(self, rel, mode='rb', buffering=-1):
        """Open a file for binary access (pagemap, page_idle/bitmap)."""
        if mode not in ('r', 'rb'):
            self._refuse_damon_write(rel)
        return open(self.path(rel), mode, buffering=buffering)

    # -- procfs ---------------------------------------------------------

    def process_stat(self, pid):
        """(state letter, start time in clock ticks since boot) of ``pid``
        from /proc/PID/stat (fields 3 and 22).  With the pid, the start
        time identifies one process for the life of the machine.  Raises
        ``ProcessLookupError`` if there is no such process."""
        try:
            text = self.read_text('proc/%d/stat' % pid)
        except KernelFSError as exc:
            if exc.errno in (errno.ENOENT, errno.ESRCH):
                raise ProcessLookupError(errno.ESRCH, 'no process %d' % pid)
            raise
        # The command name (field 2) may hold spaces and parentheses.
        fields = text[text.rindex(')') + 2:].split()
        return fields[0], int(fields[19])

    def process_start_time(self, pid):
        return self.process_stat(pid)[1]

    def process_cmdline(self, pid):
        """argv of ``pid`` as a list of strings."""
        try:
            with self.open('proc/%d/cmdline' % pid) as f:
                raw = f.read()
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, 'no process %d' % pid)
        return [a.decode('utf-8', errors='surrogateescape')
                for a in raw.split(b'\0')[:-1]]

    def process_maps(self, pid):
        """The mappings of ``pid`` (/proc/PID/maps) as ``Mapping`` s."""
        try:
            with open(self.path('proc/%d/maps' % pid)) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, 'no process %d' % pid)
        maps = []
        for line in lines:
            parts = line.split(None, 5)
            lo, hi = parts[0].split('-')
            maps.append(Mapping(int(lo, 16), int(hi, 16), parts[1],
                                int(parts[2], 16), int(parts[4]),
                                parts[5] if len(parts) > 5 else ''))
        return maps

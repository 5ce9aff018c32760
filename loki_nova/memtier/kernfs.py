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
and only after it has checked that no one else's kdamond exists.  With
``LOKI_NO_MACHINE_DAMON=1`` in the environment, writes into the machine's
own ``/sys/kernel/mm/damon`` are refused even then (DAMON below another
root stays writable), and so are writes into the machine's tracefs, where
the DAMON tracker would make a tracing instance for DAMON's events: the
test suite sets it wherever the machine's DAMON is not its own, that is
everywhere but the sandbox guest.
"""

import dataclasses
import errno
import os

DAMON_DIR = 'sys/kernel/mm/damon'
#: Where tracefs is mounted (DAMON's trace events are read there).
TRACEFS_DIRS = ('sys/kernel/tracing', 'sys/kernel/debug/tracing')
#: Environment variable that forbids writes into the machine's DAMON.
NO_MACHINE_DAMON_ENV = 'LOKI_NO_MACHINE_DAMON'


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

    def read_ints(self, rel):
        """The whitespace-separated integers of a file, e.g. a node's
        distance row."""
        text = self.read_text(rel)
        try:
            return [int(word) for word in text.split()]
        except ValueError:
            raise KernelFSError(errno.EINVAL, '%s holds %r, not integers '
                                'separated by spaces'
                                % (self.path(rel), text)) from None

    def read_list(self, rel):
        """A kernel cpu/node list file (see ``parse_list``)."""
        text = self.read_text(rel)
        try:
            return parse_list(text)
        except ValueError as exc:
            raise KernelFSError(errno.EINVAL, '%s: %s'
                                % (self.path(rel), exc)) from None

    def read_node_meminfo(self, rel):
        """{field: kB} from a node's meminfo, whose lines read
        ``Node 0 MemTotal:       16307564 kB``."""
        out = {}
        for line in self.read_text(rel).splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[0] != 'Node' \
                    or not parts[2].endswith(':'):
                continue
            try:
                out[parts[2][:-1]] = int(parts[3])
            except ValueError:
                raise KernelFSError(errno.EINVAL, '%s: %r is not "Node N '
                                    'Field: integer kB"'
                                    % (self.path(rel), line)) from None
        return out

    def _refuse_damon_write(self, rel):
        """Raise unless writing ``rel`` is allowed: anything that resolves
        into a DAMON directory (ours below root, or the machine's) needs
        ``allow_damon_writes``, and the machine's DAMON and tracefs are off
        limits under ``LOKI_NO_MACHINE_DAMON=1``."""
        real = os.path.realpath(self.path(rel))

        def within(directory):
            return real == directory or real.startswith(directory + os.sep)

        machine = within('/' + DAMON_DIR)
        if os.environ.get(NO_MACHINE_DAMON_ENV) == '1' and (
                machine or any(within('/' + d) for d in TRACEFS_DIRS)):
            raise PermissionError(
                errno.EPERM, 'refusing to write %s: the machine\'s DAMON is '
                'off limits here (%s=1)' % (self.path(rel),
                                            NO_MACHINE_DAMON_ENV))
        if not self.allow_damon_writes and (
                machine or within(os.path.realpath(self.path(DAMON_DIR)))):
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

    def mkdir(self, rel):
        self._refuse_damon_write(rel)
        os.mkdir(self.path(rel))

    def rmdir(self, rel):
        self._refuse_damon_write(rel)
        os.rmdir(self.path(rel))

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
        return _parse_stat(text, self.path('proc/%d/stat' % pid))

    def process_start_time(self, pid):
        return self.process_stat(pid)[1]

    def process_maps(self, pid):
        """The mappings of ``pid`` (/proc/PID/maps) as ``Mapping`` s."""
        try:
            with open(self.path('proc/%d/maps' % pid)) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, 'no process %d' % pid)
        return _parse_maps(lines)

    def process_dir(self, pid):
        """``pid``'s /proc/PID directory, held open (``ProcessDir``)."""
        return ProcessDir(self, pid)


def _parse_stat(text, path):
    """(state letter, start time) from the text of a /proc/PID/stat."""
    try:
        # The command name (field 2) may hold spaces and parentheses.
        fields = text[text.rindex(')') + 2:].split()
        return fields[0], int(fields[19])
    except (ValueError, IndexError):
        raise KernelFSError(errno.EINVAL, '%s holds %r, not a process\'s '
                            'stat line' % (path, text[:200])) from None


def _parse_maps(lines):
    maps = []
    for line in lines:
        parts = line.split(None, 5)
        lo, hi = parts[0].split('-')
        maps.append(Mapping(int(lo, 16), int(hi, 16), parts[1],
                            int(parts[2], 16), int(parts[4]),
                            parts[5] if len(parts) > 5 else ''))
    return maps


class ProcessDir:
    """One process's /proc/PID directory, held open.

    A pid names whichever process holds it now; an open /proc/PID
    directory names the process it was opened for, and no other: once
    that process has been reaped, every file opened through it fails with
    ESRCH, even after the pid has gone to a new process.  So stat,
    cmdline, maps, pagemap and clear_refs used through one belong to that
    process or to nothing, and the identity checked once (its start time)
    holds for every later use.  Methods raise ``ProcessLookupError`` when
    the process is gone and ``KernelFSError`` (naming the file) for
    anything else."""

    def __init__(self, kfs, pid):
        self.pid = pid
        self.path = kfs.path('proc/%d' % pid)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY
                              | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessLookupError(errno.ESRCH, 'no process %d' % pid) \
                from None
        except OSError as exc:
            raise KernelFSError(exc.errno, 'cannot open %s: %s'
                                % (self.path, exc.strerror)) from None

    def __repr__(self):
        return 'ProcessDir(%r)' % self.path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def explain(self, exc, name, what):
        """The exception to raise for ``exc`` (an ``OSError``) from
        ``what`` ('open', 'read', ...) on ``name`` in the directory."""
        # ESRCH: the process was reaped (the directory's permission check
        # finds no task), whoever holds the pid now.
        if exc.errno == errno.ESRCH:
            return ProcessLookupError(errno.ESRCH, 'process %d is gone (%s '
                                      '%s/%s)' % (self.pid, what,
                                                  self.path, name))
        return KernelFSError(exc.errno, 'cannot %s %s/%s: %s' % (
            what, self.path, name, exc.strerror))

    def open_fd(self, name, flags):
        """A raw fd of ``name`` in the directory, opened with ``flags``."""
        if self.fd is None:
            raise ProcessLookupError(errno.ESRCH, '%s was closed: the agent '
                                     'no longer follows process %d'
                                     % (self.path, self.pid))
        try:
            return os.open(name, flags | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            raise self.explain(exc, name, 'open') from None

    def open(self, name):
        """``name`` opened for unbuffered binary reading (pagemap)."""
        return os.fdopen(self.open_fd(name, os.O_RDONLY), 'rb',
                         buffering=0)

    def read_bytes(self, name):
        fd = self.open_fd(name, os.O_RDONLY)
        chunks = []
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                chunks.append(data)
        except OSError as exc:
            raise self.explain(exc, name, 'read') from None
        finally:
            os.close(fd)
        return b''.join(chunks)

    def write_text(self, name, value):
        fd = self.open_fd(name, os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        except OSError as exc:
            raise self.explain(exc, name, 'write %r to' % str(value)) \
                from None
        finally:
            os.close(fd)

    def stat(self):
        """(state letter, start time in clock ticks since boot)."""
        return _parse_stat(self.read_bytes('stat').decode(errors='replace'),
                           '%s/stat' % self.path)

    def cmdline(self):
        """argv as a list of strings."""
        raw = self.read_bytes('cmdline')
        return [a.decode('utf-8', errors='surrogateescape')
                for a in raw.split(b'\0')[:-1]]

    def maps(self):
        """The process's mappings as ``Mapping`` s."""
        return _parse_maps(self.read_bytes('maps').decode(
            errors='surrogateescape').splitlines())

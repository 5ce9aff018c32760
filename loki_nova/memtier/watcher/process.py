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

"""The process watcher: plain processes registered as guests.

A registration is a JSON file ``NAME.json`` in the registration directory
(``[memtier] registration_dir``) naming a pid, the process start time, the
exact virtual address ranges to manage and the DRAM policy::

    {"name": "db1", "pid": 4242, "start_time": 81234,
     "ranges": [[140180000000000, 140180268435456]],
     "policy": "on_demand", "floor_mb": 64, "ceiling_mb": 256}

``register`` writes one (atomically) for a live process.  Tests, the
benchmarks and the demo use it to run workloads under the real agent; the
registrations survive an agent restart, so it picks its guests up again.
A registration whose process exited or whose pid now belongs to another
process is ignored (and logged once), so a recycled pid is never managed.
"""

import json
import logging
import os
import re

from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import kernfs as kernfs_mod

LOG = logging.getLogger(__name__)

_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')


class RegistrationError(ValueError):
    """A registration names a bad process, range or policy."""


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistrationError(
            'guest name %r must be 1-128 letters, digits, "_", "." or "-", '
            'starting with a letter or digit' % (name,))


def _check_ranges(kfs, pid, ranges):
    """Every range must lie inside the process's mappings."""
    maps = kfs.process_maps(pid)
    for r in ranges:
        pos = r.start
        for m in maps:
            if m.start <= pos < m.end:
                pos = m.end
                if pos >= r.end:
                    break
        if pos < r.end:
            raise RegistrationError(
                'range %#x-%#x is not mapped in process %d (unmapped from '
                '%#x)' % (r.start, r.end, pid, pos))


def _check_owner(path, st):
    """A registration tells a privileged agent which process's pages to
    move: only the agent's own user may have written it."""
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RegistrationError(
            '%s must belong to uid %d and not be writable by group or '
            'others (it is uid %d, mode %o)'
            % (path, os.geteuid(), st.st_uid, st.st_mode & 0o7777))


def register(directory, name, pid, ranges, policy, kfs=None):
    """Register live process ``pid``'s ``ranges`` ([(start, end)] or
    ``RamRange`` s) under ``name`` with ``policy`` (a ``guest.Policy``).
    Returns the path written."""
    kfs = kfs or kernfs_mod.KernelFS()
    _check_name(name)
    ranges = tuple(r if isinstance(r, guest_mod.RamRange)
                   else guest_mod.RamRange(int(r[0]), int(r[1]))
                   for r in ranges)
    if not ranges:
        raise RegistrationError('guest %s: no ranges given' % name)
    ident = guest_mod.identify(kfs, pid)
    _check_ranges(kfs, pid, ranges)
    doc = {'name': name, 'pid': pid, 'start_time': ident.start_time,
           'ranges': [[r.start, r.end] for r in ranges],
           'policy': policy.policy, 'floor_mb': policy.floor_mb,
           'ceiling_mb': policy.ceiling_mb}
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + '.json')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(doc, f)
    os.replace(tmp, path)
    return path


def unregister(directory, name):
    _check_name(name)
    try:
        os.unlink(os.path.join(directory, name + '.json'))
    except FileNotFoundError:
        pass


def load(path, kfs):
    """The ``Guest`` a registration file describes, checked against the
    live process.  Raises ``RegistrationError`` or ``GuestGone``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as f:
            _check_owner(path, os.fstat(f.fileno()))
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise RegistrationError('cannot read %s: %s' % (path, exc))
    try:
        name = doc['name']
        _check_name(name)
        ident = guest_mod.Identity(int(doc['pid']), int(doc['start_time']))
        ranges = tuple(guest_mod.RamRange(int(a), int(b))
                       for a, b in doc['ranges'])
        policy = guest_mod.Policy(doc['policy'], doc['floor_mb'],
                                  doc.get('ceiling_mb'))
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistrationError('%s is not a valid registration: %s'
                                % (path, exc or type(exc).__name__))
    g = guest_mod.Guest(name, ident, ranges, policy, 'process')
    guest_mod.verify(kfs, g)
    _check_ranges(kfs, ident.pid, ranges)
    return g


class ProcessWatcher:
    """Guests registered in ``directory``.  A registration is read and
    its ranges checked against the process's mappings when it appears or
    changes; afterwards each scan only re-checks the process identity."""

    source = 'process'

    def __init__(self, directory, kfs=None):
        self.directory = directory
        self.kfs = kfs or kernfs_mod.KernelFS()
        self._reported = {}
        self._loaded = {}     # path -> (stat key, guest)

    def _load(self, path):
        st = os.stat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._loaded.get(path)
        if cached and cached[0] == key:
            guest_mod.verify(self.kfs, cached[1])
            return cached[1]
        g = load(path, self.kfs)
        self._loaded[path] = (key, g)
        return g

    def scan(self):
        guests = {}
        try:
            _check_owner(self.directory, os.stat(self.directory))
            names = sorted(n for n in os.listdir(self.directory)
                           if n.endswith('.json'))
        except FileNotFoundError:
            names = []
        except RegistrationError as exc:
            if self._reported.get(self.directory) != str(exc):
                self._reported[self.directory] = str(exc)
                LOG.error('ignoring every registration: %s', exc)
            names = []
        seen = set()
        for n in names:
            path = os.path.join(self.directory, n)
            seen.add(path)
            try:
                g = self._load(path)
            except FileNotFoundError:
                continue      # unregistered while we looked
            except (RegistrationError, guest_mod.GuestGone,
                    ProcessLookupError) as exc:
                self._loaded.pop(path, None)
                # Say it once per problem, not every interval.
                if self._reported.get(path) != str(exc):
                    self._reported[path] = str(exc)
                    LOG.warning('ignoring registration %s: %s', path, exc)
                continue
            self._reported.pop(path, None)
            guests[g.key] = g
        seen.add(self.directory)
        for gone in (set(self._reported) | set(self._loaded)) - seen:
            self._reported.pop(gone, None)
            self._loaded.pop(gone, None)
        return guests

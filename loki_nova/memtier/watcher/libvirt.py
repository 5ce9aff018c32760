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

"""The libvirt watcher: running domains with loki metadata.

Every running domain whose ``<metadata>`` holds a ``<loki:memtier>``
element (``loki_nova.memtier.metadata``) is a guest; its key is the domain
uuid (Nova's instance uuid).  Its QEMU pid comes from libvirt's pid file
``/run/libvirt/qemu/NAME.pid`` and is cross-checked against ``-uuid`` on
QEMU's command line; identity is pid + start time + uuid.

How guest RAM is found: exactly, never by guessing
----------------------------------------------------
A tiered guest's domain XML has::

    <memoryBacking>
      <source type='memfd'/>
      <access mode='shared'/>
    </memoryBacking>

so each of QEMU's RAM backends is a ``memory-backend-memfd`` object
(``pc.ram`` without guest NUMA, ``ram-node0``, ``ram-node1``, ... with
``<cpu><numa>`` cells, ``memdimmN`` for hot-plugged DIMMs).  QEMU names
every such memfd after the backend *type*, not the backend id, so in
/proc/PID/maps each backend is one line ending in
``/memfd:memory-backend-memfd (deleted)``.  Seen on this project's rig
(libvirt 9.0, QEMU 7.2, TCG)::

    # 128 MiB, no guest NUMA
    7faecffff000-7faed7fff000 rw-s 00000000 00:01 1065  \
        /memfd:memory-backend-memfd (deleted)
    # 192 MiB in two guest NUMA cells of 128 + 64 MiB
    7fc4d3ffe000-7fc4d7ffe000 rw-s 00000000 00:01 29  \
        /memfd:memory-backend-memfd (deleted)
    7fc4d7fff000-7fc4dffff000 rw-s 00000000 00:01 28  \
        /memfd:memory-backend-memfd (deleted)

Nothing else in QEMU creates a memfd of that name (video RAM, ROMs and
other device memory are anonymous; vhost logs and udmabufs are memfds
with other names), so those mappings are exactly the guest's RAM.  The
watcher takes every such mapping as one ``RamRange`` and requires their
total to equal the domain's memory (``virDomainGetMaxMemory``); a domain
where it does not (or with no such mapping, i.e. without memfd backing) is
skipped with the reason, never managed by a guess such as "the biggest
mapping".  A mapping may show up split into several adjacent lines if its
pages get different VMA attributes; each becomes its own range and the
total still holds.

Why memfd: it needs no host configuration (a ``<source type='file'>``
backing needs ``memory_backing_dir`` on a tmpfs, else guest RAM is written
back to disk), it is the shared backing libvirt documents for vhost-user,
and ``move_pages(2)`` works on its (shmem) pages: on the rig, query mode
(nodes=NULL) gave status 0 (node 0) for every touched page and -ENOENT for
pages the guest never touched.  ``access mode='shared'`` keeps the pages
in the memfd instead of private anonymous copy-on-write copies; shared
pages that another process also maps (a vhost-user backend) need
``MPOL_MF_MOVE_ALL`` to be moved.  With ``<hugepages>`` QEMU names the
memfd the same way (from its source; the rig has no huge pages to try).

The connection is read-only (listing domains and reading metadata need no
more) and is reopened by the next ``scan`` after libvirtd went away.
Creating a watcher replaces libvirt's default error handler, which would
print every expected error (e.g. "metadata not found" for each domain
without loki metadata) to stderr, with one that discards them; errors
still arrive as exceptions.
"""

import logging

import libvirt

from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier import metadata
from loki_nova.memtier.watcher import WatcherUnavailable

LOG = logging.getLogger(__name__)

SOURCE = 'libvirt'
PID_DIR = 'run/libvirt/qemu'
#: How QEMU's memfd RAM backends appear in /proc/PID/maps.
RAM_MAPPING = '/memfd:memory-backend-memfd'
RAM_MAPPING_NAMES = (RAM_MAPPING, RAM_MAPPING + ' (deleted)')

MEMORY_BACKING_XML = ("<memoryBacking><source type='memfd'/>"
                      "<access mode='shared'/></memoryBacking>")


class _Skip(Exception):
    """This domain cannot be managed now; the message says why."""


def _ignore_libvirt_error(ctx, error):
    pass


def ram_mappings(maps):
    """The mappings of QEMU guest RAM among ``maps`` (``kernfs.Mapping``),
    in address order."""
    return sorted((m for m in maps if m.path in RAM_MAPPING_NAMES),
                  key=lambda m: m.start)


class LibvirtWatcher:
    """Guests from libvirtd at ``uri``; /proc and /run through ``kfs``."""

    def __init__(self, uri='qemu:///system', kfs=None, pid_dir=PID_DIR):
        self.uri = uri
        self.kfs = kfs or kernfs_mod.KernelFS()
        self.pid_dir = pid_dir
        self._conn = None
        #: Domain uuid -> the reason it was last skipped, so that a
        #: domain that stays unmanageable is reported once, not per scan.
        self._skipped = {}
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)

    def __repr__(self):
        return 'LibvirtWatcher(%r)' % self.uri

    # -- connection -------------------------------------------------------

    def _connection(self):
        conn = self._conn
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            self.close()
            LOG.info('libvirt connection to %s was lost; reconnecting',
                     self.uri)
        try:
            self._conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as exc:
            raise WatcherUnavailable(
                'cannot connect to libvirtd at %s: %s (is libvirtd running '
                'and the URI right? [memtier] libvirt_uri)'
                % (self.uri, exc)) from None
        return self._conn

    def close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def _lost(self, exc):
        self.close()
        return WatcherUnavailable('lost libvirtd at %s during a scan: %s'
                                  % (self.uri, exc))

    # -- scan -------------------------------------------------------------

    def scan(self):
        """``{domain uuid: guest.Guest}`` of every running domain with loki
        metadata.  A domain that cannot be managed is logged and left out;
        ``WatcherUnavailable`` when libvirtd cannot be reached."""
        conn = self._connection()
        try:
            domains = conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as exc:
            raise self._lost(exc) from None
        found = {}
        skipped = {}
        for dom in domains:
            try:
                uuid = dom.UUIDString()
                name = dom.name()
                g = self._guest(dom, uuid, name)
            except _Skip as exc:
                reason = str(exc)
                skipped[uuid] = reason
                if self._skipped.get(uuid) != reason:
                    LOG.warning('libvirt domain %s (%s) is not managed: %s',
                                name, uuid, reason)
                else:
                    LOG.debug('libvirt domain %s (%s) still not managed: %s',
                              name, uuid, reason)
                continue
            except libvirt.libvirtError as exc:
                if not self._alive(conn):
                    raise self._lost(exc) from None
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    LOG.debug('a libvirt domain vanished during the scan: '
                              '%s', exc)
                else:
                    LOG.warning('libvirt domain %s is not managed: libvirt '
                                'error %s', _name(dom), exc)
                continue
            if g is not None:
                found[uuid] = g
        for uuid in set(self._skipped) - set(skipped):
            LOG.debug('libvirt domain %s is no longer skipped', uuid)
        self._skipped = skipped
        return found

    @staticmethod
    def _alive(conn):
        try:
            return conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def _guest(self, dom, uuid, name):
        state, _ = dom.state()
        if state != libvirt.VIR_DOMAIN_RUNNING:
            LOG.debug('libvirt domain %s: not running (state %d), ignored',
                      name, state)
            return None
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                metadata.NAMESPACE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                raise
            LOG.debug('libvirt domain %s: no loki metadata, ignored', name)
            return None
        try:
            policy = metadata.from_xml(text)
        except ValueError as exc:
            raise _Skip(str(exc)) from None

        pid_file = '%s/%s.pid' % (self.pid_dir, name)
        try:
            pid = self.kfs.read_int(pid_file)
        except kernfs_mod.KernelFSError as exc:
            raise _Skip('no QEMU pid: %s' % (exc.strerror or exc)) from None
        try:
            ident = guest_mod.identify(self.kfs, pid, uuid)
        except ProcessLookupError:
            raise _Skip('QEMU process %d (from %s) does not exist'
                        % (pid, self.kfs.path(pid_file))) from None
        unchecked = guest_mod.Guest(uuid, ident, (), policy, SOURCE)
        try:
            # pid + start time, and -uuid on the command line.
            guest_mod.verify(self.kfs, unchecked)
            maps = self.kfs.process_maps(pid)
        except guest_mod.GuestGone as exc:
            raise _Skip('process %d from %s is not this domain\'s QEMU: %s'
                        % (pid, self.kfs.path(pid_file), exc.reason)) \
                from None
        except ProcessLookupError:
            raise _Skip('QEMU process %d exited' % pid) from None

        ram = ram_mappings(maps)
        if not ram:
            raise _Skip('no guest RAM mapping %r in /proc/%d/maps; a tiered '
                        'domain needs %s' % (RAM_MAPPING, pid,
                                             MEMORY_BACKING_XML))
        total = sum(m.size for m in ram)
        expected = dom.maxMemory() * 1024
        if total != expected:
            raise _Skip('its %d RAM mapping(s) %r in /proc/%d/maps hold %d '
                        'bytes, the domain has %d; not all guest RAM is '
                        'memfd-backed' % (len(ram), RAM_MAPPING, pid, total,
                                          expected))
        found = guest_mod.Guest(
            uuid, ident, tuple(guest_mod.RamRange(m.start, m.end)
                               for m in ram), policy, SOURCE)
        try:
            # The maps were read from the process identified above.
            guest_mod.verify(self.kfs, found)
        except guest_mod.GuestGone as exc:
            raise _Skip(exc.reason) from None
        return found


def _name(dom):
    try:
        return dom.name()
    except libvirt.libvirtError:
        return '?'

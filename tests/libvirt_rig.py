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

"""A real libvirtd and tiny real QEMU (TCG) guests for tests.

Helpers and pytest fixtures; a test module uses the fixtures by binding
them at module level::

    from tests import libvirt_rig as rig
    libvirt_daemons = rig.libvirt_daemons
    libvirt_conn = rig.libvirt_conn
    rig_dir = rig.rig_dir
    tiny_guest_image = rig.tiny_guest_image
    tiny_guests = rig.tiny_guests

(every fixture a used one depends on must be bound too).

* ``libvirt_daemons`` (session): uses the ``virtlogd`` + ``libvirtd`` that
  run on this machine, or starts them (``-d``) and stops, at session end,
  only the ones it started, by pid.  Skips where libvirtd is not
  installed or we are not root; fails when it is but does not come up.
  It also gives group kvm access to /dev/kvm when it lacks it
  (``fix_kvm_device``: without it every libvirt define takes ~40 s).
* ``rig_dir`` (session): a scratch directory QEMU (user libvirt-qemu) can
  read.
* ``libvirt_conn`` (session): a read-write connection to ``qemu:///system``.
* ``tiny_guest_image`` (session): the sandbox's 6.12 kernel
  (``tools/sandbox.ensure_kernel``; one download, shared) and a
  busybox-static initramfs whose ``/init`` prints ``BOOT_MARKER`` on the
  serial console and then keeps rewriting a hot set of guest memory.
* ``tiny_guests`` (function): ``tiny_guests.create(...)`` defines and starts
  a ``TinyGuest``; every domain it defined is destroyed and undefined at the
  end of the test, also when the test failed.

``libvirtd_stopped()`` stops the libvirtd this process started for the
body of a ``with`` and starts it again afterwards (running guests survive
it); each module binding the session fixtures gets its own instance of
them, so which daemons this process started is kept here, process-wide.

Guests are ``<domain type='qemu'>`` (TCG: KVM is unusable on these
machines, see RIG.md), boot the kernel directly and log the serial console
to a file.  Domain names are ``loki-rig-<pytest pid>-<n>``; leftovers of a
pytest process that no longer exists are removed at session start.
"""

import concurrent.futures
import contextlib
import grp
import importlib.util
import itertools
import logging
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time
import uuid as uuid_mod
from xml.sax import saxutils

import libvirt
import pytest

from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import metadata
from tests.sandbox_plugin import in_sandbox

LOG = logging.getLogger(__name__)

URI = 'qemu:///system'
SBIN = '/usr/sbin'
#: Daemons in start order, with the pid files they write when run as root.
DAEMONS = (('virtlogd', '/run/virtlogd.pid'),
           ('libvirtd', '/run/libvirtd.pid'))
PID_DIR = '/run/libvirt/qemu'
BUSYBOX = '/bin/busybox'
BOOT_MARKER = 'LOKI-RIG-GUEST-UP'
NAME_PREFIX = 'loki-rig-'
KERNEL_CMDLINE = 'console=ttyS0 panic=-1 quiet'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMON_TIMEOUT = 30
BOOT_TIMEOUT = 120
MiB = 1 << 20
KVM_DEVICE = '/dev/kvm'
KVM_GROUP = 'kvm'

#: Daemons this process started and has not stopped: name -> pid.
_ours = {}
#: pid of a libvirtd stopped by ``libvirtd_stopped`` -> pid of the one
#: started in its place, which ``stop_daemons`` then stops instead.
_successors = {}


def wait_for(condition, timeout, what, interval=0.05):
    """Poll ``condition()`` until it returns something true; return that.
    ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError('%s: not within %.0f s' % (what, timeout))
        time.sleep(interval)


def _quiet(ctx, error):
    pass


def _live(pid):
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(')') + 2] != 'Z'


def daemon_pid(name, pid_file):
    """The pid of the running daemon ``name`` per its pid file, or None."""
    try:
        with open(pid_file) as f:
            pid = int(f.read().split()[0])
        with open('/proc/%d/comm' % pid) as f:
            comm = f.read().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == name and _live(pid) else None


def can_connect(uri=URI):
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def fix_kvm_device(device=KVM_DEVICE, group=KVM_GROUP):
    """Give ``group`` read-write access to ``device``, as Debian's udev
    rules do (there is no udev on these machines: /dev/kvm is root 0600).

    Without it libvirt 9.0 re-probes QEMU on nearly every call -- its
    cached capabilities say KVM (probed as root) while QEMU's user
    libvirt-qemu (group kvm) cannot open /dev/kvm ("KVM was enabled when
    probing ..., but it is not available now") -- and a define takes 40 s
    instead of 0.1 s.  Guests stay ``type='qemu'`` (TCG) either way.
    Returns whether anything was changed."""
    try:
        st = os.stat(device)
        gid = grp.getgrnam(group).gr_gid
    except (FileNotFoundError, KeyError):
        return False
    if st.st_gid == gid and st.st_mode & 0o060 == 0o060:
        return False
    os.chown(device, -1, gid)
    os.chmod(device, stat.S_IMODE(st.st_mode) | 0o060)
    LOG.warning('gave group %s read-write access to %s (as udev would) so '
                'that libvirt keeps its QEMU capabilities cache', group,
                device)
    return True


#: Directories libvirt writes to; read-only in the sandbox (the machine's
#: root over 9p), so ``prepare_sandbox`` covers each with a writable copy.
LIBVIRT_STATE_DIRS = ('/etc/libvirt', '/var/lib/libvirt', '/var/log/libvirt',
                      '/var/cache/libvirt')
CGROUP_ROOT = '/sys/fs/cgroup'
#: Appended to the sandbox's copy of qemu.conf.  libvirt gives each QEMU a
#: private /dev in its own mount namespace; in the sandbox's chroot (a 9p
#: root with a devtmpfs) that /dev came out without /dev/urandom and QEMU
#: refused to start, so guests share the sandbox's /dev.
SANDBOX_QEMU_CONF = '''
# added by tests/libvirt_rig.prepare_sandbox (sandbox guest only)
namespaces = []
'''
#: Controllers libvirt needs for its guests: ``cpuset`` is how the
#: ``restrictive`` numatune of a tiered guest is enforced.
CGROUP_CONTROLLERS = ('cpuset', 'cpu', 'memory', 'pids')


def _mounted(path):
    with open('/proc/self/mountinfo') as f:
        return any(line.split()[4] == path for line in f)


def prepare_sandbox(scratch='/run/loki-libvirt-state'):
    """Inside the sandbox guest only: let libvirtd run there.

    The guest sees the machine's root read-only, so each of
    ``LIBVIRT_STATE_DIRS`` gets a writable copy on a tmpfs, bound over it
    (a guest's config, its QEMU log, the capabilities cache); the guest's
    own cgroup2 hierarchy is mounted with the controllers libvirt uses
    delegated to children.  With ``$LOKI_SANDBOX_NESTED_VIRT`` (a run with
    ``nested_virt=True``), that tree's libvirt and QEMU are bound over the
    machine's first.  All of it lives in the guest and is gone
    when the guest powers off.  Idempotent; refuses outside the sandbox
    (there those directories and cgroups belong to the machine)."""
    if not in_sandbox():
        raise RuntimeError('prepare_sandbox() changes mounts and cgroups: '
                           'only inside the sandbox guest (LOKI_SANDBOX=1)')
    if not os.path.exists(os.path.join(CGROUP_ROOT, 'cgroup.controllers')):
        subprocess.run(['mount', '-t', 'cgroup2', 'none', CGROUP_ROOT],
                       check=True)
    with open(os.path.join(CGROUP_ROOT, 'cgroup.subtree_control'), 'w') as f:
        f.write(' '.join('+' + c for c in CGROUP_CONTROLLERS))
    tree = os.environ.get(_load_sandbox().NESTED_VIRT_ENV)
    if tree:
        # libvirt and QEMU from bookworm-backports over the machine's
        # (tools/sandbox.py, ensure_nested_virt): the guest's mounts only.
        for source, target in _load_sandbox().nested_virt_binds(tree):
            if not _mounted(target):
                subprocess.run(['mount', '--bind', source, target],
                               check=True)
    for path in LIBVIRT_STATE_DIRS:
        if not os.path.isdir(path) or _mounted(path):
            continue
        copy = scratch + path
        shutil.copytree(path, copy, symlinks=True, dirs_exist_ok=True)
        if path == '/etc/libvirt':
            with open(os.path.join(copy, 'qemu.conf'), 'a') as f:
                f.write(SANDBOX_QEMU_CONF)
        subprocess.run(['mount', '--bind', copy, path], check=True)


def start_daemons(timeout=DAEMON_TIMEOUT):
    """Make ``qemu:///system`` reachable: start ``virtlogd`` and
    ``libvirtd`` unless they run (in the sandbox guest, after
    ``prepare_sandbox``).  Returns the pids of the daemons started here
    (empty when both already ran)."""
    libvirt.registerErrorHandler(_quiet, None)
    if in_sandbox():
        prepare_sandbox()
    fix_kvm_device()
    started = []
    try:
        for name, pid_file in DAEMONS:
            if daemon_pid(name, pid_file):
                continue
            done = subprocess.run([os.path.join(SBIN, name), '-d'],
                                  capture_output=True, text=True,
                                  timeout=timeout)
            if done.returncode:
                raise RuntimeError('%s -d failed (exit %d): %s' % (
                    name, done.returncode, done.stderr.strip()))
            pid = wait_for(
                lambda: daemon_pid(name, pid_file), timeout,
                '%s writing a live pid to %s' % (name, pid_file))
            started.append(pid)
            _ours[name] = pid
        wait_for(can_connect, timeout, 'libvirtd accepting %s' % URI)
    except BaseException:
        stop_daemons(started)
        raise
    return started


def stop_daemons(pids, timeout=DAEMON_TIMEOUT):
    """End the daemons ``pids`` (started by ``start_daemons``), last
    started first, and wait until they are gone.  A libvirtd restarted
    by ``libvirtd_stopped`` is stopped in the form of its successor."""
    for pid in reversed(pids):
        while pid in _successors:
            pid = _successors.pop(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _live(pid), timeout, 'daemon %d exiting' % pid)
        for name in [n for n, p in _ours.items() if p == pid]:
            del _ours[name]


def libvirtd_started_here():
    """The pid of the running libvirtd if this process started it (so
    it may stop it), else None."""
    pid = _ours.get('libvirtd')
    running = daemon_pid('libvirtd', dict(DAEMONS)['libvirtd'])
    return pid if pid is not None and running == pid else None


@contextlib.contextmanager
def libvirtd_stopped(timeout=DAEMON_TIMEOUT):
    """Stop the libvirtd this process started (by pid; virtlogd and
    the QEMU processes of running guests stay) and wait until
    ``qemu:///system`` refuses connections; yield the stopped pid.  On
    leaving -- also when the body failed -- start libvirtd again and wait
    until it accepts connections; whoever started the old one stops the
    new one.  Connections opened before are dead afterwards (see
    ``TinyGuests.reattach``)."""
    old = libvirtd_started_here()
    if old is None:
        raise RuntimeError('the running libvirtd was not started by this '
                           'process; it is not ours to stop')
    stop_daemons([old], timeout)
    try:
        wait_for(lambda: not can_connect(), timeout,
                 'libvirtd refusing %s' % URI)
        yield old
    finally:
        start_daemons(timeout)
        _successors[old] = _ours['libvirtd']


# -- the tiny guest's boot image --------------------------------------------

def _load_sandbox():
    path = os.path.join(REPO_ROOT, 'tools', 'sandbox.py')
    spec = importlib.util.spec_from_file_location('loki_tools_sandbox', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_static_elf(path):
    """Whether ``path`` is a 64-bit ELF executable without an interpreter
    (i.e. statically linked)."""
    with open(path, 'rb') as f:
        head = f.read(64)
        if head[:5] != b'\x7fELF\x02' or head[5] != 1:
            return False
        phoff, = struct.unpack_from('<Q', head, 0x20)
        phentsize, phnum = struct.unpack_from('<HH', head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from('<I', table, i * phentsize)[0] != 3
               for i in range(phnum))        # 3 = PT_INTERP


#: First lines of a tiny guest's /init: busybox's applets, /proc, /dev.
INIT_PREAMBLE = ['#!/bin/busybox sh',
                 'export PATH=/bin',
                 '/bin/busybox --install -s /bin',
                 'mount -t proc proc /proc',
                 'mount -t devtmpfs devtmpfs /dev']


def init_script(marker=BOOT_MARKER, hot_mb=16):
    """``/init``: announce ``marker`` on the console, then rewrite a file
    of ``hot_mb`` MiB in the initramfs (guest RAM) once a second."""
    return '\n'.join(INIT_PREAMBLE + [
        'dd if=/dev/zero of=/hot bs=1M count=%d 2>/dev/null' % hot_mb,
        'echo %s' % marker,
        'while :; do',
        '  dd if=/dev/zero of=/hot bs=1M count=%d conv=notrunc '
        '2>/dev/null' % hot_mb,
        '  sleep 1',
        'done',
        ''])


def _cpio_entry(out, ino, name, mode, data=b'', rdev=(0, 0)):
    name = name.encode() + b'\0'
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(name), 0)
    out.append(b'070701' + b''.join(b'%08X' % f for f in fields) + name)
    out.append(b'\0' * (-(110 + len(name)) % 4))
    out.append(data + b'\0' * (-len(data) % 4))


def write_initramfs(path, init, busybox=BUSYBOX, programs=None):
    """A newc cpio archive with a static busybox and ``init`` as /init;
    ``programs`` maps more names under /bin to their (static) bytes."""
    if not is_static_elf(busybox):
        raise RuntimeError('%s is not a static 64-bit busybox; install '
                           'busybox-static' % busybox)
    with open(busybox, 'rb') as f:
        bb = f.read()
    out = []
    inodes = itertools.count(1)
    for d in ('bin', 'dev', 'proc', 'sys', 'tmp'):
        _cpio_entry(out, next(inodes), d, 0o040755)
    _cpio_entry(out, next(inodes), 'dev/console', 0o020600, rdev=(5, 1))
    _cpio_entry(out, next(inodes), 'bin/busybox', 0o100755, bb)
    for name, data in sorted((programs or {}).items()):
        _cpio_entry(out, next(inodes), 'bin/' + name, 0o100755, data)
    _cpio_entry(out, next(inodes), 'init', 0o100755, init.encode())
    _cpio_entry(out, 0, 'TRAILER!!!', 0)
    with open(path, 'wb') as f:
        f.write(b''.join(out))
    os.chmod(path, 0o644)
    return path


class GuestImage:
    """Kernel + initramfs in a directory QEMU (user libvirt-qemu) can
    read: the sandbox cache under ~root is not readable to it, so the
    kernel is copied."""

    def __init__(self, directory, kernel=None, marker=BOOT_MARKER, hot_mb=16,
                 init=None, programs=None):
        """``init``: the /init script (default ``init_script(marker,
        hot_mb)``); ``programs``: more static programs for /bin."""
        self.directory = directory
        self.marker = marker
        os.chmod(directory, 0o755)
        if kernel is None:
            kernel, _ = _load_sandbox().ensure_kernel()
        self.kernel = os.path.join(directory, 'vmlinuz')
        shutil.copyfile(kernel, self.kernel)
        os.chmod(self.kernel, 0o644)
        self.initrd = write_initramfs(
            os.path.join(directory, 'initrd'),
            init or init_script(marker, hot_mb), programs=programs)


#: The workload of a ``WorkloadImage`` guest (tests/guestload.c).
GUESTLOAD_SOURCE = os.path.join(REPO_ROOT, 'tests', 'guestload.c')
WORKLOAD_MARKER = 'guestload: running'


def build_guestload(out_path, source=GUESTLOAD_SOURCE):
    """Compile the guest workload as a static program (it runs from the
    guest's initramfs, which has no C library)."""
    cc = os.environ.get('CC') or shutil.which('gcc') or shutil.which('cc')
    if not cc:
        raise RuntimeError('no C compiler to build %s (apt-get install gcc '
                           'libc6-dev)' % source)
    done = subprocess.run([cc, '-static', '-O2', '-Wall', '-o', out_path,
                           source], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError('building %s failed (%s exit %d): %s' % (
            source, cc, done.returncode, done.stderr.strip()))
    return out_path


def workload_init(data_mb, hot_mb, verify_every_s):
    """``/init`` of a ``WorkloadImage`` guest: keep locked pages where
    they are (their frame numbers are printed once), then run guestload
    for ever.  ``data_mb`` None: all the memory the guest has available
    but ``WORKLOAD_HEADROOM_MB``."""
    if data_mb is None:
        size = ('data=$(( $(awk \'/^MemAvailable:/ {print int($2 / 1024)}\' '
                '/proc/meminfo) - %d ))' % WORKLOAD_HEADROOM_MB)
    else:
        size = 'data=%d' % data_mb
    return '\n'.join(INIT_PREAMBLE + [
        'echo 0 > /proc/sys/vm/compact_unevictable_allowed',
        size,
        'echo "guestload: starting $(cut -d" " -f1 /proc/uptime)s after '
        'boot: $data MiB of $(awk \'/^MemTotal:/ {print int($2 / 1024)}\' '
        '/proc/meminfo) MiB"',
        'exec /bin/guestload $data %d %d' % (hot_mb, verify_every_s),
        ''])


#: What a ``WorkloadImage`` guest leaves of its available memory to its
#: kernel (page tables, the console, guestload's own frame list).
WORKLOAD_HEADROOM_MB = 16


class WorkloadImage(GuestImage):
    """A guest that fills ``data_mb`` MiB (None: nearly all it has) with a
    checked pattern, keeps its first ``hot_mb`` MiB hot and prints its hot
    set's guest frame numbers and a verification every ``verify_every_s``
    seconds on the serial console (tests/guestload.c)."""

    def __init__(self, directory, data_mb, hot_mb, verify_every_s=20,
                 kernel=None):
        program = build_guestload(os.path.join(directory, 'guestload'))
        with open(program, 'rb') as f:
            data = f.read()
        super().__init__(directory, kernel=kernel, marker=WORKLOAD_MARKER,
                         init=workload_init(data_mb, hot_mb, verify_every_s),
                         programs={'guestload': data})


def hot_frames(console_text):
    """The guest frame numbers of a ``WorkloadImage`` guest's hot set, as
    printed on its console (empty until it has printed them)."""
    frames = []
    for line in console_text.splitlines():
        if 'guestload: hot pfn' not in line:
            continue
        for run in line.split('guestload: hot pfn', 1)[1].split():
            first, _, last = run.partition('-')
            frames.extend(range(int(first, 16), int(last, 16) + 1))
    return frames


def ram_mapping(pid, size):
    """(start, end) of the one memfd mapping of ``size`` bytes in QEMU's
    address space: the guest's RAM (read here from /proc, not through
    the agent's watcher)."""
    found = []
    with open('/proc/%d/maps' % pid) as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split('-'))
            if end - start == size and 'memfd:' in line:
                found.append((start, end))
    assert len(found) == 1, found
    return found[0]


def filled_mb(console_text):
    """MiB a ``WorkloadImage`` guest filled with its pattern, or None."""
    m = re.search(r'guestload: filled (\d+) MiB', console_text)
    return int(m.group(1)) if m else None


def guest_memory_mb(console_text):
    """The guest's MemTotal in MiB as a ``WorkloadImage`` guest printed it
    before starting its workload, or None."""
    m = re.search(r'guestload: starting \S+ after boot: \d+ MiB of (\d+) '
                  r'MiB', console_text)
    return int(m.group(1)) if m else None


_VERIFY = re.compile(r'guestload: verify (\d+): (\d+) pages, (\d+) bad, '
                     r'sum (\w+) \(expected (\w+)\) (ok|BAD)')


def verifications(console_text):
    """``(number, pages, bad, ok)`` of each verification a ``WorkloadImage``
    guest printed."""
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3)),
             m.group(6) == 'ok' and m.group(4) == m.group(5))
            for m in _VERIFY.finditer(console_text)]


# -- domains ----------------------------------------------------------------

def domain_xml(name, memory_mib=128, image=None, console=None,
               numa_cells_mib=None, loki=None, memfd=True, uuid=None):
    """Domain XML of a TCG guest.

    ``image`` (a ``GuestImage``) boots its kernel directly; without it the
    guest has nothing to boot and idles in the BIOS, which is enough for a
    running QEMU process.  ``numa_cells_mib``: guest NUMA cells' sizes;
    cell 0 has the one vCPU, the others are memory only.  ``loki``: a
    ``guest.Policy`` or raw metadata XML (for malformed cases), or None.
    ``memfd``: the memfd shared RAM backing the loki watcher needs."""
    esc = saxutils.escape
    if numa_cells_mib:
        memory_mib = sum(numa_cells_mib)
    parts = ["<domain type='qemu'>",
             '<name>%s</name>' % esc(name),
             '<uuid>%s</uuid>' % (uuid or uuid_mod.uuid4()),
             "<memory unit='MiB'>%d</memory>" % memory_mib,
             '<vcpu>1</vcpu>']
    if numa_cells_mib:
        cells = ''.join(
            "<cell id='%d'%s memory='%d' unit='MiB'/>"
            % (i, " cpus='0'" if i == 0 else '', mib)
            for i, mib in enumerate(numa_cells_mib))
        parts.append('<cpu><numa>%s</numa></cpu>' % cells)
    if memfd:
        parts.append("<memoryBacking><source type='memfd'/>"
                     "<access mode='shared'/></memoryBacking>")
    parts.append("<os><type arch='x86_64' machine='pc'>hvm</type>")
    if image:
        parts += ['<kernel>%s</kernel>' % esc(image.kernel),
                  '<initrd>%s</initrd>' % esc(image.initrd),
                  '<cmdline>%s</cmdline>' % esc(KERNEL_CMDLINE)]
    parts += ['</os>',
              '<on_poweroff>destroy</on_poweroff>',
              '<on_reboot>destroy</on_reboot>',
              '<on_crash>destroy</on_crash>',
              '<devices>']
    if console:
        parts.append("<serial type='file'><source path='%s'/>"
                     "<target port='0'/></serial>" % esc(console))
    parts += ["<memballoon model='none'/>", '</devices>']
    if loki is not None:
        text = (metadata.to_xml(loki) if isinstance(loki, guest_mod.Policy)
                else loki)
        parts.append('<metadata>%s</metadata>' % text)
    parts.append('</domain>')
    return '\n'.join(parts)


class TinyGuest:
    """A defined and started domain."""

    def __init__(self, conn, name, console, xml):
        self.name = name
        self.console = console
        self.dom = conn.defineXML(xml)
        self.defined = True
        self.uuid = self.dom.UUIDString()
        self.pid_file = os.path.join(PID_DIR, name + '.pid')

    @property
    def memory_bytes(self):
        return self.dom.maxMemory() * 1024

    def pid(self):
        with open(self.pid_file) as f:
            return int(f.read().split()[0])

    def console_text(self):
        try:
            with open(self.console, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def wait_booted(self, marker=BOOT_MARKER, timeout=BOOT_TIMEOUT):
        """Wait until ``marker`` is on the serial console; fail at once if
        the domain stops."""
        def booted():
            if marker in self.console_text():
                return True
            if not self.dom.isActive():
                raise AssertionError('domain %s stopped before %r on its '
                                     'console; console ends: %s' % (
                                         self.name, marker,
                                         self.console_text()[-2000:]))
            return False
        try:
            wait_for(booted, timeout, 'boot marker %r on the console of %s'
                     % (marker, self.name), interval=0.1)
        except TimeoutError as exc:
            raise AssertionError('%s; console ends: %s' % (
                exc, self.console_text()[-2000:])) from None

    def destroy(self):
        """Stop the guest (if running) and wait until libvirt says so."""
        if self.dom.isActive():
            with contextlib.suppress(libvirt.libvirtError):
                self.dom.destroy()
        wait_for(lambda: not self.dom.isActive(), DAEMON_TIMEOUT,
                 'domain %s stopping' % self.name)

    def undefine(self):
        self.dom.undefine()
        self.defined = False

    def remove(self):
        """Destroy and undefine, whatever state the domain is in."""
        if not self.defined:
            return
        try:
            self.destroy()
            self.undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            self.defined = False


class TinyGuests:
    """Defines and starts guests; ``cleanup`` removes all of them."""

    _numbers = itertools.count()

    def __init__(self, conn, directory, image=None):
        self.conn = conn
        self.directory = directory
        self.image = image
        self.guests = []

    def create(self, boot=True, start=True, **kwargs):
        """Define (and start) a guest; ``kwargs`` go to ``domain_xml``.
        ``boot=False``: no kernel, the guest idles in the BIOS."""
        name = '%s%d-%d' % (NAME_PREFIX, os.getpid(), next(self._numbers))
        console = os.path.join(self.directory, name + '.console')
        xml = domain_xml(name, image=self.image if boot else None,
                         console=console, **kwargs)
        g = TinyGuest(self.conn, name, console, xml)
        self.guests.append(g)
        if start:
            g.dom.create()
        return g

    def reattach(self, conn):
        """Use ``conn`` from now on: after libvirtd restarted, the old
        connection and every domain object from it are dead, so each
        guest's domain is looked up again by uuid."""
        self.conn = conn
        for g in self.guests:
            if not g.defined:
                continue
            try:
                g.dom = conn.lookupByUUIDString(g.uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                g.defined = False

    def cleanup(self):
        """Destroy and undefine every guest (in parallel: a destroy takes
        libvirt about 2 s)."""
        def remove(g):
            try:
                g.remove()
            except (libvirt.libvirtError, TimeoutError) as exc:
                return '%s: %s' % (g.name, exc)
            return None

        with concurrent.futures.ThreadPoolExecutor(
                max(1, len(self.guests))) as pool:
            errors = [e for e in pool.map(remove, self.guests) if e]
        self.guests = []
        if errors:
            raise RuntimeError('could not remove test domains: %s'
                               % '; '.join(errors))


def remove_stale_domains(conn):
    """Destroy and undefine ``loki-rig-PID-N`` domains of pytest processes
    that no longer exist (left over by a killed test run)."""
    pattern = re.compile(r'^%s(\d+)-\d+$' % re.escape(NAME_PREFIX))
    for dom in conn.listAllDomains():
        m = pattern.match(dom.name())
        if not m or int(m.group(1)) == os.getpid() \
                or _live(int(m.group(1))):
            continue
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
            dom.undefine()


# -- fixtures ---------------------------------------------------------------

@pytest.fixture(scope='session')
def libvirt_daemons():
    """pids of the daemons this session started (empty if they ran)."""
    if not os.path.exists(os.path.join(SBIN, 'libvirtd')):
        pytest.skip('libvirtd is not installed (apt-get install '
                    'libvirt-daemon-system qemu-system-x86)')
    if os.geteuid() != 0:
        pytest.skip('the libvirt rig runs qemu:///system and needs root')
    started = start_daemons()
    yield started
    stop_daemons(started)


@pytest.fixture(scope='session')
def libvirt_conn(libvirt_daemons):
    conn = libvirt.open(URI)
    remove_stale_domains(conn)
    yield conn
    conn.close()


@pytest.fixture(scope='session')
def rig_dir():
    """A directory libvirt-qemu can read (pytest's own are 0700)."""
    directory = tempfile.mkdtemp(prefix='loki-libvirt-rig-')
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope='session')
def tiny_guest_image(rig_dir):
    directory = os.path.join(rig_dir, 'image')
    os.mkdir(directory)
    return GuestImage(directory)


@pytest.fixture
def tiny_guests(libvirt_conn, rig_dir, tiny_guest_image):
    guests = TinyGuests(libvirt_conn, rig_dir, tiny_guest_image)
    yield guests
    guests.cleanup()

#!/usr/bin/env python3
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

"""The tiered-memory sandbox: a QEMU (TCG) guest with a slow NUMA node.

The guest has two NUMA nodes -- node0 with the CPUs and "DRAM", node1
memory only and slower per its HMAT entries -- and boots the Debian 6.12
kernel from bookworm-backports.  The machine's root filesystem is shared
read-only over 9p; the command runs in a chroot of it, so it sees this
checkout and its virtualenv.  A second, writable 9p share of a host
temporary directory carries the command in and its output and exit
status out.

Only the Python standard library is used: this runs under
``/usr/bin/python3`` as well as under the project's virtualenv.

Command line::

    python3 tools/sandbox.py fetch
    python3 tools/sandbox.py run [--timeout S] [--cwd DIR] -- CMD ARGS...

The guest's DAMON, NUMA balancing and memory tiers are the guest kernel's
own; nothing here writes to the host's /sys (the root share is read-only
at the QEMU level, and the guest mounts its own sysfs over it).
"""

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import io
import json
import lzma
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time

CACHE_ENV = 'LOKI_SANDBOX_CACHE'
QEMU_ENV = 'LOKI_SANDBOX_QEMU'
CPU_ENV = 'LOKI_SANDBOX_CPU'
BUSYBOX_ENV = 'LOKI_SANDBOX_BUSYBOX'
DEFAULT_CPU = 'max'
DEFAULT_CACHE = os.path.join('~', '.cache', 'loki-nova', 'sandbox')
SUITE = 'bookworm-backports'
KERNEL_SERIES = '6.12'
DEFAULT_MIRROR = 'http://deb.debian.org/debian'
DEFAULT_BUSYBOX = '/bin/busybox'
# The 9p client and its virtio transport; their dependencies come from
# modules.dep.
NINEP_MODULES = ('netfs', '9pnet', '9pnet_virtio', '9p')
ROOT_TAG = 'hostroot'
GUEST_HOSTNAME = 'loki-sandbox'
OUT_TAG = 'lokiout'
# Where the writable share appears inside the chroot.
GUEST_OUT = '/tmp/loki-sandbox'
# Host directories the guest covers with a tmpfs (the root share is
# read-only); host paths below them that the command needs are bound
# back in.
TMPFS_DIRS = ('/run', '/tmp', '/var/tmp', '/dev/shm')
# The largest message the 9p virtio transport takes in 6.12 is just
# under 512 KiB; bigger messages mean fewer round trips under TCG.
NINEP_MSIZE = 512000
# HMAT figures: node0 is DRAM-like, node1 a slower tier (PMem/CXL-like).
HMAT = ((0, '10', '20G'), (1, '80', '5G'))
DEFAULT_TIMEOUT = 600
# Files on the writable share (host side names).
COMMAND_FILE = 'command.sh'
OUTPUT_FILE = 'output.log'
STATUS_FILE = 'status'
TIMES_FILE = 'times'
KEEP_FILE = 'keep'
CONSOLE_FILE = 'console.log'
# Exit statuses of the command line when the sandbox itself failed.
EXIT_SANDBOX_ERROR = 125
EXIT_TIMEOUT = 124

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SandboxError(Exception):
    """The sandbox could not run the command (not: the command failed)."""


class SandboxUnavailable(SandboxError):
    """Something the sandbox needs is missing: QEMU, the kernel, busybox."""


class SandboxTimeout(SandboxError):
    """The guest did not finish in time; QEMU was killed."""


@dataclasses.dataclass
class Result:
    """What a command did in the sandbox.

    ``output`` is its stdout and stderr together; ``elapsed`` the host's
    wall time for the whole boot, run and power-off; ``boot_seconds`` and
    ``command_seconds`` the guest's uptime when the command started and
    how long it ran (None if the guest did not report them).
    """

    returncode: int
    output: str
    elapsed: float = 0.0
    boot_seconds: float = None
    command_seconds: float = None


# ---------------------------------------------------------------- cache --

def resolve_cache_dir(path=None):
    """The cache directory: *path*, $LOKI_SANDBOX_CACHE or the default."""
    path = path or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return os.path.abspath(os.path.expanduser(path))


@contextlib.contextmanager
def _locked(directory):
    """Hold an exclusive lock on *directory* (one fetch/build at a time)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write(path, data):
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'wb') as out:
        out.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------ apt --

def _os_codename(os_release='/etc/os-release'):
    try:
        with open(os_release) as fh:
            for line in fh:
                key, _, value = line.strip().partition('=')
                if key == 'VERSION_CODENAME':
                    return value.strip('"\'')
    except OSError:
        pass
    return 'bookworm'


def _one_line_sources(text):
    """(uri, suites, signed_by) of each 'deb' line of a sources.list."""
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        options = ''
        match = re.match(r'^deb\s+\[([^\]]*)\]\s+(.*)$', line)
        if match:
            options, line = match.group(1), 'deb ' + match.group(2)
        fields = line.split()
        if len(fields) < 3 or fields[0] != 'deb':
            continue
        signed_by = None
        for option in options.split():
            key, _, value = option.partition('=')
            if key == 'signed-by':
                signed_by = value
        yield fields[1], [fields[2]], signed_by


def _deb822_sources(text):
    """(uri, suites, signed_by) of each 'deb' stanza of a .sources file."""
    for stanza in re.split(r'\n\s*\n', text):
        fields = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith('#'):
                continue
            if line[:1] in (' ', '\t') and key:
                fields[key] += '\n' + line.strip()
                continue
            key, sep, value = line.partition(':')
            if not sep:
                key = None
                continue
            key = key.strip().lower()
            fields[key] = value.strip()
        if 'deb' not in fields.get('types', '').split():
            continue
        if fields.get('enabled', 'yes').lower() == 'no':
            continue
        signed_by = fields.get('signed-by') or None
        if signed_by and '\n' in signed_by:
            signed_by = None    # an inline key; the default keyring will do
        for uri in fields.get('uris', '').split():
            yield uri, fields.get('suites', '').split(), signed_by


def find_debian_mirror(sources_list='/etc/apt/sources.list',
                       parts_dir='/etc/apt/sources.list.d',
                       codename=None):
    """The Debian mirror this machine uses: ``(uri, signed_by or None)``.

    The mirror is the first 'deb' source that carries the release itself
    (the suite named by the OS codename, not -security); without one,
    deb.debian.org.
    """
    codename = codename or _os_codename()
    files = [sources_list] + sorted(
        glob.glob(os.path.join(parts_dir, '*.list'))
        + glob.glob(os.path.join(parts_dir, '*.sources')))
    for path in files:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError:
            continue
        parse = _deb822_sources if path.endswith('.sources') else \
            _one_line_sources
        for uri, suites, signed_by in parse(text):
            if codename in suites:
                return uri.rstrip('/'), signed_by
    return DEFAULT_MIRROR, None


def sources_line(mirror, signed_by=None, suite=SUITE):
    """The one line of the private sources.list."""
    options = ' [signed-by=%s]' % signed_by if signed_by else ''
    return 'deb%s %s %s main\n' % (options, mirror, suite)


def apt_options(apt_dir):
    """apt-get/apt-cache options that keep apt's state under *apt_dir*.

    Only the private sources.list is read, and lists, archives and the
    package cache go below *apt_dir*; the machine's apt.conf.d (proxies)
    still applies.  Nothing is installed, so the dpkg status is empty.
    """
    return [
        '-o', 'Dir::Etc::SourceList=%s' % os.path.join(apt_dir,
                                                       'sources.list'),
        '-o', 'Dir::Etc::SourceParts=%s' % os.path.join(apt_dir,
                                                        'sources.list.d'),
        '-o', 'Dir::Etc::Preferences=%s' % os.path.join(apt_dir,
                                                        'preferences'),
        '-o', 'Dir::Etc::PreferencesParts=%s' % os.path.join(
            apt_dir, 'preferences.d'),
        '-o', 'Dir::State=%s' % os.path.join(apt_dir, 'state'),
        '-o', 'Dir::State::Lists=%s' % os.path.join(apt_dir, 'lists'),
        '-o', 'Dir::State::status=%s' % os.path.join(apt_dir, 'status'),
        '-o', 'Dir::Cache=%s' % os.path.join(apt_dir, 'cache'),
        '-o', 'APT::Sandbox::User=root',
        '-o', 'Debug::NoLocking=1',
    ]


def write_apt_config(apt_dir, mirror, signed_by=None):
    """Create the private apt tree below *apt_dir*."""
    for sub in ('sources.list.d', 'preferences.d', 'state',
                'lists/partial', 'cache/archives/partial'):
        os.makedirs(os.path.join(apt_dir, sub), exist_ok=True)
    _atomic_write(os.path.join(apt_dir, 'sources.list'),
                  sources_line(mirror, signed_by).encode())
    for name in ('status', 'preferences'):
        path = os.path.join(apt_dir, name)
        if not os.path.exists(path):
            open(path, 'w').close()


_KERNEL_PACKAGE = re.compile(
    r'^linux-image-(%s\.(\d+))\+deb(\d+)(?:\.(\d+))?-amd64$'
    % re.escape(KERNEL_SERIES))


def pick_kernel_package(names):
    """The newest generic amd64 6.12 image among package *names*.

    Skips the cloud and rt flavours, the -dbg symbols and the -unsigned
    twin of the signed image (same kernel).  None if there is none.
    """
    best = None
    for name in names:
        match = _KERNEL_PACKAGE.match(name.strip())
        if not match:
            continue
        key = (int(match.group(2)), int(match.group(3)),
               int(match.group(4) or 0))
        if best is None or key > best[0]:
            best = (key, name.strip())
    return best[1] if best else None


# Set by the command line: say what a long step is doing on stderr.
PROGRESS = False


def _progress(message):
    if PROGRESS:
        print('sandbox: %s' % message, file=sys.stderr, flush=True)


def _run_tool(argv, what, cwd=None, show=False):
    """Run a tool and return its stdout; ``show`` lets its own progress
    reach stderr when the command line asked for progress."""
    shown = show and PROGRESS
    try:
        done = subprocess.run(argv, cwd=cwd, text=True,
                              stdout=sys.stderr if shown else subprocess.PIPE,
                              stderr=None if shown else subprocess.PIPE,
                              env=dict(os.environ, LC_ALL='C'))
    except FileNotFoundError:
        raise SandboxUnavailable('%s: %s is not installed' % (what, argv[0]))
    if done.returncode != 0:
        raise SandboxError('%s failed (%s, exit %d):\n%s' % (
            what, shlex.join(argv[:1] + argv[-2:]), done.returncode,
            (done.stderr or done.stdout or '(its output is above)')[-3000:]))
    return done.stdout


def _read_record(cache, name):
    """The JSON record *name* in the cache, or None if absent or bad."""
    try:
        with open(os.path.join(cache, name)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _kernel_record(cache):
    """The fetched kernel's (vmlinuz, modules_root), or None."""
    record = _read_record(cache, 'kernel.json')
    if record is None:
        return None
    vmlinuz = os.path.join(cache, record['vmlinuz'])
    modules_root = os.path.join(cache, record['modules_root'])
    if os.path.isfile(vmlinuz) and os.path.isdir(
            os.path.join(modules_root, 'kernel')):
        return vmlinuz, modules_root
    return None


def ensure_kernel(cache_dir=None):
    """Fetch the sandbox kernel once; ``(vmlinuz_path, modules_root)``.

    A fast no-op when the cache has it.  Otherwise: a private apt config
    naming only bookworm-backports of this machine's mirror, ``apt-get
    update`` and ``apt-get download`` of the newest 6.12 amd64 image, and
    ``dpkg -x`` into the cache.  The kernel is never installed.
    """
    return _fetch_once(cache_dir, _kernel_record, _fetch_kernel)


def _fetch_once(cache_dir, record, fetch):
    """``record(cache)`` if the cache has it, else ``fetch(cache)`` under
    the cache's lock (unless another process fetched it meanwhile)."""
    cache = resolve_cache_dir(cache_dir)
    found = record(cache)
    if found:
        return found
    with _locked(cache):
        found = record(cache)
        if found:
            return found
        return fetch(cache)


def _private_apt(cache, what):
    """apt options for the cache's private bookworm-backports tree, its
    package lists brought up to date."""
    apt_dir = os.path.join(cache, 'apt')
    mirror, signed_by = find_debian_mirror()
    write_apt_config(apt_dir, mirror, signed_by)
    options = apt_options(apt_dir)
    _progress('fetching %s once into %s: the package lists of %s %s'
              % (what, cache, mirror, SUITE))
    _run_tool(['apt-get', '-q'] + options + ['update'],
              'apt-get update of %s %s' % (mirror, SUITE))
    return options


def _fetch_kernel(cache):
    options = _private_apt(cache, 'the sandbox kernel')
    names = _run_tool(['apt-cache'] + options +
                      ['pkgnames', 'linux-image-%s.' % KERNEL_SERIES],
                      'apt-cache pkgnames').split()
    package = pick_kernel_package(names)
    if not package:
        raise SandboxUnavailable(
            'no linux-image-%s.*-amd64 package in %s of %s' % (
                KERNEL_SERIES, SUITE, find_debian_mirror()[0]))
    download = tempfile.mkdtemp(prefix='download-', dir=cache)
    try:
        _progress('downloading %s (about 110 MB)' % package)
        started = time.monotonic()
        # No -q: on a terminal apt shows its download progress (it goes
        # quiet by itself when its output is not a terminal).
        _run_tool(['apt-get'] + options + ['download', package],
                  'apt-get download %s' % package, cwd=download, show=True)
        _progress('downloaded in %.0f s; unpacking' % (
            time.monotonic() - started))
        [deb] = glob.glob(os.path.join(download, '*.deb'))
        tree = os.path.join(download, 'tree')
        _run_tool(['dpkg', '-x', deb, tree], 'dpkg -x %s' % deb)
        release = package[len('linux-image-'):]
        vmlinuz = os.path.join('boot', 'vmlinuz-' + release)
        modules = None
        for candidate in ('lib/modules', 'usr/lib/modules'):
            if os.path.isdir(os.path.join(tree, candidate, release)):
                modules = os.path.join(candidate, release)
        if not os.path.isfile(os.path.join(tree, vmlinuz)) or not modules:
            raise SandboxError('%s has no %s or modules/%s' % (
                os.path.basename(deb), vmlinuz, release))
        final = os.path.join(cache, 'kernel-' + release)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tree, final)
        relative = os.path.basename(final)
        _atomic_write(os.path.join(cache, 'kernel.json'), json.dumps({
            'package': package,
            'deb': os.path.basename(deb),
            'release': release,
            'vmlinuz': os.path.join(relative, vmlinuz),
            'modules_root': os.path.join(relative, modules),
        }, indent=1).encode())
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return _kernel_record(cache)


# ---------------------------------------------------------- nested virt --

#: libvirt and QEMU for guests nested in the sandbox (bookworm-backports:
#: libvirt 11.3, QEMU 10.0).  Bookworm's own QEMU 7.2, nested in the
#: sandbox's TCG, let its guests' kernels panic in early boot whenever two
#: of them ran beside other busy processes, and libvirt 9.0 does not take
#: QEMU 10 as an emulator (tests/nova/nested_boot_probe.py).  They are
#: unpacked into the cache, never installed; inside the sandbox
#: ``nested_virt_binds`` says what to bind over the machine's files.
NESTED_VIRT_PACKAGES = (
    'libvirt0', 'libvirt-common', 'libvirt-daemon', 'libvirt-daemon-common',
    'libvirt-daemon-log', 'libvirt-daemon-lock',
    'libvirt-daemon-plugin-lockd', 'libvirt-daemon-driver-qemu',
    'libvirt-daemon-driver-nodedev', 'libvirt-daemon-driver-network',
    'libvirt-daemon-driver-storage', 'libvirt-daemon-driver-secret',
    'libvirt-daemon-driver-nwfilter', 'libvirt-daemon-driver-interface',
    'qemu-system-x86', 'qemu-system-common', 'qemu-system-data', 'seabios')
#: Set in the guest's environment to the unpacked tree when a run asks
#: for it (``run(nested_virt=True)``).
NESTED_VIRT_ENV = 'LOKI_SANDBOX_NESTED_VIRT'
_LIBDIR = 'usr/lib/x86_64-linux-gnu'
#: Directories of the tree that replace the machine's whole.
NESTED_VIRT_DIRS = (_LIBDIR + '/libvirt', _LIBDIR + '/qemu',
                    'usr/share/libvirt', 'usr/share/qemu', 'usr/share/seabios')
#: Files of the tree that replace the machine's.
NESTED_VIRT_FILES = ('usr/sbin/libvirtd', 'usr/sbin/virtlogd',
                     'usr/sbin/virtlockd', 'usr/lib/libvirt/libvirt_iohelper',
                     'usr/bin/qemu-system-x86_64')
#: Shared libraries, by soname: the tree's file goes over the file the
#: machine's soname link points to.
NESTED_VIRT_LIBS = ('libvirt.so.0', 'libvirt-qemu.so.0', 'libvirt-admin.so.0',
                    'libvirt-lxc.so.0')


def _nested_virt_record(cache):
    """The unpacked tree of NESTED_VIRT_PACKAGES, or None."""
    record = _read_record(cache, 'nested-virt.json')
    if record is None:
        return None
    tree = os.path.join(cache, record['tree'])
    if sorted(record.get('packages', ())) != sorted(NESTED_VIRT_PACKAGES):
        return None
    if all(os.path.exists(os.path.join(tree, path))
           for path in NESTED_VIRT_FILES):
        return tree
    return None


def ensure_nested_virt(cache_dir=None):
    """Fetch NESTED_VIRT_PACKAGES once; the directory they are unpacked in.

    Like ensure_kernel: ``apt-get download`` from bookworm-backports with
    the private apt config, ``dpkg -x`` into the cache; nothing is
    installed on this machine.
    """
    return _fetch_once(cache_dir, _nested_virt_record, _fetch_nested_virt)


def _fetch_nested_virt(cache):
    options = _private_apt(cache, 'libvirt and QEMU for nested guests')
    download = tempfile.mkdtemp(prefix='download-', dir=cache)
    try:
        _progress('downloading %d packages (about 20 MB)'
                  % len(NESTED_VIRT_PACKAGES))
        _run_tool(['apt-get', '-q'] + options + ['download'] +
                  list(NESTED_VIRT_PACKAGES),
                  'apt-get download of libvirt and QEMU', cwd=download)
        debs = sorted(glob.glob(os.path.join(download, '*.deb')))
        tree = os.path.join(download, 'tree')
        for deb in debs:
            _run_tool(['dpkg', '-x', deb, tree], 'dpkg -x %s' % deb)
        missing = [path for path in NESTED_VIRT_FILES
                   if not os.path.exists(os.path.join(tree, path))]
        if missing:
            raise SandboxError('the packages %s have no %s' % (
                ', '.join(NESTED_VIRT_PACKAGES), ', '.join(missing)))
        final = os.path.join(cache, 'nested-virt')
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tree, final)
        _atomic_write(os.path.join(cache, 'nested-virt.json'), json.dumps({
            'tree': os.path.basename(final),
            'packages': list(NESTED_VIRT_PACKAGES),
            'debs': [os.path.basename(deb) for deb in debs],
        }, indent=1).encode())
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return _nested_virt_record(cache)


def nested_virt_binds(tree, root='/'):
    """``[(source, target)]``: what of *tree* (ensure_nested_virt's) to
    bind over what of the filesystem at *root*, so that ``libvirtd``,
    ``virtlogd`` and ``qemu-system-x86_64`` at their usual paths are the
    tree's, with their libraries, drivers and firmware.  Only inside the
    sandbox guest, whose mounts are its own."""
    binds = []
    for path in NESTED_VIRT_DIRS + NESTED_VIRT_FILES:
        source = os.path.join(tree, path)
        target = os.path.join(root, path)
        if os.path.exists(source) and os.path.exists(target):
            binds.append((source, target))
        elif os.path.exists(source):
            raise SandboxError('%s has no %s to bind %s over; install '
                               'libvirt-daemon-system and qemu-system-x86'
                               % (root, target, source))
    for soname in NESTED_VIRT_LIBS:
        source = os.path.join(tree, _LIBDIR, soname)
        target = os.path.join(root, _LIBDIR, soname)
        if os.path.exists(source) and os.path.exists(target):
            binds.append((os.path.realpath(source), os.path.realpath(target)))
    return binds


# ------------------------------------------------------------ initramfs --

def modinfo(data):
    """The .modinfo key=value strings of a kernel module (ELF bytes)."""
    if data[:4] != b'\x7fELF' or data[4] != 2:
        raise SandboxError('not a 64-bit ELF kernel module')
    endian = '<' if data[5] == 1 else '>'
    shoff, = struct.unpack_from(endian + 'Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(endian + 'HHH', data,
                                                    0x3a)

    def section(index):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size
        fields = struct.unpack_from(endian + 'IIQQQQ', data,
                                    shoff + index * shentsize)
        return fields[0], fields[4], fields[5]

    _, names_offset, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        end = data.index(b'\0', names_offset + name)
        if data[names_offset + name:end] == b'.modinfo':
            return [item.decode('utf-8', 'replace')
                    for item in data[offset:offset + size].split(b'\0')
                    if item]
    return []


def _module_key(path):
    return os.path.basename(path).split('.ko')[0].replace('-', '_')


def _module_deps(modules_root):
    """Module path -> the paths it depends on, or None to read modinfo.

    Debian's image packages ship no modules.dep (depmod runs at install
    time, and we do not install); a tree that has one is used as is.
    """
    try:
        with open(os.path.join(modules_root, 'modules.dep')) as fh:
            return {target.strip(): rest.split() for target, _, rest in
                    (line.partition(':') for line in fh)}
    except OSError:
        return None


def module_load_order(modules_root, names=NINEP_MODULES):
    """Relative module paths to load for *names*, dependencies first.

    Dependencies come from modules.dep if the tree has one, else from
    each module's own .modinfo ``depends=``.  Built-in modules
    (modules.builtin) need no loading and are left out.
    """
    deps = _module_deps(modules_root)
    if deps is not None:
        paths = list(deps)
    else:
        paths = []
        for top, _, files in os.walk(os.path.join(modules_root, 'kernel')):
            paths += [os.path.relpath(os.path.join(top, name), modules_root)
                      for name in files if '.ko' in name]
    by_name = {_module_key(path): path for path in paths}
    builtin = set()
    with contextlib.suppress(OSError):
        with open(os.path.join(modules_root, 'modules.builtin')) as fh:
            builtin = {_module_key(line.strip()) for line in fh}
    order = []

    def depends_of(path):
        if deps is not None:
            return deps.get(path, [])
        found = []
        for item in modinfo(_read_module(os.path.join(modules_root,
                                                      path))):
            key, _, value = item.partition('=')
            if key == 'depends':
                found += [by_name[_module_key(name)]
                          for name in value.split(',')
                          if name and _module_key(name) in by_name]
        return found

    def visit(path, chain):
        if path in order:
            return
        if path in chain:
            raise SandboxError('module dependency loop: %s' % ' -> '.join(
                chain + [path]))
        for dep in depends_of(path):
            visit(dep, chain + [path])
        order.append(path)

    for name in names:
        key = _module_key(name)
        if key in by_name:
            visit(by_name[key], [])
        elif key not in builtin:
            raise SandboxUnavailable('module %s is neither in %s nor built '
                                     'in' % (name, modules_root))
    return order


def init_script(modules=()):
    """The guest's /init (busybox sh): mounts, the chroot, power-off.

    *modules* are the .ko file names under /lib/modules in the initramfs,
    in load order.  The command is ``command.sh`` on the writable share;
    its combined output goes to ``output.log`` there, its exit status to
    ``status`` and the guest's uptime before and after it to ``times``.
    ``keep`` there lists host paths under the tmpfs-covered directories
    to keep visible (bound back over the tmpfs, read-only).
    """
    mounts = '\n'.join(
        'keep_and_cover %s' % shlex.quote(path) for path in TMPFS_DIRS)
    return INIT_TEMPLATE % {
        'modules': ' '.join(shlex.quote(m) for m in modules),
        'root_tag': ROOT_TAG,
        'out_tag': OUT_TAG,
        'msize': NINEP_MSIZE,
        'out': GUEST_OUT,
        'tmpfs_mounts': mounts,
        'command': COMMAND_FILE,
        'output': OUTPUT_FILE,
        'status': STATUS_FILE,
        'times': TIMES_FILE,
        'keep': KEEP_FILE,
        'hostname': GUEST_HOSTNAME,
    }


INIT_TEMPLATE = r'''#!/bin/busybox sh
# /init of the loki-nova sandbox guest, generated by tools/sandbox.py.
/bin/busybox --install -s /bin
export PATH=/bin
R=/newroot
OUT=/out
KEEP=/keep

say() { echo "loki-sandbox: $*"; }
die() {
    say "FATAL: $*"
    [ -n "$OUT_MOUNTED" ] && echo "loki-sandbox: $*" > "$OUT/%(output)s"
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say "init started at $(cut -d' ' -f1 /proc/uptime)s"
for m in %(modules)s; do
    insmod "/lib/modules/$m" || die "insmod $m failed"
done

# The writable share first: it holds the command and the paths to keep.
mkdir -p $OUT
mount -t 9p -o trans=virtio,version=9p2000.L,msize=%(msize)s,cache=none \
    %(out_tag)s $OUT || die "cannot mount the output share (9p %(out_tag)s)"
OUT_MOUNTED=1
cp $OUT/%(keep)s $KEEP 2>/dev/null || : > $KEEP

mkdir -p $R
mount -t 9p -o trans=virtio,version=9p2000.L,msize=%(msize)s,cache=loose,ro \
    %(root_tag)s $R || die "cannot mount the host root (9p tag %(root_tag)s)"
mount -t proc proc $R/proc || die "mount proc"
mount -t sysfs sysfs $R/sys || die "mount sysfs"
mount -t devtmpfs devtmpfs $R/dev || die "mount devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
[ -d $R/sys/kernel/tracing ] && mount -t tracefs tracefs $R/sys/kernel/tracing
[ -d $R/sys/kernel/debug ] && mount -t debugfs debugfs $R/sys/kernel/debug

# Writable tmpfs over host directories; host paths below them that the
# command needs (listed in the share's keep, e.g. a checkout in /tmp) are
# bound back.
keep_and_cover() {
    dir=$1
    n=0
    for path in $(cat $KEEP); do
        case "$path" in
        "$dir"/*)
            n=$((n + 1))
            mkdir -p "/kept$dir/$n"
            mount -o bind "$R$path" "/kept$dir/$n" || die "bind $path"
            ;;
        esac
    done
    mount -t tmpfs -o mode=1777,size=50%% tmpfs "$R$dir" || die "tmpfs $dir"
    n=0
    for path in $(cat $KEEP); do
        case "$path" in
        "$dir"/*)
            n=$((n + 1))
            mkdir -p "$R$path"
            mount --move "/kept$dir/$n" "$R$path" || die "move $path"
            ;;
        esac
    done
}
%(tmpfs_mounts)s

mkdir -p $R%(out)s
mount --move $OUT $R%(out)s || die "cannot move the output share"
OUT=$R%(out)s

# The kernel's own tiering stays off unless a test turns it on.
echo 0 > /proc/sys/kernel/numa_balancing
[ -e /sys/kernel/mm/numa/demotion_enabled ] && \
    echo false > /sys/kernel/mm/numa/demotion_enabled
ip link set lo up 2>/dev/null
# A host name (the kernel's default, "(none)", is not one): Nova and
# oslo.config take the machine's as their default host.
hostname %(hostname)s

started=$(cut -d' ' -f1 /proc/uptime)
say "command started at ${started}s"
env -i chroot $R /bin/sh %(out)s/%(command)s \
    < /dev/null > $OUT/%(output)s 2>&1
status=$?
finished=$(cut -d' ' -f1 /proc/uptime)
echo "$started $finished" > $OUT/%(times)s
echo $status > $OUT/%(status)s
say "command exited with status $status at ${finished}s"
sync
poweroff -f
'''


def _cpio_entry(name, mode, data=b'', rdev=(0, 0), ino=1, mtime=0):
    """One cpio 'newc' record."""
    name = name.encode() + b'\0'
    header = b'070701' + b''.join(b'%08X' % value for value in (
        ino, mode, 0, 0, 1, mtime, len(data), 0, 0, rdev[0], rdev[1],
        len(name), 0))
    record = header + name
    record += b'\0' * (-len(record) % 4)
    record += data + b'\0' * (-len(data) % 4)
    return record


def cpio_archive(entries):
    """A cpio 'newc' archive of *entries*: ``(name, mode, data, rdev)``.

    Parent directories must come before their contents.
    """
    out = io.BytesIO()
    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        out.write(_cpio_entry(name, mode, data, rdev, ino=ino))
    out.write(_cpio_entry('TRAILER!!!', 0, ino=0))
    return out.getvalue()


def _read_module(path):
    with open(path, 'rb') as fh:
        data = fh.read()
    if path.endswith('.xz'):
        data = lzma.decompress(data)
    elif path.endswith('.zst'):
        raise SandboxUnavailable('%s is zstd-compressed; only .ko and .ko.xz'
                                 ' are supported' % path)
    return data


def initramfs_entries(modules_root, busybox=DEFAULT_BUSYBOX):
    """The initramfs's cpio entries (see cpio_archive)."""
    directory = stat.S_IFDIR | 0o755
    entries = [(name, directory, b'', (0, 0)) for name in (
        'bin', 'dev', 'lib', 'lib/modules', 'proc', 'sys', 'newroot',
        'kept')]
    entries.append(('dev/console', stat.S_IFCHR | 0o600, b'', (5, 1)))
    try:
        with open(busybox, 'rb') as fh:
            entries.append(('bin/busybox', stat.S_IFREG | 0o755, fh.read(),
                            (0, 0)))
    except OSError as error:
        raise SandboxUnavailable('busybox: %s (install busybox-static)'
                                 % error)
    names = []
    for relative in module_load_order(modules_root):
        name = os.path.basename(relative).split('.ko')[0] + '.ko'
        names.append(name)
        entries.append(('lib/modules/' + name, stat.S_IFREG | 0o644,
                        _read_module(os.path.join(modules_root, relative)),
                        (0, 0)))
    entries.append(('init', stat.S_IFREG | 0o755,
                    init_script(names).encode(), (0, 0)))
    return entries


def build_initramfs(out_path, modules_root, busybox=DEFAULT_BUSYBOX):
    """Write the busybox initramfs (cpio newc, uncompressed) to *out_path*.

    It holds /init (init_script), a static busybox, the 9p modules and
    what they depend on (decompressed) and /dev/console.
    """
    data = cpio_archive(initramfs_entries(modules_root, busybox))
    _atomic_write(out_path, data)
    return out_path


def _keep_paths(paths):
    """The host paths in *paths* that lie under a tmpfs-covered dir."""
    kept = []
    for path in paths:
        real = os.path.realpath(path)
        if any(real.startswith(d + '/') for d in TMPFS_DIRS) and \
                real not in kept:
            kept.append(real)
    for path in kept:
        if re.search(r'\s', path):
            raise SandboxError('cannot keep a path with spaces visible in '
                               'the guest: %r' % path)
    return kept


def ensure_initramfs(cache_dir=None, modules_root=None, busybox=None):
    """The cached initramfs for this kernel, init script and busybox.

    Keyed by a hash of what goes in, so it is rebuilt when any of them
    changes.
    """
    cache = resolve_cache_dir(cache_dir)
    busybox = busybox or os.environ.get(BUSYBOX_ENV) or DEFAULT_BUSYBOX
    if modules_root is None:
        modules_root = ensure_kernel(cache)[1]
    digest = hashlib.sha256()
    digest.update(init_script().encode())
    digest.update(os.path.realpath(modules_root).encode())
    try:
        with open(busybox, 'rb') as fh:
            digest.update(hashlib.sha256(fh.read()).digest())
    except OSError as error:
        raise SandboxUnavailable('busybox: %s (install busybox-static)'
                                 % error)
    for relative in module_load_order(modules_root):
        with open(os.path.join(modules_root, relative), 'rb') as fh:
            digest.update(hashlib.sha256(fh.read()).digest())
    path = os.path.join(cache, 'initramfs-%s.cpio' % digest.hexdigest()[:20])
    if not os.path.isfile(path):
        with _locked(cache):
            if not os.path.isfile(path):
                _progress('building the initramfs (busybox and the '
                          'kernel modules the sandbox loads)')
                build_initramfs(path, modules_root, busybox)
                _prune_initramfs(cache, path)
    with contextlib.suppress(OSError):
        os.utime(path)      # in use: see _prune_initramfs
    return path


def _prune_initramfs(cache, keep, unused_days=2):
    """Remove other initramfs images no run has used for a while.

    Another checkout sharing the cache may still use an older one, so
    only those untouched for *unused_days* go.
    """
    limit = time.time() - unused_days * 86400
    for old in glob.glob(os.path.join(cache, 'initramfs-*.cpio')):
        with contextlib.suppress(OSError):
            if old != keep and os.stat(old).st_mtime < limit:
                os.unlink(old)


# ----------------------------------------------------------------- qemu --

def qemu_binary():
    """The qemu-system-x86_64 to use ($LOKI_SANDBOX_QEMU or PATH)."""
    name = os.environ.get(QEMU_ENV) or 'qemu-system-x86_64'
    found = shutil.which(name)
    if not found:
        raise SandboxUnavailable(
            '%s not found; install qemu-system-x86 (tools/setup-env.sh)'
            % name)
    return found


def kernel_append(extra=''):
    """The guest kernel's command line."""
    # pti=on: under TCG, DAMON vaddr sees re-accesses only with page-table
    # isolation (the software TLB otherwise hides them).
    # numa_balancing=disable: the kernel's own tiering would move pages
    # behind the tests' backs.
    args = ['console=ttyS0', 'panic=-1', 'pti=on',
            'numa_balancing=disable', 'loglevel=4', 'rdinit=/init']
    if extra:
        args.append(extra)
    return ' '.join(args)


def qemu_command(*, kernel, initrd, out_dir, console_log,
                 node_mib=(1024, 1024), cpus=1, extra_append='',
                 qemu='qemu-system-x86_64', root='/'):
    """The QEMU argv for a two-node guest (node1 memory-only, slower)."""
    if len(node_mib) != 2 or min(node_mib) <= 0:
        raise ValueError('node_mib must be two positive sizes in MiB')
    if cpus < 1:
        raise ValueError('cpus must be at least 1')
    accel = 'tcg,thread=multi' if cpus > 1 else 'tcg'
    argv = [
        qemu, '-nodefaults', '-no-user-config', '-display', 'none',
        '-no-reboot', '-accel', accel,
        '-cpu', os.environ.get(CPU_ENV) or DEFAULT_CPU,
        '-machine', 'pc,hmat=on', '-smp', str(cpus),
        '-m', '%dM' % sum(node_mib),
    ]
    for node, size in enumerate(node_mib):
        argv += ['-object',
                 'memory-backend-ram,id=m%d,size=%dM' % (node, size)]
    argv += ['-numa', 'node,nodeid=0,cpus=0-%d,memdev=m0,initiator=0'
             % (cpus - 1),
             '-numa', 'node,nodeid=1,memdev=m1,initiator=0']
    for target, latency, bandwidth in HMAT:
        common = 'hmat-lb,initiator=0,target=%d,hierarchy=memory' % target
        argv += ['-numa', common + ',data-type=access-latency,latency=%s'
                 % latency,
                 '-numa', common + ',data-type=access-bandwidth,bandwidth=%s'
                 % bandwidth]
    argv += [
        '-virtfs', 'local,path=%s,mount_tag=%s,security_model=none,'
        'readonly=on,multidevs=remap' % (root, ROOT_TAG),
        '-virtfs', 'local,path=%s,mount_tag=%s,security_model=none,'
        'multidevs=remap' % (out_dir, OUT_TAG),
        '-serial', 'file:%s' % console_log,
        '-kernel', kernel, '-initrd', initrd,
        '-append', kernel_append(extra_append),
    ]
    return argv


def command_script(command, cwd, env):
    """command.sh: set the environment, enter *cwd*, exec *command*.

    *command* is an argv list, or a string run by ``/bin/sh -c``.
    """
    if isinstance(command, str):
        command = ['/bin/sh', '-c', command]
    if not command:
        raise ValueError('empty command')
    lines = ['# generated by tools/sandbox.py']
    for key, value in env.items():
        if not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', key):
            raise ValueError('bad environment variable name %r' % key)
        lines.append('export %s=%s' % (key, shlex.quote(str(value))))
    lines.append('cd %s || { echo "loki-sandbox: cannot enter %s"; '
                 'exit 125; }' % (shlex.quote(cwd), cwd.replace('"', '')))
    lines.append('exec %s' % shlex.join(str(arg) for arg in command))
    return '\n'.join(lines) + '\n'


def guest_env(env=None):
    """The command's environment in the guest."""
    base = {
        'PATH': os.environ.get('PATH') or
        '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'HOME': '/tmp',
        'TMPDIR': '/tmp',
        'LANG': 'C.UTF-8',
        'PYTHONDONTWRITEBYTECODE': '1',
        'LOKI_SANDBOX': '1',
        'LOKI_SANDBOX_OUT': GUEST_OUT,
        'LOKI_SANDBOX_REPO': REPO_ROOT,
    }
    base.update(env or {})
    return base


def _tail(path, limit=4000):
    try:
        with open(path, 'rb') as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode('utf-8', 'replace')
    except OSError:
        return '(no console output: %s missing)' % path


def _read_text(path):
    with open(path, 'rb') as fh:
        return fh.read().decode('utf-8', 'replace')


def run(command, *, cwd=None, env=None, timeout=DEFAULT_TIMEOUT,
        node_mib=(1024, 1024), cpus=1, extra_append='', out_dir=None,
        stream=None, cache_dir=None, keep=(), nested_virt=False):
    """Boot the sandbox, run *command* in it, power off; a Result.

    *command* is an argv list (or a shell string).  *cwd* defaults to
    this process's; *env* adds to or overrides the guest environment
    (guest_env).  *node_mib* sizes node0 and node1; *cpus* vCPUs all sit
    on node0.  *out_dir*, if given, is used as the writable share (the
    command sees it as $LOKI_SANDBOX_OUT) and left in place; otherwise
    a temporary directory is.  *stream*, a binary file, gets the output
    as it arrives.  *keep* names more host paths the command needs that
    lie in /tmp, /var/tmp, /run or /dev/shm, which the guest covers with
    tmpfs (*cwd* and this checkout are kept anyway).  *nested_virt*:
    fetch libvirt and QEMU for nested guests (ensure_nested_virt) and
    name their tree in the guest's $LOKI_SANDBOX_NESTED_VIRT.

    Raises SandboxUnavailable if QEMU, the kernel or busybox is missing,
    SandboxTimeout after *timeout* seconds (QEMU killed) and SandboxError
    if the guest ended without reporting a status (e.g. a kernel panic)
    -- each with the console's tail.
    """
    started = time.monotonic()
    cwd = os.path.abspath(cwd or os.getcwd())
    qemu = qemu_binary()
    vmlinuz, modules_root = ensure_kernel(cache_dir)
    initrd = ensure_initramfs(cache_dir, modules_root)
    # The guest finds the kernel and modules where the host keeps them
    # (a test may boot nested guests with the same kernel).
    cache = resolve_cache_dir(cache_dir)
    env = {CACHE_ENV: cache, **(env or {})}
    if nested_virt:
        env[NESTED_VIRT_ENV] = ensure_nested_virt(cache)
    kept = _keep_paths([cwd, REPO_ROOT, cache, *keep])
    with contextlib.ExitStack() as stack:
        if out_dir is None:
            out_dir = stack.enter_context(
                tempfile.TemporaryDirectory(prefix='loki-sandbox-'))
        out_dir = os.path.abspath(out_dir)
        for name in (OUTPUT_FILE, STATUS_FILE, TIMES_FILE, CONSOLE_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out_dir, name))
        with open(os.path.join(out_dir, COMMAND_FILE), 'w') as fh:
            fh.write(command_script(command, cwd, guest_env(env)))
        with open(os.path.join(out_dir, KEEP_FILE), 'w') as fh:
            fh.write(''.join(path + '\n' for path in kept))
        console = os.path.join(out_dir, CONSOLE_FILE)
        argv = qemu_command(kernel=vmlinuz, initrd=initrd, out_dir=out_dir,
                            console_log=console, node_mib=node_mib,
                            cpus=cpus, extra_append=extra_append, qemu=qemu)
        _boot(argv, timeout, out_dir, stream)
        status_path = os.path.join(out_dir, STATUS_FILE)
        output_path = os.path.join(out_dir, OUTPUT_FILE)
        try:
            status = int(_read_text(status_path).strip())
        except (OSError, ValueError):
            detail = ''
            if os.path.exists(output_path):
                detail = '\n--- command output (tail) ---\n' + \
                    _read_text(output_path)[-2000:]
            raise SandboxError(
                'the sandbox guest ended without reporting an exit status '
                '(kernel panic or /init failure?)%s\n--- console (tail) '
                '---\n%s' % (detail, _tail(console)))
        result = Result(status, _read_text(output_path),
                        elapsed=time.monotonic() - started)
        with contextlib.suppress(OSError, ValueError):
            begin, end = map(float, _read_text(
                os.path.join(out_dir, TIMES_FILE)).split())
            result.boot_seconds = begin
            result.command_seconds = end - begin
        return result


def _boot(argv, timeout, out_dir, stream):
    """Run QEMU to completion, copying new output to *stream* meanwhile."""
    console = os.path.join(out_dir, CONSOLE_FILE)
    output_path = os.path.join(out_dir, OUTPUT_FILE)
    with open(os.path.join(out_dir, 'qemu.log'), 'wb') as qemu_log:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=qemu_log, stderr=subprocess.STDOUT)
        except OSError as error:
            raise SandboxUnavailable('cannot start %s: %s' % (argv[0], error))
    deadline = time.monotonic() + timeout
    copied = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(argv, timeout)
            try:
                proc.wait(timeout=min(remaining, 0.5 if stream else 5))
                break
            except subprocess.TimeoutExpired:
                if stream is not None:
                    copied = _copy_new(output_path, copied, stream)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SandboxTimeout(
            'the sandbox guest did not finish within %gs; QEMU (pid %d) '
            'killed\n--- command output (tail) ---\n%s\n--- console '
            '(tail) ---\n%s' % (timeout, proc.pid,
                                _tail(output_path, 2000), _tail(console)))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if stream is not None:
        _copy_new(output_path, copied, stream)
    if proc.returncode != 0:
        raise SandboxError('QEMU exited with status %d:\n%s\n--- console '
                           '(tail) ---\n%s' % (
                               proc.returncode,
                               _tail(os.path.join(out_dir, 'qemu.log')),
                               _tail(console)))


def _copy_new(path, offset, stream):
    try:
        with open(path, 'rb') as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return offset
    if data:
        stream.write(data)
        stream.flush()
    return offset + len(data)


# ------------------------------------------------------------------ CLI --

def _parse_env(values):
    env = {}
    for item in values:
        key, sep, value = item.partition('=')
        if not sep:
            raise argparse.ArgumentTypeError('--env wants KEY=VALUE')
        env[key] = value
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='sandbox.py', description=__doc__.split('\n\n')[0])
    parser.add_argument('--cache', help='cache directory (default $%s or %s)'
                        % (CACHE_ENV, DEFAULT_CACHE))
    sub = parser.add_subparsers(dest='verb', required=True)
    fetcher = sub.add_parser('fetch', help='download the kernel and build '
                             'the initramfs (once; later a no-op)')
    fetcher.add_argument('--nested-virt', action='store_true',
                         help='also libvirt and QEMU for nested guests')
    runner = sub.add_parser('run', help='run a command in the sandbox')
    runner.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT)
    runner.add_argument('--cwd', help='directory to run in (default: the '
                        'current one)')
    runner.add_argument('--env', action='append', default=[],
                        metavar='KEY=VALUE', help='extra environment')
    runner.add_argument('--cpus', type=int, default=1,
                        help='vCPUs, all on node0 (default 1: under TCG on '
                        'a 2-core host, 2 vCPUs ran Python slower)')
    runner.add_argument('--node-mib', type=int, nargs=2, default=[1024, 1024],
                        metavar=('NODE0', 'NODE1'))
    runner.add_argument('--append', default='',
                        help='extra guest kernel arguments')
    runner.add_argument('--out-dir',
                        help='host directory to use as the writable share '
                        '($LOKI_SANDBOX_OUT in the guest), left in place '
                        'with what the command wrote there (default: a '
                        'temporary directory, removed)')
    runner.add_argument('--nested-virt', action='store_true',
                        help='run nested guests with libvirt and QEMU from '
                        'bookworm-backports (bound over the machine\'s by '
                        'tests/libvirt_rig.prepare_sandbox)')
    runner.add_argument('command', nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    global PROGRESS
    PROGRESS = True
    try:
        if args.verb == 'fetch':
            vmlinuz, modules_root = ensure_kernel(args.cache)
            initrd = ensure_initramfs(args.cache, modules_root)
            print('sandbox kernel: %s\nmodules: %s\ninitramfs: %s' % (
                vmlinuz, modules_root, initrd))
            if args.nested_virt:
                print('nested libvirt and QEMU: %s'
                      % ensure_nested_virt(args.cache))
            return 0
        command = args.command
        if command[:1] == ['--']:
            command = command[1:]
        if not command:
            parser.error('run needs a command after --')
        result = run(command, cwd=args.cwd, env=_parse_env(args.env),
                     timeout=args.timeout, node_mib=tuple(args.node_mib),
                     cpus=args.cpus, extra_append=args.append,
                     out_dir=args.out_dir, stream=sys.stdout.buffer,
                     cache_dir=args.cache, nested_virt=args.nested_virt)
        print('sandbox: exit %d after %.1fs (guest booted in %.1fs, command '
              'ran %.1fs)' % (result.returncode, result.elapsed,
                              result.boot_seconds or 0,
                              result.command_seconds or 0), file=sys.stderr)
        return result.returncode
    except SandboxTimeout as error:
        print('sandbox: %s' % error, file=sys.stderr)
        return EXIT_TIMEOUT
    except SandboxError as error:
        print('sandbox: %s' % error, file=sys.stderr)
        return EXIT_SANDBOX_ERROR


if __name__ == '__main__':
    sys.exit(main())

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

"""The sandbox rig itself (tools/sandbox.py, tests/sandbox_plugin.py).

Three kinds of tests:

* ``sandbox``-marked smoke tests that run inside the guest and prove the
  machine it gives: two NUMA nodes (node1 memory-only), two memory tiers
  from HMAT, the 6.12 kernel with ``pti=on``, NUMA balancing off, a
  read-only root, memory that can be placed on node1;
* unit tests of the runner's pieces on the host, without booting (a
  stand-in QEMU script where a run is needed);
* one host test that boots a guest to run a failing command.
"""

import ctypes
import errno
import glob
import json
import mmap
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap

import pytest

from tests import sandbox_plugin

pytest_plugins = ['pytester']
sandbox = sandbox_plugin.load_sandbox_tool()
REPO_ROOT = sandbox_plugin.REPO_ROOT
MiB = 1024 * 1024
PAGE = mmap.PAGESIZE
SYS_MBIND = 237         # x86-64
SYS_MOVE_PAGES = 279    # x86-64
MPOL_BIND = 2
NODE_SYS = '/sys/devices/system/node'
TIERS_SYS = '/sys/devices/virtual/memory_tiering'


def read(path):
    with open(path) as fh:
        return fh.read().strip()


# ------------------------------------------------ inside the sandbox --

@pytest.mark.sandbox
def test_node0_has_the_cpus_and_memory():
    assert read(NODE_SYS + '/node0/cpulist') not in ('', None)
    assert 'MemTotal' in read(NODE_SYS + '/node0/meminfo')
    assert read(NODE_SYS + '/has_cpu') == '0'
    assert read(NODE_SYS + '/has_memory') == '0-1'


@pytest.mark.sandbox
def test_node1_is_memory_only_and_slower_per_hmat():
    assert read(NODE_SYS + '/node1/cpulist') == ''
    total_kb = int(read(NODE_SYS + '/node1/meminfo').split(
        'MemTotal:')[1].split()[0])
    assert total_kb > 512 * 1024
    initiators = NODE_SYS + '/node%d/access0/initiators/'
    assert read(initiators % 0 + 'read_latency') == '10'
    assert read(initiators % 1 + 'read_latency') == '80'
    assert read(initiators % 0 + 'read_bandwidth') == '20480'
    assert read(initiators % 1 + 'read_bandwidth') == '5120'


@pytest.mark.sandbox
def test_two_memory_tiers_node0_faster():
    tiers = {}
    for path in glob.glob(TIERS_SYS + '/memory_tier*'):
        tiers[int(path.rsplit('memory_tier', 1)[1])] = read(
            path + '/nodelist')
    assert len(tiers) == 2, tiers
    fast, slow = sorted(tiers)
    assert tiers[fast] == '0' and tiers[slow] == '1', tiers


@pytest.mark.sandbox
def test_kernel_release_and_command_line():
    assert os.uname().release.startswith('6.12.')
    cmdline = read('/proc/cmdline').split()
    assert 'pti=on' in cmdline and 'numa_balancing=disable' in cmdline
    # pti=on must really be in force: DAMON vaddr depends on it under TCG.
    assert ' pti ' in ' %s ' % read('/proc/cpuinfo').replace('\n', ' ')


@pytest.mark.sandbox
def test_the_kernels_own_tiering_is_off():
    assert read('/proc/sys/kernel/numa_balancing') == '0'
    assert read('/sys/kernel/mm/numa/demotion_enabled') == 'false'


@pytest.mark.sandbox
def test_root_read_only_scratch_writable(tmp_path):
    with pytest.raises(OSError) as raised:
        open(os.path.join(REPO_ROOT, 'sandbox-write-probe'), 'w')
    assert raised.value.errno == errno.EROFS
    mounts = {line.split()[1]: line.split() for line in
              read('/proc/mounts').splitlines()}
    assert mounts['/'][2] == '9p' and 'ro' in mounts['/'][3].split(',')
    for scratch in ('/tmp', '/run', '/var/tmp', '/dev/shm'):
        assert mounts[scratch][2] == 'tmpfs', scratch
    (tmp_path / 'probe').write_text('ok')
    assert str(tmp_path).startswith('/tmp/')


@pytest.mark.sandbox
def test_guest_environment():
    assert os.environ['LOKI_SANDBOX'] == '1'
    assert os.environ['HOME'] == '/tmp'
    assert os.environ['PYTHONDONTWRITEBYTECODE'] == '1'
    assert os.environ['LOKI_SANDBOX_REPO'] == REPO_ROOT
    assert os.getcwd() == REPO_ROOT
    out = os.environ['LOKI_SANDBOX_OUT']
    assert os.access(out, os.W_OK)
    assert os.path.isdir(os.path.join(REPO_ROOT, 'loki_nova'))


@pytest.mark.sandbox
def test_memory_bound_to_node1_lands_there():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    size = 8 * MiB
    pages = size // PAGE
    buf = mmap.mmap(-1, size)
    anchor = ctypes.c_char.from_buffer(buf)
    try:
        addr = ctypes.addressof(anchor)
        nodemask = ctypes.c_ulong(1 << 1)
        done = libc.syscall(ctypes.c_long(SYS_MBIND), ctypes.c_void_p(addr),
                            ctypes.c_ulong(size), ctypes.c_int(MPOL_BIND),
                            ctypes.byref(nodemask), ctypes.c_ulong(64),
                            ctypes.c_uint(0))
        assert done == 0, os.strerror(ctypes.get_errno())
        buf.write(b'\x5a' * size)       # fault every page in
        [maps] = [line for line in read('/proc/self/numa_maps').splitlines()
                  if line.startswith('%x ' % addr)]
        assert 'bind:1' in maps.split(), maps
        assert 'N1=%d' % pages in maps.split() and 'N0=' not in maps, maps
        # move_pages(2) with nodes=NULL reports where each page is.
        where = (ctypes.c_void_p * pages)(
            *[addr + i * PAGE for i in range(pages)])
        status = (ctypes.c_int * pages)()
        done = libc.syscall(ctypes.c_long(SYS_MOVE_PAGES), ctypes.c_int(0),
                            ctypes.c_ulong(pages), where, None, status,
                            ctypes.c_int(0))
        assert done == 0, os.strerror(ctypes.get_errno())
        assert set(status) == {1}
    finally:
        del anchor
        buf.close()


# -------------------------------------------- the host, booting once --

@pytest.mark.sandbox(host=True)
def test_failing_command_status_and_output_come_back():
    result = sandbox.run(
        ['sh', '-c', 'echo "to stdout $LOKI_SANDBOX $HOME $PWD [$EXTRA]"; '
         'echo to-stderr >&2; exit 7'],
        cwd=REPO_ROOT, env={'EXTRA': 'two  words'}, timeout=300, cpus=1,
        node_mib=(512, 512))
    assert result.returncode == 7, result.output
    assert 'to stdout 1 /tmp %s [two  words]' % REPO_ROOT in result.output
    assert 'to-stderr' in result.output
    assert result.boot_seconds > 0 and result.command_seconds >= 0
    assert result.elapsed > result.boot_seconds


# ------------------------------------ the runner's pieces, no boot --

DEB822 = textwrap.dedent('''\
    Types: deb
    # http://snapshot.debian.org/archive/debian/20250520T000000Z
    URIs: http://mirror.example/debian
    Suites: bookworm bookworm-updates
    Components: main
    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

    Types: deb
    URIs: http://mirror.example/debian-security
    Suites: bookworm-security
    Components: main
    ''')


def test_mirror_from_deb822_sources(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'debian.sources').write_text(DEB822)
    (tmp_path / 'd' / 'other.sources.disabled').write_text(
        DEB822.replace('mirror.example', 'wrong.example'))
    assert sandbox.find_debian_mirror(
        str(tmp_path / 'missing'), str(tmp_path / 'd'),
        codename='bookworm') == (
        'http://mirror.example/debian',
        '/usr/share/keyrings/debian-archive-keyring.gpg')


def test_mirror_from_one_line_sources_and_fallback(tmp_path):
    (tmp_path / 'd').mkdir()
    lst = tmp_path / 'sources.list'
    lst.write_text('# deb http://commented.example/debian bookworm main\n'
                   'deb http://security.example/ bookworm-security main\n'
                   'deb [arch=amd64 signed-by=/k.gpg] http://m.example/d/ '
                   'bookworm main contrib\n')
    assert sandbox.find_debian_mirror(
        str(lst), str(tmp_path / 'd'), codename='bookworm') == (
        'http://m.example/d', '/k.gpg')
    assert sandbox.find_debian_mirror(
        str(lst), str(tmp_path / 'd'), codename='trixie') == (
        sandbox.DEFAULT_MIRROR, None)


def test_private_apt_config(tmp_path):
    apt_dir = str(tmp_path / 'apt')
    sandbox.write_apt_config(apt_dir, 'http://m.example/debian', '/k.gpg')
    assert (tmp_path / 'apt' / 'sources.list').read_text() == (
        'deb [signed-by=/k.gpg] http://m.example/debian '
        'bookworm-backports main\n')
    options = sandbox.apt_options(apt_dir)
    settings = dict(value.split('=', 1) for value in options[1::2])
    assert set(options[0::2]) == {'-o'}
    for key in ('Dir::Etc::SourceList', 'Dir::Etc::SourceParts',
                'Dir::State::Lists', 'Dir::Cache', 'Dir::State::status',
                'Dir::Etc::Preferences', 'Dir::Etc::PreferencesParts'):
        assert settings[key].startswith(apt_dir + '/'), key
        assert os.path.exists(settings[key]), key
    assert sandbox.sources_line('http://m/d') == (
        'deb http://m/d bookworm-backports main\n')


def test_nested_virt_binds_the_trees_daemons_emulator_and_libraries(
        tmp_path):
    tree, root = tmp_path / 'tree', tmp_path / 'root'
    lib = 'usr/lib/x86_64-linux-gnu'
    for base, version in ((tree, '11003'), (root, '9000')):
        for path in sandbox.NESTED_VIRT_DIRS:
            (base / path).mkdir(parents=True)
        for path in sandbox.NESTED_VIRT_FILES:
            (base / path).parent.mkdir(parents=True, exist_ok=True)
            (base / path).write_text(version)
        real = base / lib / ('libvirt.so.0.%s.0' % version)
        real.write_text(version)
        (base / lib / 'libvirt.so.0').symlink_to(real.name)
    # Only the tree has libvirt-qemu: nothing to bind it over.
    (tree / lib / 'libvirt-qemu.so.0').write_text('11003')
    binds = sandbox.nested_virt_binds(str(tree), str(root))
    expected = [(str(tree / path), str(root / path)) for path in
                sandbox.NESTED_VIRT_DIRS + sandbox.NESTED_VIRT_FILES]
    expected.append((str(tree / lib / 'libvirt.so.0.11003.0'),
                     str(root / lib / 'libvirt.so.0.9000.0')))
    assert binds == expected
    (root / 'usr/sbin/libvirtd').unlink()
    with pytest.raises(sandbox.SandboxError,
                       match='has no .*/usr/sbin/libvirtd to bind'):
        sandbox.nested_virt_binds(str(tree), str(root))


def test_pick_the_newest_generic_612_image():
    names = ['linux-image-6.12.43+deb12-amd64',
             'linux-image-6.12.95+deb12-amd64-dbg',
             'linux-image-6.12.95+deb12-amd64-unsigned',
             'linux-image-6.12.95+deb12-cloud-amd64',
             'linux-image-6.12.95+deb12-rt-amd64',
             'linux-image-6.12.9+deb12-amd64',
             'linux-image-6.12.90+deb12.1-amd64',
             'linux-image-6.12.90+deb12-amd64',
             'linux-image-6.1.0-30-amd64',
             'linux-image-amd64']
    assert sandbox.pick_kernel_package(names) == \
        'linux-image-6.12.90+deb12.1-amd64'
    assert sandbox.pick_kernel_package(
        names + ['linux-image-6.12.95+deb12-amd64']) == \
        'linux-image-6.12.95+deb12-amd64'
    assert sandbox.pick_kernel_package(['linux-image-amd64']) is None


def _qemu_args(argv, flag):
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_qemu_command_two_nodes_hmat_shares():
    argv = sandbox.qemu_command(
        kernel='/k/vmlinuz', initrd='/c/initrd', out_dir='/o',
        console_log='/o/console.log', node_mib=(768, 256), cpus=2,
        extra_append='foo=1', qemu='/usr/bin/qemu-system-x86_64')
    assert argv[0] == '/usr/bin/qemu-system-x86_64'
    assert _qemu_args(argv, '-accel') == ['tcg,thread=multi']
    assert _qemu_args(argv, '-machine') == ['pc,hmat=on']
    assert _qemu_args(argv, '-smp') == ['2'] and \
        _qemu_args(argv, '-m') == ['1024M']
    assert _qemu_args(argv, '-object') == [
        'memory-backend-ram,id=m0,size=768M',
        'memory-backend-ram,id=m1,size=256M']
    numa = _qemu_args(argv, '-numa')
    assert numa[:2] == ['node,nodeid=0,cpus=0-1,memdev=m0,initiator=0',
                        'node,nodeid=1,memdev=m1,initiator=0']
    hmat = {(part['target'], part['data-type']):
            part.get('latency') or part.get('bandwidth')
            for part in (dict(kv.split('=') for kv in line.split(',')[1:])
                         for line in numa[2:])}
    assert hmat == {('0', 'access-latency'): '10',
                    ('0', 'access-bandwidth'): '20G',
                    ('1', 'access-latency'): '80',
                    ('1', 'access-bandwidth'): '5G'}
    assert all(line.startswith('hmat-lb,initiator=0,') and
               'hierarchy=memory' in line for line in numa[2:])
    root, out = _qemu_args(argv, '-virtfs')
    assert 'path=/,' in root and 'readonly=on' in root.split(',') and \
        'multidevs=remap' in root.split(',')
    assert 'path=/o,' in out and 'readonly=on' not in out
    assert _qemu_args(argv, '-serial') == ['file:/o/console.log']
    assert '-no-reboot' in argv and _qemu_args(argv, '-display') == ['none']
    [append] = _qemu_args(argv, '-append')
    for arg in ('console=ttyS0', 'panic=-1', 'pti=on',
                'numa_balancing=disable', 'foo=1'):
        assert arg in append.split()


def test_qemu_command_single_cpu_and_bad_sizes():
    argv = sandbox.qemu_command(kernel='k', initrd='i', out_dir='/o',
                                console_log='c', cpus=1)
    assert _qemu_args(argv, '-accel') == ['tcg']
    assert 'node,nodeid=0,cpus=0-0,memdev=m0,initiator=0' in \
        _qemu_args(argv, '-numa')
    with pytest.raises(ValueError):
        sandbox.qemu_command(kernel='k', initrd='i', out_dir='/o',
                             console_log='c', node_mib=(1024, 0))


def test_init_script_is_valid_sh_and_does_the_steps(tmp_path):
    script = sandbox.init_script(['netfs.ko', '9pnet.ko'])
    (tmp_path / 'init').write_text(script)
    shell = '/bin/busybox' if os.path.exists('/bin/busybox') else None
    argv = [shell, 'sh', '-n'] if shell else ['/bin/sh', '-n']
    checked = subprocess.run(argv + [str(tmp_path / 'init')],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert script.startswith('#!/bin/busybox sh\n')
    assert 'for m in netfs.ko 9pnet.ko; do' in script
    assert 'cache=loose,ro' in script and 'hostroot $R' in script
    assert 'echo 0 > /proc/sys/kernel/numa_balancing' in script
    assert 'echo false > /sys/kernel/mm/numa/demotion_enabled' in script
    assert 'chroot $R /bin/sh /tmp/loki-sandbox/command.sh' in script
    assert script.rstrip().endswith('poweroff -f')
    for scratch in sandbox.TMPFS_DIRS:
        assert 'keep_and_cover %s\n' % scratch in script


def test_command_script_sets_env_and_cwd_and_keeps_arguments(tmp_path):
    script = sandbox.command_script(
        ['printf', '%s|', 'a b', "it's", '$HOME'], str(tmp_path),
        {'FOO': 'x y', 'HOME': '/tmp'})
    (tmp_path / 'c.sh').write_text(script + 'exit 99\n')
    done = subprocess.run(['/bin/sh', str(tmp_path / 'c.sh')],
                          capture_output=True, text=True, cwd='/')
    assert done.returncode == 0
    assert done.stdout == "a b|it's|$HOME|"
    shell = sandbox.command_script('echo "$FOO"; pwd; exit 3',
                                   str(tmp_path), {'FOO': 'x y'})
    (tmp_path / 's.sh').write_text(shell)
    done = subprocess.run(['/bin/sh', str(tmp_path / 's.sh')],
                          capture_output=True, text=True, cwd='/')
    assert (done.returncode, done.stdout) == (3, 'x y\n%s\n' % tmp_path)
    missing = sandbox.command_script(['true'], str(tmp_path / 'nope'), {})
    (tmp_path / 'm.sh').write_text(missing)
    done = subprocess.run(['/bin/sh', str(tmp_path / 'm.sh')],
                          capture_output=True, text=True)
    assert done.returncode == 125 and 'cannot enter' in done.stdout
    with pytest.raises(ValueError):
        sandbox.command_script(['true'], '/', {'BAD-NAME': '1'})


def test_guest_environment_defaults_and_additions():
    env = sandbox.guest_env({'EXTRA': '1', 'HOME': '/elsewhere'})
    assert env['LOKI_SANDBOX'] == '1' and env['PYTHONDONTWRITEBYTECODE']
    assert env['EXTRA'] == '1' and env['HOME'] == '/elsewhere'
    assert env['LOKI_SANDBOX_OUT'] == sandbox.GUEST_OUT
    assert sandbox.guest_env()['HOME'] == '/tmp'


def test_cpio_archive_reads_back_with_cpio(tmp_path):
    cpio = '/usr/bin/cpio'
    if not os.path.exists(cpio):
        pytest.skip('cpio is not installed (tools/setup-env.sh installs it)')
    data = sandbox.cpio_archive([
        ('bin', stat.S_IFDIR | 0o755, b'', (0, 0)),
        ('bin/tool', stat.S_IFREG | 0o755, b'#!/bin/sh\necho hi\n', (0, 0)),
        ('odd', stat.S_IFREG | 0o644, b'x' * 5, (0, 0)),
        ('dev', stat.S_IFDIR | 0o755, b'', (0, 0)),
        ('dev/console', stat.S_IFCHR | 0o600, b'', (5, 1)),
    ])
    listing = subprocess.run([cpio, '-itv', '--quiet'], input=data,
                             capture_output=True, check=True).stdout
    lines = listing.decode().splitlines()
    assert [line.split()[-1] for line in lines] == [
        'bin', 'bin/tool', 'odd', 'dev', 'dev/console']
    assert lines[-1].startswith('crw-------') and '5,' in lines[-1]
    subprocess.run([cpio, '-id', '--quiet', 'bin/tool', 'odd'], input=data,
                   cwd=tmp_path, check=True)
    assert (tmp_path / 'bin' / 'tool').read_bytes() == \
        b'#!/bin/sh\necho hi\n'
    assert (tmp_path / 'odd').read_bytes() == b'xxxxx'


def _elf_module(modinfo):
    """A minimal 64-bit ELF with a .modinfo section holding *modinfo*."""
    names = b'\0.shstrtab\0.modinfo\0'
    info = b''.join(item.encode() + b'\0' for item in modinfo)
    names_at, info_at = 64, 64 + len(names)
    shoff = info_at + len(info)
    shoff += -shoff % 8
    header = b'\x7fELF' + bytes([2, 1, 1]) + b'\0' * 9
    header += struct.pack('<HHIQQQIHHHHHH', 1, 62, 1, 0, 0, shoff, 0, 64,
                          0, 0, 64, 3, 1)

    def section(name, offset, size):
        return struct.pack('<IIQQQQIIQQ', name, 3 if name == 1 else 1, 0, 0,
                           offset, size, 0, 0, 1, 0)

    body = header + names + info
    body += b'\0' * (shoff - len(body))
    return body + section(0, 0, 0) + section(1, names_at, len(names)) + \
        section(11, info_at, len(info))


def test_modinfo_reads_the_modinfo_section():
    module = _elf_module(['license=GPL', 'depends=netfs,9pnet', 'name=9p'])
    assert sandbox.modinfo(module) == ['license=GPL', 'depends=netfs,9pnet',
                                       'name=9p']
    with pytest.raises(sandbox.SandboxError):
        sandbox.modinfo(b'not an elf file')


def _module_tree(root, with_dep_file):
    modules = {
        'kernel/fs/netfs/netfs.ko.xz': [],
        'kernel/net/9p/9pnet.ko.xz': [],
        'kernel/net/9p/9pnet_virtio.ko.xz': ['9pnet', 'virtio_ring'],
        'kernel/fs/9p/9p.ko.xz': ['9pnet', 'netfs'],
        'kernel/fs/other/unrelated.ko.xz': [],
    }
    import lzma
    for path, deps in modules.items():
        os.makedirs(os.path.join(root, os.path.dirname(path)),
                    exist_ok=True)
        name = os.path.basename(path).split('.ko')[0]
        info = ['name=' + name, 'depends=' + ','.join(deps)]
        with open(os.path.join(root, path), 'wb') as fh:
            fh.write(lzma.compress(_elf_module(info)))
    with open(os.path.join(root, 'modules.builtin'), 'w') as fh:
        fh.write('kernel/drivers/virtio/virtio_ring.ko\n')
    if with_dep_file:
        by_name = {os.path.basename(p).split('.ko')[0]: p for p in modules}
        with open(os.path.join(root, 'modules.dep'), 'w') as fh:
            for path, deps in modules.items():
                fh.write('%s: %s\n' % (path, ' '.join(
                    by_name[d] for d in deps if d in by_name)))


@pytest.mark.parametrize('with_dep_file', [True, False])
def test_module_load_order_dependencies_first(tmp_path, with_dep_file):
    _module_tree(str(tmp_path), with_dep_file)
    order = sandbox.module_load_order(str(tmp_path))
    names = [os.path.basename(p).split('.ko')[0] for p in order]
    assert sorted(names) == ['9p', '9pnet', '9pnet_virtio', 'netfs']
    for module, dep in (('9p', '9pnet'), ('9p', 'netfs'),
                        ('9pnet_virtio', '9pnet')):
        assert names.index(dep) < names.index(module)
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.module_load_order(str(tmp_path), ['nosuchmodule'])
    assert sandbox.module_load_order(str(tmp_path), ['virtio_ring']) == []


def test_keep_paths_only_under_tmpfs_dirs():
    assert sandbox._keep_paths(['/work/x', '/tmp/ci/repo', '/tmp/ci/repo',
                                '/var/tmp/v', '/tmpx']) == [
        '/tmp/ci/repo', '/var/tmp/v']
    with pytest.raises(sandbox.SandboxError):
        sandbox._keep_paths(['/tmp/with space'])


# --------------------- run() and the command line, with a stand-in QEMU --

FAKE_QEMU = '''\
#!%(python)s
# Stands in for qemu-system-x86_64: finds the console file and the
# writable share in its arguments and acts out $FAKE_QEMU_MODE.
import os, sys, time
args = sys.argv[1:]
console = [a[5:] for a in args if a.startswith('file:')][0]
share = [a.split('path=')[1].split(',')[0] for a in args
         if 'mount_tag=lokiout' in a][0]
mode = os.environ['FAKE_QEMU_MODE']
with open(os.path.join(os.path.dirname(console), 'argv'), 'w') as fh:
    fh.write('\\n'.join(args))
if mode == 'ok':
    with open(os.path.join(share, 'command.sh')) as fh:
        command = fh.read()
    with open(os.path.join(share, 'output.log'), 'w') as fh:
        fh.write('ran: ' + command.splitlines()[-1] + '\\n')
    with open(os.path.join(share, 'times'), 'w') as fh:
        fh.write('4.5 6.0\\n')
    with open(os.path.join(share, 'status'), 'w') as fh:
        fh.write('3\\n')
elif mode == 'panic':
    with open(console, 'w') as fh:
        fh.write('Kernel panic - not syncing: Attempted to kill init!\\n')
elif mode == 'hang':
    with open(console, 'w') as fh:
        fh.write('booting\\n')
    with open(os.path.join(share, 'pid'), 'w') as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)
elif mode == 'crash':
    sys.stderr.write('qemu: could not load kernel\\n')
    sys.exit(1)
'''


@pytest.fixture
def fake_sandbox(tmp_path, monkeypatch):
    """A cache with a stand-in kernel and busybox, and a stand-in QEMU."""
    cache = tmp_path / 'cache'
    modules = cache / 'kernel-x' / 'lib' / 'modules' / '6.12.0-test'
    modules.mkdir(parents=True)
    _module_tree(str(modules), with_dep_file=True)
    (cache / 'kernel-x' / 'boot').mkdir()
    (cache / 'kernel-x' / 'boot' / 'vmlinuz').write_bytes(b'kernel')
    (cache / 'kernel.json').write_text(json.dumps({
        'vmlinuz': 'kernel-x/boot/vmlinuz',
        'modules_root': 'kernel-x/lib/modules/6.12.0-test'}))
    busybox = tmp_path / 'busybox'
    busybox.write_bytes(b'busybox')
    qemu = tmp_path / 'qemu'
    qemu.write_text(FAKE_QEMU % {'python': sys.executable})
    qemu.chmod(0o755)
    monkeypatch.setenv('LOKI_SANDBOX_CACHE', str(cache))
    monkeypatch.setenv('LOKI_SANDBOX_BUSYBOX', str(busybox))
    monkeypatch.setenv('LOKI_SANDBOX_QEMU', str(qemu))
    return tmp_path


def test_run_returns_status_output_and_times(fake_sandbox, monkeypatch):
    monkeypatch.setenv('FAKE_QEMU_MODE', 'ok')
    out = fake_sandbox / 'out'
    out.mkdir()
    result = sandbox.run(['echo', 'a b'], cwd='/', out_dir=str(out))
    assert result.returncode == 3
    assert result.output == "ran: exec echo 'a b'\n"
    assert (result.boot_seconds, result.command_seconds) == (4.5, 1.5)
    argv = (out / 'argv').read_text().splitlines()
    [initrd] = _qemu_args(argv, '-initrd')
    assert initrd.startswith(str(fake_sandbox / 'cache' / 'initramfs-'))
    assert _qemu_args(argv, '-kernel') == [
        str(fake_sandbox / 'cache' / 'kernel-x' / 'boot' / 'vmlinuz')]
    # cwd '/' needs nothing kept; the checkout and the kernel cache do
    # when they live under a directory the guest covers with tmpfs (a CI
    # clone in /tmp; this test's cache).
    cache = str(fake_sandbox / 'cache')
    assert (out / 'keep').read_text() == ''.join(
        p + '\n' for p in sandbox._keep_paths([sandbox.REPO_ROOT, cache]))
    # The initramfs is cached: a second run reuses the same file.  A cwd
    # under /tmp (covered by tmpfs in the guest) is listed to be kept.
    before = os.stat(initrd).st_ino     # rebuilt means replaced
    sandbox.run(['true'], cwd=str(fake_sandbox), out_dir=str(out))
    assert _qemu_args((out / 'argv').read_text().splitlines(),
                      '-initrd') == [initrd]
    assert os.stat(initrd).st_ino == before
    if str(fake_sandbox).startswith('/tmp/'):
        kept = sandbox._keep_paths([fake_sandbox, sandbox.REPO_ROOT, cache])
        assert (out / 'keep').read_text() == ''.join(p + '\n' for p in kept)


def test_initramfs_is_rebuilt_when_its_inputs_change(fake_sandbox):
    first = sandbox.ensure_initramfs()
    assert sandbox.ensure_initramfs() == first
    stale = fake_sandbox / 'cache' / 'initramfs-0000.cpio'
    stale.write_bytes(b'')
    os.utime(stale, (0, 0))
    (fake_sandbox / 'busybox').write_bytes(b'another busybox')
    second = sandbox.ensure_initramfs()
    assert second != first and os.path.exists(second)
    # Recently used images stay (another checkout may use them); long
    # unused ones go.
    assert os.path.exists(first) and not stale.exists()
    listing = subprocess.run(['cpio', '-it', '--quiet'],
                             stdin=open(second, 'rb'), capture_output=True)
    if listing.returncode == 0:
        names = listing.stdout.decode().split()
        assert {'init', 'bin/busybox', 'dev/console', 'lib/modules/9p.ko',
                'lib/modules/netfs.ko'} <= set(names)
        assert 'lib/modules/unrelated.ko' not in names


@pytest.mark.parametrize('mode,said', [
    # the guest dies: the error quotes the console
    ('panic', ('without reporting an exit status',
               'Kernel panic - not syncing')),
    # QEMU itself fails: the error quotes its status and message
    ('crash', ('QEMU exited with status 1', 'could not load kernel')),
])
def test_a_guest_or_qemu_failure_is_a_clear_error(fake_sandbox, monkeypatch,
                                                  mode, said):
    monkeypatch.setenv('FAKE_QEMU_MODE', mode)
    with pytest.raises(sandbox.SandboxError) as raised:
        sandbox.run(['true'], cwd='/')
    for text in said:
        assert text in str(raised.value)


def test_timeout_kills_qemu(fake_sandbox, monkeypatch):
    monkeypatch.setenv('FAKE_QEMU_MODE', 'hang')
    out = fake_sandbox / 'out'
    out.mkdir()
    with pytest.raises(sandbox.SandboxTimeout) as raised:
        sandbox.run(['true'], cwd='/', timeout=2, out_dir=str(out))
    assert 'did not finish within 2s' in str(raised.value)
    assert 'booting' in str(raised.value)
    pid = int((out / 'pid').read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)     # killed and reaped by run()


def test_missing_qemu_is_unavailable(fake_sandbox, monkeypatch):
    monkeypatch.setenv('LOKI_SANDBOX_QEMU', 'no-such-qemu-binary')
    with pytest.raises(sandbox.SandboxUnavailable) as raised:
        sandbox.run(['true'])
    assert 'no-such-qemu-binary not found' in str(raised.value)


def test_command_line_run_and_fetch(fake_sandbox, monkeypatch, capfd):
    monkeypatch.setenv('FAKE_QEMU_MODE', 'ok')
    assert sandbox.main(['run', '--cwd', '/', '--', 'ls', '-l']) == 3
    captured = capfd.readouterr()
    assert 'ran: exec ls -l' in captured.out
    assert 'sandbox: exit 3' in captured.err
    monkeypatch.setenv('FAKE_QEMU_MODE', 'panic')
    assert sandbox.main(['run', '--', 'true']) == sandbox.EXIT_SANDBOX_ERROR
    assert 'Kernel panic' in capfd.readouterr().err
    # fetch with the kernel in the cache only builds the initramfs.
    assert sandbox.main(['fetch']) == 0
    assert 'initramfs-' in capfd.readouterr().out


# ---------------------------- the pytest plugin, with a stand-in run() --

PLUGIN_TESTS = '''\
import pytest

@pytest.mark.sandbox
def test_passes():
    pass

@pytest.mark.sandbox
def test_fails():
    pass

@pytest.mark.sandbox
@pytest.mark.skipif(True, reason='decided in the guest, not here')
def test_skipped_inside():
    pass

@pytest.mark.sandbox
def test_no_result():
    pass

@pytest.mark.sandbox
@pytest.mark.parametrize('n', [1, 2])
def test_param(n):
    pass

def test_on_the_host():
    pass
'''


def _fake_inner_run(calls, error=None, hang_in=None):
    """A stand-in for sandbox.run() that acts out an inner pytest run.

    With *hang_in*, the run times out in that test: those before it have
    results, it has only its setup, those after it have none.  Like the
    real run, it hands the guest's output to *stream* as it arrives; here
    a line of output comes as each test starts, so the last test's report
    lines come after the last output.
    """
    def run(command, *, cwd, env, timeout, out_dir, keep=(), cpus=1,
            stream=None):
        nodeids = command[command.index('--') + 1:]
        calls.append(nodeids)
        if error:
            raise error
        lines = []
        for nodeid in nodeids:
            name = nodeid.split('::')[-1]
            base = {'nodeid': nodeid, 'duration': 0.1, 'longrepr': None,
                    'skip_reason': None, 'wasxfail': None, 'sections': []}
            if name == 'test_no_result':
                continue
            lines.append(dict(base, when='setup', outcome='passed'))
            if name == 'test_skipped_inside':
                lines[-1].update(outcome='skipped',
                                 skip_reason='no DAMON in here')
                lines.append(dict(base, when='teardown', outcome='passed'))
                continue
            if name == hang_in:
                break
            call = dict(base, when='call', outcome='passed')
            if name == 'test_fails':
                call.update(outcome='failed',
                            longrepr='AssertionError: boom inside',
                            crash='AssertionError: boom inside',
                            sections=[['Captured stdout call', 'chatter']])
            lines.append(call)
            lines.append(dict(base, when='teardown', outcome='passed'))
        path = os.path.join(out_dir, sandbox_plugin.REPORT_FILE)
        with open(path, 'w') as fh:
            for line in lines:
                if stream is not None and line['when'] == 'setup':
                    stream.write(b'guest output\n')
                    stream.flush()
                fh.write(json.dumps(line) + '\n')
                fh.flush()
        if hang_in:
            raise sandbox.SandboxTimeout('did not finish within 60s')
        return sandbox.Result(1, 'inner output\n== 1 failed, 4 passed, '
                              '1 skipped in 12.3s ==\n', elapsed=20.0,
                              boot_seconds=7.0, command_seconds=12.5)
    return run


@pytest.fixture
def plugin_pytester(pytester, monkeypatch):
    monkeypatch.delenv('LOKI_SANDBOX', raising=False)
    pytester.makeini('[pytest]\nmarkers =\n    sandbox: in the sandbox\n')
    pytester.makeconftest("pytest_plugins = ['tests.sandbox_plugin']\n")
    pytester.makepyfile(test_things=PLUGIN_TESTS)
    return pytester


def test_plugin_batches_and_reports_each_test(plugin_pytester, monkeypatch):
    calls = []
    monkeypatch.setattr(sandbox, 'run', _fake_inner_run(calls))
    result = plugin_pytester.runpytest_inprocess('-rA', '-p',
                                                 'no:cacheprovider')
    result.assert_outcomes(passed=4, failed=2, skipped=1)
    assert calls == [['test_things.py::test_passes',
                      'test_things.py::test_fails',
                      'test_things.py::test_skipped_inside',
                      'test_things.py::test_no_result',
                      'test_things.py::test_param[1]',
                      'test_things.py::test_param[2]']]
    text = result.stdout.str()
    assert 'boom inside (in the sandbox, call)' in text
    assert 'FAILED test_things.py::test_fails - in the sandbox: ' \
        'AssertionError: boom inside' in text
    assert 'chatter' in text
    assert 'no DAMON in here' in text
    assert 'no result for test_things.py::test_no_result' in text
    assert 'sandbox: one boot for 6 tests' in text
    assert 'sandbox: inner pytest: 1 failed, 4 passed, 1 skipped in ' \
        '12.3s' in text
    # Progress while the batch runs: each test named as it ends, counted
    # against the batch (test_no_result never ends, so 5 of 6).
    assert 'sandbox: booting the two-tier guest for 6 tests' in text
    progress = re.findall(r'sandbox: \[(\d)/6\] (\w+) (\S+)', text)
    assert progress == [
        ('1', 'passed', 'test_things.py::test_passes'),
        ('2', 'failed', 'test_things.py::test_fails'),
        ('3', 'skipped', 'test_things.py::test_skipped_inside'),
        ('4', 'passed', 'test_things.py::test_param[1]'),
        ('5', 'passed', 'test_things.py::test_param[2]')]


def test_plugin_boots_only_for_the_selected_subset(plugin_pytester,
                                                   monkeypatch):
    calls = []
    monkeypatch.setattr(sandbox, 'run', _fake_inner_run(calls))
    result = plugin_pytester.runpytest_inprocess('-k', 'param or host',
                                                 '-p', 'no:cacheprovider')
    result.assert_outcomes(passed=3)
    assert calls == [['test_things.py::test_param[1]',
                      'test_things.py::test_param[2]']]
    calls.clear()
    result = plugin_pytester.runpytest_inprocess('-m', 'not sandbox',
                                                 '-p', 'no:cacheprovider')
    result.assert_outcomes(passed=1, deselected=6)
    assert calls == []


def test_plugin_fails_when_the_sandbox_cannot_boot(plugin_pytester,
                                                   monkeypatch):
    calls = []
    error = sandbox.SandboxUnavailable('qemu-system-x86_64 not found')
    monkeypatch.setattr(sandbox, 'run', _fake_inner_run(calls, error))
    result = plugin_pytester.runpytest_inprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(passed=1, failed=6)
    assert len(calls) == 1
    assert 'qemu-system-x86_64 not found' in result.stdout.str()


def test_plugin_after_a_timeout_keeps_the_finished_results(
        plugin_pytester, monkeypatch):
    calls = []
    monkeypatch.setattr(sandbox, 'run',
                        _fake_inner_run(calls, hang_in='test_param[1]'))
    result = plugin_pytester.runpytest_inprocess('-p', 'no:cacheprovider',
                                                 '-rA')
    # passes, host: passed; fails, no_result, param[1], param[2]: failed.
    result.assert_outcomes(passed=2, failed=4, skipped=1)
    text = result.stdout.str()
    assert 'test_param[1] did not finish in the sandbox: the sandbox ' \
        'could not run the tests: did not finish within 60s' in text
    assert 'boom inside' in text


def test_plugin_skips_with_loki_sandbox_skip(plugin_pytester, monkeypatch):
    calls = []
    monkeypatch.setattr(sandbox, 'run', _fake_inner_run(calls))
    monkeypatch.setenv('LOKI_SANDBOX', 'skip')
    result = plugin_pytester.runpytest_inprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(passed=1, skipped=6)
    assert calls == []


MACHINE_TESTS = '''
import pytest

@pytest.mark.sandbox(cpus=2, node_mib=(1536, 512))
def test_big():
    pass

@pytest.mark.sandbox(node_mib=(512, 1024), seconds=1200, nested_virt=True)
def test_wide():
    pass

@pytest.mark.sandbox
def test_plain():
    pass
'''


def test_plugin_boots_with_the_most_the_markers_ask_for(pytester,
                                                        monkeypatch):
    monkeypatch.delenv('LOKI_SANDBOX', raising=False)
    monkeypatch.delenv(sandbox_plugin.CPUS_ENV, raising=False)
    monkeypatch.delenv(sandbox_plugin.TIMEOUT_ENV, raising=False)
    monkeypatch.setenv('OS_NOVA_DISABLE_EVENTLET_PATCHING', 'true')
    pytester.makeini('[pytest]\nmarkers =\n    sandbox: in the sandbox\n')
    pytester.makeconftest("pytest_plugins = ['tests.sandbox_plugin']\n")
    pytester.makepyfile(test_machine=MACHINE_TESTS)
    boots = []

    timeouts = []

    def run(command, *, cwd, env, timeout, out_dir, keep=(), stream=None,
            **machine):
        boots.append((command[command.index('--') + 1:], env, machine))
        timeouts.append(timeout)
        raise sandbox.SandboxUnavailable('recorded only')

    monkeypatch.setattr(sandbox, 'run', run)
    pytester.runpytest_inprocess('-p', 'no:cacheprovider')
    [(nodeids, env, machine)] = boots
    assert len(nodeids) == 3
    assert machine == {'cpus': 2, 'node_mib': (1536, 1024),
                       'nested_virt': True}
    # The batch's time: 600 s to boot, 1200 s the marker asks for, 60 s
    # for each of the other two.
    assert timeouts == [600 + 1200 + 2 * 60]
    # Nova's concurrency mode goes in with the tests.
    assert env['OS_NOVA_DISABLE_EVENTLET_PATCHING'] == 'true'
    boots.clear()
    # Only the plain test: the defaults.
    pytester.runpytest_inprocess('-p', 'no:cacheprovider', '-k', 'plain')
    assert [machine for _, _, machine in boots] == [{'cpus': 1}]
    assert timeouts[-1] == 600 + 60


def test_libvirt_rig_leaves_the_machines_mounts_and_cgroups_alone(
        monkeypatch):
    from tests import libvirt_rig
    monkeypatch.delenv('LOKI_SANDBOX', raising=False)
    with open('/proc/self/mountinfo') as f:
        before = f.read()
    with pytest.raises(RuntimeError, match='only inside the sandbox'):
        libvirt_rig.prepare_sandbox()
    with open('/proc/self/mountinfo') as f:
        assert f.read() == before

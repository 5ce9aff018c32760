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

"""The systemd unit of loki-memtier-agent (etc/systemd): what it runs,
the capabilities it grants (exactly those its comments and the README
give reasons for), ``systemd-analyze verify``, and -- as root, with
setpriv(1) for the capabilities and unshare(1) for the read-only mounts
-- that the agent's own kernel accesses on another user's process work
under the unit and under the drop-ins its comments give, fail without
each capability, and that writing that process's memory is refused."""

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from loki_nova.cmd import agent as agent_cmd
from loki_nova.conf import memtier as memtier_conf
from tests import workloads

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
UNIT = os.path.join(ROOT, 'etc', 'systemd', 'loki-memtier-agent.service')
GRANTED = {'CAP_SYS_PTRACE'}
NOT_GRANTED = {'CAP_DAC_OVERRIDE', 'CAP_SYS_NICE', 'CAP_SYS_ADMIN',
               'CAP_DAC_READ_SEARCH', 'CAP_NET_BIND_SERVICE'}


def read_unit(path=UNIT):
    """{section: [(key, value), ...]}, keeping repeated keys (systemd
    adds them up; configparser would keep only the last)."""
    sections, current = {}, None
    with open(path) as f:
        lines = f.read().split('\n')
    pending = ''
    for raw in lines:
        line = pending + raw.strip()
        pending = ''
        if not line or line[0] in '#;':
            continue
        if line.endswith('\\'):
            pending = line[:-1] + ' '
            continue
        if line.startswith('['):
            assert line.endswith(']'), line
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition('=')
        assert sep and current is not None, line
        current.append((key.strip(), value.strip()))
    return sections


def values(unit, section, key):
    return [v for k, v in unit[section] if k == key]


def one(unit, section, key):
    found = values(unit, section, key)
    assert len(found) == 1, (key, found)
    return found[0]


def words(unit, section, key):
    return {w for v in values(unit, section, key) for w in v.split()}


def comment_bullets(between, until):
    """CAP_ names of the ``# * CAP_...:`` bullets of the unit's comments
    from the line ``between`` to the line ``until``."""
    with open(UNIT) as f:
        text = f.read()
    part = text[text.index(between):text.index(until)]
    return set(re.findall(r'^# \* (CAP_[A-Z_]+):', part, re.M))


def drop_ins():
    """The drop-ins the unit's comments give: each ``#   [Service]`` line
    and the ``#   Key=value`` lines under it, as [(key, value), ...]."""
    with open(UNIT) as f:
        lines = f.read().split('\n')
    blocks = []
    for i, line in enumerate(lines):
        if re.match(r'^#\s+\[Service\]$', line):
            block = []
            for following in lines[i + 1:]:
                m = re.match(r'^#\s+([A-Za-z]+)=(.*)$', following)
                if not m:
                    break
                block.append((m.group(1), m.group(2).strip()))
            blocks.append(block)
    return blocks


def drop_in_adding(cap):
    """The one drop-in of the unit's comments that adds ``cap``."""
    found = [b for b in drop_ins()
             if cap in {w for k, v in b if k == 'CapabilityBoundingSet'
                        for w in v.split()}]
    assert len(found) == 1, (cap, found)
    return found[0]


LISTS = ('CapabilityBoundingSet', 'AmbientCapabilities', 'ReadOnlyPaths',
         'ReadWritePaths')


def service(drop_in=(), unit=None):
    """The unit's [Service] list settings with ``drop_in`` after it, as
    systemd adds them up: each assignment adds its words, an empty one
    clears what came before."""
    unit = unit or read_unit()
    out = {key: set() for key in LISTS}
    for key, value in list(unit['Service']) + list(drop_in):
        if key in LISTS:
            if value:
                out[key].update(value.split())
            else:
                out[key] = set()
    return out


def readme_section():
    with open(os.path.join(ROOT, 'README.rst')) as f:
        text = f.read()
    start = text.index('\nRunning as a service\n')
    end = re.search(r'\n\S[^\n]*\n[=\-~]{3,}\n', text[start + 2:])
    return text[start:start + 2 + end.start()] if end else text[start:]


def test_the_unit_parses_as_ini():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    assert set(parser.sections()) == {'Unit', 'Service', 'Install'}


def test_it_runs_the_console_script_with_the_default_config():
    unit = read_unit()
    argv = one(unit, 'Service', 'ExecStart').split()
    assert argv == ['/usr/bin/loki-memtier-agent', '--config-file',
                    agent_cmd.DEFAULT_CONFIG]
    with open(os.path.join(ROOT, 'setup.cfg')) as f:
        assert 'loki-memtier-agent = loki_nova.cmd.agent:main' in f.read()
    assert one(unit, 'Service', 'Type') == 'simple'
    assert one(unit, 'Service', 'Restart') == 'on-failure'
    assert one(unit, 'Service', 'User') == 'root'
    assert one(unit, 'Install', 'WantedBy') == 'multi-user.target'


def test_the_capabilities_are_exactly_the_documented_ones():
    unit = read_unit()
    assert words(unit, 'Service', 'CapabilityBoundingSet') == GRANTED
    assert words(unit, 'Service', 'AmbientCapabilities') == GRANTED
    assert one(unit, 'Service', 'NoNewPrivileges') == 'yes'
    # /proc is read-only, in one line that the soft_dirty drop-in's empty
    # ReadOnlyPaths= clears
    assert values(unit, 'Service', 'ReadOnlyPaths') == ['/proc']
    assert service(drop_in_adding('CAP_DAC_OVERRIDE'))['ReadOnlyPaths'] \
        == set()
    assert service(drop_in_adding('CAP_SYS_ADMIN'))['ReadOnlyPaths'] == \
        {'/proc'}
    # every granted capability has its reason in the unit, and the ones
    # people would expect are explained as not granted
    assert comment_bullets('# Privileges.', '# Not granted:') == GRANTED
    assert comment_bullets('# Not granted:', '[Unit]') == NOT_GRANTED
    section = readme_section()
    for cap in GRANTED | NOT_GRANTED:
        assert cap in section, cap
    assert set(re.findall(r'``(CAP_[A-Z_]+)``', section)) == \
        GRANTED | NOT_GRANTED


def test_the_sandboxing_leaves_what_the_agent_needs():
    unit = read_unit()
    defaults = {o.name: o.default for o in memtier_conf.memtier_opts}
    runtime = '/run/' + one(unit, 'Service', 'RuntimeDirectory')
    assert defaults['state_dir'] == runtime
    assert defaults['registration_dir'].startswith(runtime + '/')
    # the kdamond records must survive a restart
    assert one(unit, 'Service', 'RuntimeDirectoryPreserve') == 'yes'
    assert one(unit, 'Service', 'ProtectSystem') == 'strict'
    writable = words(unit, 'Service', 'ReadWritePaths')
    assert {'/run/loki-memtier', '-/sys/kernel/mm/damon',
            '-/sys/kernel/tracing'} <= writable
    for key in ('ProtectHome', 'PrivateTmp', 'ProtectKernelTunables'):
        assert one(unit, 'Service', key) == 'yes'
    # libvirtd's socket and pid files stay visible
    for key in ('InaccessiblePaths', 'TemporaryFileSystem', 'ProtectProc',
                'ProcSubset', 'PrivateNetwork', 'PrivateUsers'):
        assert not values(unit, 'Service', key), key
    assert {'AF_UNIX', 'AF_INET', 'AF_INET6'} <= words(
        unit, 'Service', 'RestrictAddressFamilies')


@pytest.mark.skipif(shutil.which('systemd-analyze') is None,
                    reason='systemd-analyze is not installed')
def test_the_syscall_filter_allows_move_pages_and_not_ptrace():
    def group(name):
        out = subprocess.run(['systemd-analyze', 'syscall-filter', name],
                             capture_output=True, text=True, check=True)
        return set(re.findall(r'^\s+([a-z_0-9@-]+)', out.stdout, re.M))

    unit = read_unit()
    allowed, denied = values(unit, 'Service', 'SystemCallFilter')
    assert allowed == '@system-service' and denied.startswith('~')
    service = set()
    for g in group('@system-service'):
        service |= group(g) if g.startswith('@') else {g}
    for call in ('move_pages', 'get_mempolicy', 'preadv', 'pwrite64'):
        assert call in service, call
    assert 'ptrace' not in service
    removed = set()
    for g in denied[1:].split():
        removed |= group(g) if g.startswith('@') else {g}
    assert 'move_pages' not in removed and 'process_vm_readv' in removed


@pytest.mark.skipif(shutil.which('systemd-analyze') is None,
                    reason='systemd-analyze is not installed')
def test_systemd_analyze_verify_passes(tmp_path):
    # verify checks that ExecStart exists: point it at this checkout's
    # console script, the rest of the unit as shipped
    script = os.path.join(os.path.dirname(sys.executable),
                          'loki-memtier-agent')
    with open(UNIT) as f:
        text = f.read()
    copy = tmp_path / 'loki-memtier-agent.service'
    copy.write_text(text.replace('ExecStart=/usr/bin/loki-memtier-agent',
                                 'ExecStart=%s' % script))
    res = subprocess.run(['systemd-analyze', 'verify', str(copy)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'loki-memtier-agent' not in res.stderr, res.stderr


# -- the capabilities at work -------------------------------------------------

PROBE = r'''
import errno, json, os, sys
import numpy as np
from loki_nova.memtier import kernfs, mover
from loki_nova.memtier.trackers import pagemap, softdirty

pid, addr = int(sys.argv[1]), int(sys.argv[2])
kfs = kernfs.KernelFS('/')
proc = kfs.process_dir(pid)
out = {}

def attempt(name, fn):
    try:
        out[name] = fn()
    except (OSError, mover.MoveError) as exc:
        out[name] = errno.errorcode.get(getattr(exc, 'errno', None),
                                        type(exc).__name__)

def write_mem():
    # the byte that is there, written back: the workload's data stays
    fd = os.open('/proc/%d/mem' % pid, os.O_RDWR)
    try:
        return os.pwrite(fd, os.pread(fd, 1, addr), addr) == 1
    finally:
        os.close(fd)

attempt('identity', lambda: bool(proc.stat()) and bool(proc.cmdline()))
attempt('maps', lambda: len(proc.maps()) > 0)
pages = np.array([addr], np.uint64)
attempt('move_pages_query', lambda: int(mover.move_pages(pid, pages)[0]))
attempt('move_pages_move', lambda: int(mover.move_pages(pid, pages, 0)[0]))
attempt('pagemap', lambda: bool(pagemap.read(proc, addr, 1)[0]
                                & pagemap.PRESENT))
attempt('pagemap_pfn', lambda: bool(pagemap.read(proc, addr, 1)[0]
                                    & pagemap.PFN_MASK))
attempt('clear_refs', lambda: proc.write_text('clear_refs', '4') or True)
attempt('mem_write', write_mem)
out['soft_dirty_probe'] = softdirty._probe(kfs)
print(json.dumps(out))
'''

NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']


class NobodysWorkload(workloads.Workload):
    """A workload process owned by nobody, as QEMU is libvirt-qemu's."""

    def __init__(self, *args, timeout=60):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            NOBODY + [sys.executable, '-m', 'loki_nova.memtier.workload',
                      *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd='/')
        self._buf = b''
        try:
            word, pid, start, end = self.reply().split()
        except Exception:
            self.kill()
            raise
        assert word == 'ready' and int(pid) == self.proc.pid
        self.pid = self.proc.pid
        self.start, self.end = int(start, 16), int(end, 16)


def probe(w, caps, read_only=()):
    """The PROBE's findings on workload ``w``, run as uid 0 with exactly
    ``caps`` (setpriv; root's capabilities are its bounding set) and, as
    systemd does for ReadOnlyPaths=, with each path of ``read_only``
    bind-mounted read-only onto itself in a mount namespace of its own."""
    bounding = ','.join(['-all'] + ['+' + c[len('CAP_'):].lower()
                                    for c in sorted(caps)])
    argv = ['setpriv', '--bounding-set=' + bounding, '--inh-caps=-all',
            '--no-new-privs', sys.executable, '-c', PROBE, str(w.pid),
            str(w.start)]
    if read_only:
        mounts = ['mount --bind {0} {0} && mount -o remount,bind,ro {0}'
                  .format(shlex.quote(path.lstrip('-')))
                  for path in sorted(read_only)]
        argv = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                ' && '.join(mounts + ['exec "$@"']), 'sh'] + argv
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def probe_as(w, settings):
    """``probe`` under the [Service] ``settings`` of ``service()``."""
    assert settings['AmbientCapabilities'] == \
        settings['CapabilityBoundingSet']
    return probe(w, settings['CapabilityBoundingSet'],
                 settings['ReadOnlyPaths'])


@pytest.fixture
def nobodys_workload():
    if os.geteuid() != 0 or shutil.which('setpriv') is None \
            or shutil.which('unshare') is None:
        pytest.skip('needs root, setpriv(1) and unshare(1)')
    try:
        import pwd
        pwd.getpwnam('nobody')
    except KeyError:
        pytest.skip('no user nobody')
    with NobodysWorkload('--size-mb', 4, '--hot-mb', 1) as w:
        yield w


def test_the_granted_capabilities_are_enough(nobodys_workload):
    got = probe_as(nobodys_workload, service())
    refused = got.pop('soft_dirty_probe')
    assert got == {'identity': True, 'maps': True, 'move_pages_query': 0,
                   'move_pages_move': 0,
                   # DAMON needs neither; soft_dirty and idle_page do,
                   # with their drop-ins
                   'pagemap': 'EACCES', 'pagemap_pfn': 'EACCES',
                   'clear_refs': 'EACCES', 'mem_write': 'EACCES'}, got
    # soft_dirty is refused at start, and the reason names the drop-in
    assert 'ReadOnlyPaths=/proc' in refused and 'drop-in' in refused


def test_writing_another_process_memory_is_refused_twice(nobodys_workload):
    """/proc/PID/mem passes the ptrace check with CAP_SYS_PTRACE: the
    file mode (no CAP_DAC_OVERRIDE) refuses the write, and so does the
    read-only /proc on its own, even to all of root's capabilities."""
    w = nobodys_workload
    unit = service()
    everything = set(GRANTED | NOT_GRANTED | {'CAP_FOWNER', 'CAP_SYS_RAWIO'})
    # the probe can write where nothing stops it (the same byte back)
    assert probe(w, everything)['mem_write'] is True
    assert probe(w, unit['CapabilityBoundingSet'])['mem_write'] == 'EACCES'
    assert probe(w, everything, unit['ReadOnlyPaths'])['mem_write'] == \
        'EROFS'
    assert w.checksum_ok()


def test_the_soft_dirty_drop_in_is_enough_and_costs_what_it_says(
        nobodys_workload):
    w = nobodys_workload
    drop_in = drop_in_adding('CAP_DAC_OVERRIDE')
    got = probe_as(w, service(drop_in))
    assert got['pagemap'] is True and got['clear_refs'] is True
    assert got['move_pages_move'] == 0 and got['maps'] is True
    # the probe writes our own clear_refs: this kernel may lack
    # soft-dirty bits, but /proc is writable again
    assert 'ReadOnlyPaths' not in (got['soft_dirty_probe'] or '')
    # what the unit's comments warn of
    assert got['mem_write'] is True
    assert w.checksum_ok()
    # and without CAP_DAC_OVERRIDE the tracker's files stay closed
    without = [(k, v.replace('CAP_DAC_OVERRIDE', 'CAP_SYS_PTRACE'))
               for k, v in drop_in]
    got = probe_as(w, service(without))
    assert got['pagemap'] == 'EACCES' and got['clear_refs'] == 'EACCES'


def test_the_idle_page_drop_in_reads_frames_and_writes_no_memory(
        nobodys_workload):
    got = probe_as(nobodys_workload,
                   service(drop_in_adding('CAP_SYS_ADMIN')))
    assert got['pagemap'] is True and got['pagemap_pfn'] is True
    assert got['clear_refs'] == 'EACCES' and got['mem_write'] == 'EACCES'


def test_each_granted_capability_is_needed(nobodys_workload):
    w = nobodys_workload
    unit = service()
    no_ptrace = probe(w, unit['CapabilityBoundingSet'] - {'CAP_SYS_PTRACE'},
                      unit['ReadOnlyPaths'])
    assert no_ptrace['identity'] is True
    for name in ('maps', 'move_pages_query', 'move_pages_move'):
        assert no_ptrace[name] in ('EACCES', 'EPERM'), (name, no_ptrace)


def test_cap_sys_nice_does_not_open_move_pages(nobodys_workload):
    # The move_pages(2) check is a ptrace access check (Linux 4.13 on);
    # CAP_SYS_NICE counts only for MPOL_MF_MOVE_ALL, which the agent
    # does not use.
    got = probe(nobodys_workload, {'CAP_SYS_NICE'})
    assert got['move_pages_move'] in ('EACCES', 'EPERM'), got
    assert got['maps'] in ('EACCES', 'EPERM'), got

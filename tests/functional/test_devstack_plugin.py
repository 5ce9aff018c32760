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

"""The DevStack plugin (devstack/settings, devstack/plugin.sh), phase by
phase, in bash against tests/fixtures/devstack/functions-stub.sh, a
stand-in for DevStack's helpers: ini files are written for real, and the
calls that would install, start processes or talk to the cloud are
recorded.  The flavor properties come from the real ``loki-memtier`` of
this virtualenv, found the way the plugin finds it (DevStack's python exec
prefix), and are checked against exact values.

Like DevStack, one bash process runs stack.sh's phases in turn, and
unstack.sh and clean.sh run in processes of their own.
"""

import configparser
import os
import shlex
import socket
import stat
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
STUB = os.path.join(REPO, 'tests', 'fixtures', 'devstack',
                    'functions-stub.sh')
BIN_DIR = os.path.dirname(sys.executable)
RABBIT = {'RABBIT_USERID': 'stackrabbit', 'RABBIT_PASSWORD': 's3cret',
          'RABBIT_HOST': '192.0.2.10'}
CELL_URL = 'rabbit://stackrabbit:s3cret@192.0.2.10:5672/nova_cell1'

STATIC_PROPS = [
    'loki:memory_tier_policy=static',
    'loki:dram_percent=25',
    'resources:MEMORY_MB=256',
    'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=768',
    'trait:CUSTOM_LOKI_TIERED_MEMORY=required',
]
ON_DEMAND_PROPS = [
    'loki:memory_tier_policy=on_demand',
    'loki:dram_mb=512',
    'loki:dram_max_mb=1536',
    'resources:MEMORY_MB=512',
    'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=1536',
    'trait:CUSTOM_LOKI_TIERED_MEMORY=required',
]
NOVA_CPU_CONF = '''\
[DEFAULT]
transport_url = %s
compute_driver = libvirt.LibvirtDriver
host = compute-7
my_ip = 192.0.2.11

[libvirt]
virt_type = qemu
''' % CELL_URL


class DevStack:
    """One node's DevStack: its environment, /etc and /run in tmp_path."""

    def __init__(self, tmp_path, **settings):
        self.tmp = tmp_path
        self.log = tmp_path / 'calls.log'
        self.nova_cpu_conf = tmp_path / 'etc' / 'nova' / 'nova-cpu.conf'
        self.conf_dir = tmp_path / 'etc' / 'loki-nova'
        self.conf = self.conf_dir / 'memtier.conf'
        self.state_dir = tmp_path / 'run' / 'loki-memtier'
        self.nova_cpu_conf.parent.mkdir(parents=True)
        self.env = {
            # No virtualenv on PATH: the plugin must find loki-memtier
            # through DevStack's python exec prefix.
            'PATH': '/usr/sbin:/usr/bin:/sbin:/bin',
            'HOME': str(tmp_path),
            'LANG': 'C.UTF-8',
            'DEVSTACK_STUB_LOG': str(self.log),
            'DEVSTACK_STUB_BIN_DIR': BIN_DIR,
            'ENABLED_SERVICES': 'key,n-api,n-cond,n-sch,n-cpu,placement-api',
            'NOVA_CPU_CONF': str(self.nova_cpu_conf),
            'ENABLE_DEBUG_LOG_LEVEL': 'True',
            'LOKI_CONF_DIR': str(self.conf_dir),
            'LOKI_MEMTIER_STATE_DIR': str(self.state_dir),
            **RABBIT,
        }
        self.env.update(settings)

    def run(self, *phases, localrc=''):
        """Source the stub and the settings, then plugin.sh once per phase
        (each a string such as 'stack install'), in one bash."""
        lines = ['set -o errexit -o nounset',
                 'source %s' % shlex.quote(STUB),
                 localrc,
                 'source %s' % shlex.quote(
                     os.path.join(REPO, 'devstack', 'settings'))]
        lines += ['source %s %s' % (shlex.quote(
            os.path.join(REPO, 'devstack', 'plugin.sh')), phase)
            for phase in phases]
        return subprocess.run(['bash', '-c', '\n'.join(lines)],
                              env=self.env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=300)

    def check(self, *phases, **kwargs):
        done = self.run(*phases, **kwargs)
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    def calls(self, name=None):
        if not self.log.exists():
            return []
        calls = [shlex.split(line)
                 for line in self.log.read_text().splitlines()]
        return [c for c in calls if name is None or c[0] == name]

    def flavor_calls(self):
        return [c[3:] for c in self.calls('openstack')]


def read_ini(path):
    """{section: {option: value}}, DEFAULT as a section of its own."""
    parser = configparser.RawConfigParser(default_section='no DEFAULT')
    parser.optionxform = str
    parser.read_string(path.read_text())
    return {name: dict(parser[name]) for name in parser.sections()}


def cli_properties(*args):
    """The properties the real ``loki-memtier flavor-properties`` prints."""
    done = subprocess.run(
        [os.path.join(BIN_DIR, 'loki-memtier'), 'flavor-properties', *args],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # One shell command, its lines continued with backslashes.
    words = shlex.split(done.stdout.replace('\\\n', ' '))
    assert words[:3] == ['openstack', 'flavor', 'set']
    assert words[4::2] == ['--property'] * len(words[5::2])
    return words[5::2]


def property_args(props):
    return [arg for prop in props for arg in ('--property', prop)]


def test_stack_unstack_clean(tmp_path):
    node = DevStack(tmp_path, LOKI_NODE_TIERS='0:0,1:1')
    node.nova_cpu_conf.write_text(NOVA_CPU_CONF)

    node.check('stack install')
    assert node.calls() == [['setup_develop', REPO]]

    node.check('stack install', 'stack post-config')
    # nova-compute's file keeps everything DevStack put there.
    assert read_ini(node.nova_cpu_conf) == {
        'DEFAULT': {'transport_url': CELL_URL,
                    'compute_driver': 'loki.LokiDriver',
                    'host': 'compute-7',
                    'my_ip': '192.0.2.11'},
        'libvirt': {'virt_type': 'qemu'},
        'loki': {'node_tiers': '0:0,1:1'},
    }
    # The agent: nova-compute's bus (its cell's virtual host) and host.
    assert read_ini(node.conf) == {
        'DEFAULT': {'transport_url': CELL_URL, 'debug': 'True'},
        'oslo_messaging_notifications': {'driver': 'messagingv2'},
        'memtier': {'host': 'compute-7',
                    'state_dir': str(node.state_dir),
                    'registration_dir': str(node.state_dir / 'guests'),
                    'node_tiers': '0:0,1:1'},
    }
    assert stat.S_IMODE(node.conf.stat().st_mode) == 0o600
    assert node.calls('iniset_rpc_backend') == []
    assert node.calls('run_process') == []
    assert node.calls('openstack') == []

    node.log.unlink()
    node.check('stack install', 'stack post-config', 'stack extra')
    assert node.calls('run_process') == [[
        'run_process', 'loki-memtier',
        '%s/loki-memtier-agent --config-file %s' % (BIN_DIR, node.conf),
        'root', 'root']]
    assert node.calls('stop_process') == []
    # The properties are the CLI's, and those are the exact split.
    assert cli_properties('--memory-mb', '1024', '--policy', 'static',
                          '--dram-percent', '25') == STATIC_PROPS
    assert cli_properties('--memory-mb', '2048', '--policy', 'on_demand',
                          '--dram-mb', '512', '--dram-max-mb',
                          '1536') == ON_DEMAND_PROPS
    for call in node.calls('openstack'):
        assert call[1:3] == ['--os-cloud', 'devstack-admin']
    assert node.flavor_calls() == [
        ['flavor', 'show', '-f', 'value', '-c', 'ram', 'loki.static'],
        ['flavor', 'create', '--ram', '1024', '--vcpus', '1', '--disk', '1',
         'loki.static'],
        ['flavor', 'set', *property_args(STATIC_PROPS), 'loki.static'],
        ['flavor', 'show', '-f', 'value', '-c', 'ram', 'loki.on-demand'],
        ['flavor', 'create', '--ram', '2048', '--vcpus', '1', '--disk', '1',
         'loki.on-demand'],
        ['flavor', 'set', *property_args(ON_DEMAND_PROPS),
         'loki.on-demand'],
    ]

    # The agent leaves state behind while it runs.
    (node.state_dir / 'guests').mkdir(parents=True)
    (node.state_dir / 'damon.json').write_text('{}')
    node.log.unlink()
    node.check('unstack')
    assert node.calls() == [['stop_process', 'loki-memtier']]
    assert node.conf.exists() and node.state_dir.exists()

    # clean.sh runs unstack.sh first.
    node.log.unlink()
    node.check('unstack', 'clean')
    assert node.calls() == [['stop_process', 'loki-memtier']]
    assert not node.conf.exists()
    assert not node.conf_dir.exists()
    assert not node.state_dir.exists()
    # DevStack's own clean removes /etc/nova; the plugin leaves it alone.
    assert node.nova_cpu_conf.exists()


def test_clean_keeps_a_config_dir_with_other_files(tmp_path):
    node = DevStack(tmp_path)
    node.check('stack post-config')
    other = node.conf_dir / 'operator-notes.txt'
    other.write_text('mine\n')
    node.check('clean')
    assert not node.conf.exists()
    assert other.read_text() == 'mine\n'


def test_defaults_without_nova_cpu_transport(tmp_path):
    """No transport_url or host in nova-cpu.conf yet, no node tiers, no
    flavor ceiling: DevStack's own transport URL, this machine's host
    name, no node_tiers anywhere, no loki:dram_max_mb."""
    node = DevStack(tmp_path, LOKI_FLAVOR_ON_DEMAND_DRAM_MAX_MB='',
                    LOKI_FLAVOR_STATIC_NAME='tier.s',
                    LOKI_FLAVOR_STATIC_RAM_MB='4096',
                    LOKI_FLAVOR_STATIC_DRAM_PERCENT='10',
                    LOKI_FLAVOR_VCPUS='2', LOKI_FLAVOR_DISK_GB='5')
    del node.env['ENABLE_DEBUG_LOG_LEVEL']
    node.check('stack install', 'stack post-config', 'stack extra')

    assert read_ini(node.nova_cpu_conf) == {
        'DEFAULT': {'compute_driver': 'loki.LokiDriver'}}
    assert node.calls('iniset_rpc_backend') == [
        ['iniset_rpc_backend', 'loki-nova', str(node.conf), 'DEFAULT']]
    assert read_ini(node.conf) == {
        'DEFAULT': {
            'transport_url': 'rabbit://stackrabbit:s3cret@192.0.2.10:5672/'},
        'oslo_messaging_notifications': {'driver': 'messagingv2'},
        'memtier': {'host': socket.gethostname(),
                    'state_dir': str(node.state_dir),
                    'registration_dir': str(node.state_dir / 'guests')},
    }
    static = cli_properties('--memory-mb', '4096', '--policy', 'static',
                            '--dram-percent', '10')
    assert static == [
        'loki:memory_tier_policy=static', 'loki:dram_percent=10',
        'resources:MEMORY_MB=410', 'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=3686',
        'trait:CUSTOM_LOKI_TIERED_MEMORY=required']
    on_demand = [p for p in ON_DEMAND_PROPS if 'dram_max_mb' not in p]
    assert cli_properties('--memory-mb', '2048', '--policy', 'on_demand',
                          '--dram-mb', '512') == on_demand
    assert node.flavor_calls() == [
        ['flavor', 'show', '-f', 'value', '-c', 'ram', 'tier.s'],
        ['flavor', 'create', '--ram', '4096', '--vcpus', '2', '--disk', '5',
         'tier.s'],
        ['flavor', 'set', *property_args(static), 'tier.s'],
        ['flavor', 'show', '-f', 'value', '-c', 'ram', 'loki.on-demand'],
        ['flavor', 'create', '--ram', '2048', '--vcpus', '2', '--disk', '5',
         'loki.on-demand'],
        ['flavor', 'set', *property_args(on_demand), 'loki.on-demand'],
    ]


def test_memtier_host_setting_wins(tmp_path):
    node = DevStack(tmp_path, LOKI_MEMTIER_HOST='cmp-a.example')
    node.nova_cpu_conf.write_text(NOVA_CPU_CONF)
    node.check('stack post-config')
    assert read_ini(node.conf)['memtier']['host'] == 'cmp-a.example'


def test_controller_only_creates_flavors(tmp_path):
    node = DevStack(tmp_path, ENABLED_SERVICES='key,n-api,n-cond,n-sch')
    node.nova_cpu_conf.write_text(NOVA_CPU_CONF)
    node.check('stack install', 'stack post-config', 'stack extra')
    assert node.nova_cpu_conf.read_text() == NOVA_CPU_CONF
    assert not node.conf_dir.exists()
    assert node.calls('setup_develop') == [['setup_develop', REPO]]
    assert node.calls('run_process') == []
    assert [c[0] for c in node.flavor_calls()] == ['flavor'] * 6


def test_compute_only_node(tmp_path):
    node = DevStack(tmp_path, ENABLED_SERVICES='n-cpu,placement-client')
    node.nova_cpu_conf.write_text(NOVA_CPU_CONF)
    node.check('stack install', 'stack post-config', 'stack extra')
    assert read_ini(node.nova_cpu_conf)['DEFAULT']['compute_driver'] == \
        'loki.LokiDriver'
    assert node.conf.exists()
    assert len(node.calls('run_process')) == 1
    assert node.calls('openstack') == []


def test_disabled_agent_and_flavors(tmp_path):
    node = DevStack(tmp_path, LOKI_CREATE_FLAVORS='False')
    node.nova_cpu_conf.write_text(NOVA_CPU_CONF)
    node.check('stack install', 'stack post-config', 'stack extra',
               localrc='disable_service loki-memtier')
    assert read_ini(node.nova_cpu_conf)['DEFAULT']['compute_driver'] == \
        'loki.LokiDriver'
    assert not node.conf_dir.exists()
    assert node.calls('run_process') == []
    assert node.calls('openstack') == []
    node.check('unstack', localrc='disable_service loki-memtier')
    assert node.calls('stop_process') == []


def test_existing_flavor_with_the_same_ram_is_only_updated(tmp_path):
    node = DevStack(tmp_path, DEVSTACK_STUB_FLAVORS='loki.static=1024')
    node.check('stack extra')
    flavor = node.flavor_calls()
    assert flavor[:2] == [
        ['flavor', 'show', '-f', 'value', '-c', 'ram', 'loki.static'],
        ['flavor', 'set', *property_args(STATIC_PROPS), 'loki.static']]
    assert flavor[3][:2] == ['flavor', 'create']


@pytest.mark.parametrize('settings,flavor,message', [
    ({'DEVSTACK_STUB_FLAVORS': 'loki.static=4096'}, 'loki.static',
     'flavor loki.static exists with 4096 MiB of RAM, not 1024'),
    ({'LOKI_FLAVOR_STATIC_DRAM_PERCENT': '0'}, 'loki.static',
     'loki:dram_percent must be an integer from 1 to 100, got 0'),
    ({'LOKI_FLAVOR_ON_DEMAND_DRAM_MAX_MB': '256'}, 'loki.on-demand',
     'loki:dram_max_mb must be an integer from the floor (512 MiB)'),
], ids=['other-ram', 'bad-percent', 'ceiling-below-floor'])
def test_flavor_errors_stop_the_stack(tmp_path, settings, flavor, message):
    node = DevStack(tmp_path, **settings)
    done = node.run('stack extra')
    assert done.returncode == 1
    assert message in done.stderr
    touched = [c for c in node.flavor_calls() if c[-1] == flavor]
    assert [c[1] for c in touched] in ([], ['show'])
    assert 'loki.on-demand' not in str(node.flavor_calls()) or \
        flavor == 'loki.on-demand'

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

"""The real agent loop and its message-bus side in threads of the test
process, for tests of the RPC API and the usage notifications.

This machine has one NUMA node and no usable access tracker, so the
agent's topology and its view of /sys come from the ``two_tier`` fixture
tree (fast tier 1024 MiB, 768 MiB free on each node), its samples are
replayed, and its mover runs in query mode (a query stands in for a move
that worked); guests are real workload processes found by the process
watcher in the machine's /proc.
"""

import os
import threading
import time

import numpy as np
from oslo_config import cfg
import oslo_messaging as messaging

from loki_nova.conf import memtier as memtier_conf
from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier import rpc
from loki_nova.memtier import service
from loki_nova.memtier import topology
from loki_nova.memtier.trackers import replay

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures',
                        'kernfs')
HOST = 'compute-7'
# The fixture's fast tier has 1024 MiB, and each node 768 MiB free.
FAST_MB = 1024
NODE_FREE_MB = 768


def make_conf(tmp_path, notifications=False, url='fake:/', host=HOST,
              **memtier):
    settings = dict(dram_reserve_mb=0, dram_free_min_mb=0,
                    watchers='process',
                    registration_dir=tmp_path / 'guests',
                    state_dir=tmp_path / 'state', interval=0.5,
                    host=host, usage_interval=1.0)
    settings.update(memtier)
    text = '[DEFAULT]\ntransport_url = %s\n[memtier]\n' % url + ''.join(
        '%s = %s\n' % kv for kv in settings.items())
    if notifications:
        text += '[oslo_messaging_notifications]\ndriver = messagingv2\n'
    path = tmp_path / 'memtier.conf'
    path.write_text(text)
    conf = cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    rpc.prepare_conf(conf)
    messaging.get_rpc_transport(conf)   # registers the transport options
    conf(['--config-file', str(path)], project='loki-nova')
    return conf


class FixtureSysFS(kernfs.KernelFS):
    """The machine's /proc, where the workload guests really run, with the
    fixture tree's /sys: a stand-in for the sysfs of a host with a slow
    NUMA node, which this machine does not have."""

    def __init__(self, fixture_root):
        super().__init__('/')
        self.fixture = kernfs.KernelFS(fixture_root)

    def path(self, rel):
        if rel.lstrip('/').startswith('sys/'):
            return self.fixture.path(rel)
        return super().path(rel)


def all_hot(g, layout, n):
    return np.full(len(layout), 20, np.uint8)


class Running:
    """The agent's loop and its RPC server, both in threads of this
    process, and a client on the same in-memory transport."""

    def __init__(self, conf, source=all_hot, fixture_kfs=False,
                 agent=None):
        """``fixture_kfs``: read /proc from the fixture tree too, not only
        /sys (for an agent without process guests where reading the
        machine's own /proc is not allowed, as in Nova's harness).
        ``agent``: run this agent instead (on a real two-tier kernel, an
        agent built from the configuration alone)."""
        if agent is None:
            root = os.path.join(FIXTURES, 'two_tier')
            fixture = kernfs.KernelFS(root)
            agent = agent_mod.Agent(
                conf.memtier,
                kfs=fixture if fixture_kfs else FixtureSysFS(root),
                topology=topology.discover(fixture),
                tracker=replay.ReplayTracker(source),
                mover=mover.Mover(mover.RateLimiter(1 << 30),
                                  query_only=True))
        self.agent = agent
        self.transport = messaging.get_rpc_transport(conf)
        self.bus = service.AgentMessaging(
            conf, self.agent, transport=self.transport,
            notification_transport=messaging.get_notification_transport(
                conf))
        self.client = rpc.AgentClient(self.transport, timeout=30)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)

    def __enter__(self):
        self.bus.start()
        assert self.bus.wait_started(30)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.agent.shutdown()
        self.thread.join(30)
        self.bus.stop()
        assert not self.thread.is_alive()

    def wait_interval(self, number, timeout=30):
        deadline = time.monotonic() + timeout
        while self.agent.number < number:
            assert time.monotonic() < deadline, 'agent loop stalled'
            time.sleep(0.02)
        while self.agent.last_report is None or \
                self.agent.last_report.number < number:
            assert time.monotonic() < deadline, 'agent loop stalled'
            time.sleep(0.02)
        return self.agent.last_report

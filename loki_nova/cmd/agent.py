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

"""``loki-memtier-agent``: the per-host tiering agent as a service.

Reads ``/etc/loki-nova/memtier.conf`` (or ``--config-file``), logs through
oslo.log, and runs the loop until SIGTERM or SIGINT, which finish the
move batch in flight, stop the agent's kdamonds and exit 0.  A host it
cannot tier (no slow memory tier, no access tracker, a bad option) makes it
exit 1 at once with a message saying what it saw.
"""

import os
import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

from loki_nova.conf import memtier as memtier_conf

LOG = logging.getLogger(__name__)
DEFAULT_CONFIG = '/etc/loki-nova/memtier.conf'


def parse_args(argv, conf=None):
    conf = conf or cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    logging.register_options(conf)
    # oslo.messaging's options are registered only when RPC is on (main):
    # importing it costs seconds, and a minute under TCG.
    defaults = [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []
    conf(argv, project='loki-nova', prog='loki-memtier-agent',
         default_config_files=defaults)
    return conf


def main(argv=None):
    conf = parse_args(sys.argv[1:] if argv is None else argv)
    logging.setup(conf, 'loki-memtier-agent')
    # Imported after logging is set up, so their loggers are configured.
    from loki_nova.memtier import agent as agent_mod
    from loki_nova.memtier import topology
    from loki_nova.memtier import trackers

    try:
        # Read every option now, so a malformed value stops the start
        # with oslo.config's message naming it, not later mid-loop.
        for opt in memtier_conf.memtier_opts:
            getattr(conf.memtier, opt.dest)
    except cfg.Error as exc:
        LOG.error('cannot start: %s', exc)
        return 1
    exporter = None
    if conf.memtier.metrics_listen:
        # Listen first: an address in use stops the start before the
        # agent touches the kernel, with a message naming the option.
        from loki_nova.memtier import metrics
        try:
            exporter = metrics.MetricsServer(conf.memtier.metrics_listen)
        except metrics.ListenError as exc:
            LOG.error('cannot start: %s', exc)
            return 1
    stop = threading.Event()
    agent = None

    def _stop(signum, frame):
        LOG.info('signal %d received: stopping after the current move '
                 'batch', signum)
        stop.set()
        if agent is not None:
            agent.shutdown()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        agent = agent_mod.Agent(conf.memtier, stop=stop)
    except (topology.TopologyError, trackers.TrackerUnavailable,
            cfg.Error, ValueError, OSError) as exc:
        LOG.error('cannot start: %s', exc)
        if exporter is not None:
            exporter.close()
        return 1
    LOG.info('loki-memtier-agent started: %d watcher(s), %s tracker, '
             'interval %.1f s, move cap %d MiB/s', len(agent.watchers),
             agent.tracker.name, conf.memtier.interval,
             conf.memtier.move_rate_mb_per_s)
    bus = None
    if conf.memtier.rpc_enabled:
        from loki_nova.memtier import backend
        try:
            # Before oslo.messaging is imported (see backend).
            backend.use_threading()
            from loki_nova.memtier import service
            service.register_opts(conf)
            bus = service.AgentMessaging(conf, agent)
        except backend.BackendUnavailable as exc:
            failure = str(exc)
        except Exception as exc:
            failure = 'the message bus settings are not usable: %s' % exc
        if bus is None:
            LOG.error('cannot start: %s', failure)
            agent.close()
            if exporter is not None:
                exporter.close()
            return 1
        bus.start()
    else:
        LOG.info('RPC and usage notifications are off ([memtier] '
                 'rpc_enabled = false)')
    if exporter is not None:
        exporter.serve(agent)
    try:
        agent.run()
    finally:
        if bus is not None:
            bus.stop()
        if exporter is not None:
            exporter.close()
    LOG.info('loki-memtier-agent stopped after %d interval(s)',
             agent.number)
    return 0


if __name__ == '__main__':
    sys.exit(main())

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

"""The agent on the message bus: its RPC server and usage notifications.

Both run beside the tiering loop and never block it.  The RPC server is
started from a thread of its own, because connecting to a broker that is
down waits (oslo.messaging retries until it is back); calls are served
by oslo.messaging's threading executor.  Usage payloads go out through a
``usage.UsageSender`` thread.
"""

import logging
import threading
import time

import oslo_messaging as messaging

from loki_nova.memtier import rpc
from loki_nova.memtier import usage

LOG = logging.getLogger(__name__)
#: The agent's default exchange (``[DEFAULT] control_exchange``), which is
#: where its notifications go; its RPC uses rpc.EXCHANGE whatever this is.
CONTROL_EXCHANGE = 'loki'


def register_opts(conf):
    messaging.set_transport_defaults(control_exchange=CONTROL_EXCHANGE)
    rpc.prepare_conf(conf)


class AgentMessaging:
    """Serve ``agent`` over ``conf``'s transport (``[DEFAULT]
    transport_url``) as ``conf.memtier.host``, and send its usage."""

    def __init__(self, conf, agent, transport=None,
                 notification_transport=None):
        rpc.prepare_conf(conf)
        self.conf = conf
        self.agent = agent
        self.host = conf.memtier.host
        self.transport = transport or messaging.get_rpc_transport(conf)
        self.server = rpc.get_server(self.transport, self.host, agent)
        self._started = threading.Event()
        self._thread = None
        self.sender = None
        period = conf.memtier.usage_interval
        notifier = None
        if period > 0:
            ntransport = (notification_transport or
                          messaging.get_notification_transport(conf))
            notifier = messaging.Notifier(
                ntransport, publisher_id='loki-memtier.%s' % self.host)
            if not notifier.is_enabled():
                LOG.info('usage notifications are off: no '
                         '[oslo_messaging_notifications] driver is set')
                notifier = None
        if notifier is not None:
            self.meter = usage.UsageMeter(self.host, period, time.time())
            self.sender = usage.UsageSender(notifier, rpc.USAGE_EVENT)
            agent.listeners.append(self._on_report)
            LOG.info('usage notifications every %.0f s as %s',
                     period, rpc.USAGE_EVENT)

    def _on_report(self, report):
        payloads = self.meter.add(report)
        if payloads:
            LOG.debug('usage of %d instance(s) for %.0f s queued',
                      len(payloads), payloads[0]['period_s'])
            self.sender.put(payloads)

    def start(self):
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name='loki-rpc-start')
        self._thread.start()

    def _serve(self):
        try:
            self.server.start()
        except Exception:
            LOG.exception('the RPC server could not start; tiering goes on '
                          'without it')
            return
        self._started.set()
        LOG.info('serving RPC as %s on topic %s (exchange %s, API %s)',
                 self.host, rpc.TOPIC, rpc.EXCHANGE, rpc.VERSION)

    def wait_started(self, timeout):
        return self._started.wait(timeout)

    def stop(self, timeout=10):
        if self._started.is_set():
            done = threading.Thread(target=self._stop_server, daemon=True)
            done.start()
            done.join(timeout)
            if done.is_alive():
                LOG.warning('the RPC server did not stop in %d s', timeout)
        if self.sender is not None:
            self.sender.close(timeout)

    def _stop_server(self):
        self.server.stop()
        self.server.wait()

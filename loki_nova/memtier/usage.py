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

"""Usage of each tiered instance per period, for billing and telemetry.

``UsageMeter`` is fed every interval report and, once a period is over,
returns one payload per instance seen in it:

===================  =====================================================
``instance_uuid``    the instance (registration name for process guests)
``host``             the agent's host
``policy``           ``static`` or ``on_demand``
``dram_mb``          DRAM held at the end of the period
``slow_mb``          slow-tier memory held at the end of the period
``dram_mb_avg``      time-weighted mean DRAM over the period
``slow_mb_avg``      time-weighted mean slow memory over the period
``floor_mb``         guaranteed DRAM
``ceiling_mb``       most DRAM an on_demand guest may get
``budget_mb``        DRAM budget at the end of the period
``promoted_mb``      MiB moved to DRAM in the period
``demoted_mb``       MiB moved to the slow tier in the period
``period_start``     ISO 8601 UTC
``period_end``       ISO 8601 UTC
``period_s``         seconds
``intervals``        tiering intervals in the period that saw the instance
===================  =====================================================

A consumer meters DRAM and slow memory separately from ``dram_mb_avg``
× ``period_s`` and ``slow_mb_avg`` × ``period_s`` (MiB-seconds).
"""

import datetime
import logging
import queue
import threading

LOG = logging.getLogger(__name__)


def _iso(ts):
    return datetime.datetime.fromtimestamp(
        ts, datetime.timezone.utc).isoformat(timespec='seconds')


class _Sums:
    def __init__(self):
        self.dram_mb_s = 0.0
        self.slow_mb_s = 0.0
        self.seconds = 0.0
        self.promoted_mb = 0.0
        self.demoted_mb = 0.0
        self.intervals = 0
        self.last = None


class UsageMeter:
    """Accumulates interval reports into per-period usage payloads."""

    def __init__(self, host, period_s, start):
        if period_s <= 0:
            raise ValueError('period_s must be > 0, got %r' % (period_s,))
        self.host = host
        self.period_s = period_s
        self.start = start
        self._prev = start
        self._sums = {}

    def add(self, report):
        """Count one ``IntervalReport``; return the payloads of the period
        it closes (an empty list while the period runs)."""
        ended = report.ended
        weight = max(0.0, ended - self._prev)
        self._prev = ended
        for key, st in report.guests.items():
            s = self._sums.setdefault(key, _Sums())
            s.dram_mb_s += st.dram_mb * weight
            s.slow_mb_s += st.slow_mb * weight
            s.seconds += weight
            s.promoted_mb += st.promoted_mb
            s.demoted_mb += st.demoted_mb
            s.intervals += 1
            s.last = st
        if ended - self.start < self.period_s:
            return []
        out = [self._payload(key, s, ended)
               for key, s in sorted(self._sums.items())]
        self.start = ended
        self._sums = {}
        return out

    def _payload(self, key, s, ended):
        st = s.last
        seconds = s.seconds or 1.0
        return {
            'instance_uuid': key,
            'host': self.host,
            'policy': st.policy,
            'dram_mb': round(st.dram_mb, 1),
            'slow_mb': round(st.slow_mb, 1),
            'dram_mb_avg': round(s.dram_mb_s / seconds, 1),
            'slow_mb_avg': round(s.slow_mb_s / seconds, 1),
            'floor_mb': st.floor_mb,
            'ceiling_mb': st.ceiling_mb,
            'budget_mb': round(st.budget_mb, 1),
            'promoted_mb': round(s.promoted_mb, 1),
            'demoted_mb': round(s.demoted_mb, 1),
            'period_start': _iso(self.start),
            'period_end': _iso(ended),
            'period_s': round(ended - self.start, 3),
            'intervals': s.intervals,
        }


class UsageSender:
    """Sends payloads from a thread of its own, so that a broker that is
    away never holds up tiering.  At most ``backlog`` payloads wait; when
    more come, the oldest are dropped and counted in the log."""

    def __init__(self, notifier, event_type, backlog=10000):
        self.notifier = notifier
        self.event_type = event_type
        self.queue = queue.Queue()
        self.backlog = backlog
        self.dropped = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='loki-usage-sender')
        self._thread.start()

    def put(self, payloads):
        for p in payloads:
            while self.queue.qsize() >= self.backlog:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    break
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    LOG.warning('%d usage notification(s) dropped so far: '
                                'the notification bus has not taken them',
                                self.dropped)
            self.queue.put(p)

    def _run(self):
        while True:
            payload = self.queue.get()
            if payload is None:
                return
            try:
                self.notifier.info({}, self.event_type, payload)
                self.sent += 1
            except Exception:
                LOG.exception('usage notification for %s not sent',
                              payload.get('instance_uuid'))

    def close(self, timeout=10):
        """Send what is queued (for at most ``timeout`` seconds)."""
        self.queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            LOG.warning('%d usage notification(s) not sent at stop',
                        self.queue.qsize())

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

"""The real ``loki-memtier-agent`` as a child process of a sandbox test.

Its configuration lives in the test's ``tmp_path``: DAMON tracker, the
process watcher on ``tmp_path/guests``, kdamond records in
``tmp_path/state``, no host DRAM reserve, no RPC, a debug log in
``tmp_path/agent.log``.  Keyword arguments override ``[memtier]``
options.  Every process started here is ended by its pid."""

import os
import re
import signal
import subprocess
import sys
import time


class AgentProcess:
    def __init__(self, tmp_path, default=None, **options):
        """``options`` go to [memtier], ``default`` (a dict) to
        [DEFAULT]."""
        self.log = tmp_path / 'agent.log'
        self.conf = tmp_path / 'memtier.conf'
        opts = dict(interval=1.0, tracker='damon', watchers='process',
                    registration_dir=tmp_path / 'guests',
                    state_dir=tmp_path / 'state', dram_reserve_mb=0,
                    dram_free_min_mb=0,
                    rpc_enabled=False)
        opts.update(options)
        body = '\n'.join('%s = %s' % kv for kv in opts.items())
        extra = ''.join('%s = %s\n' % kv for kv in (default or {}).items())
        self.conf.write_text('[DEFAULT]\ndebug = true\nlog_file = %s\n%s'
                             '[memtier]\n%s\n' % (self.log, extra, body))
        self.proc = None
        self._offset = 0
        self.start()

    def start(self):
        """Start the agent (again, after it ended) with the same
        configuration; ``text`` then reads only this run's log."""
        assert self.proc is None or self.proc.poll() is not None
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable),
                          'loki-memtier-agent'),
             '--config-file', str(self.conf)])

    def text(self):
        """The log of the current run."""
        if not self.log.exists():
            return ''
        with open(self.log, 'rb') as fh:
            fh.seek(self._offset)
            return fh.read().decode(errors='replace')

    def intervals(self):
        """The number of the last interval the current run finished."""
        found = re.findall(r'interval (\d+):', self.text())
        return int(found[-1]) if found else 0

    def wait_interval_after(self, n, timeout=180):
        """Until the current run has finished an interval after ``n``
        (bounded by ``timeout`` seconds); fails if the agent exits."""
        deadline = time.monotonic() + timeout
        while self.intervals() <= n:
            assert self.proc.poll() is None, (
                'the agent exited (status %s):\n%s'
                % (self.proc.returncode, self.text()[-3000:]))
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.1)
        return self.intervals()

    def kill(self, timeout=60):
        """SIGKILL, as a crash would end it; returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout)

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise

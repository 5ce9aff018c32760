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

"""Start ``loki_nova.memtier.workload`` processes for tests and talk to
them; every process started here is ended here, by pid."""

import os
import select
import subprocess
import sys
import time


class Workload:
    def __init__(self, *args, timeout=60):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'loki_nova.memtier.workload',
             *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._buf = b''
        try:
            word, pid, start, end = self.reply().split()
        except Exception:
            self.kill()
            raise
        assert word == 'ready' and int(pid) == self.proc.pid
        self.pid = self.proc.pid
        self.start, self.end = int(start, 16), int(end, 16)

    def reply(self):
        """The next line, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('workload %d did not answer in %.0f s'
                                   % (self.proc.pid, self.timeout))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 4096)
                if not data:
                    raise EOFError('workload %d exited (status %s)'
                                   % (self.proc.pid, self.proc.poll()))
                self._buf += data
        line, self._buf = self._buf.split(b'\n', 1)
        return line.decode().strip()

    def command(self, text):
        self.proc.stdin.write(text + '\n')
        self.proc.stdin.flush()
        return self.reply()

    def checksum_ok(self):
        return self.command('checksum') == 'checksum ok'

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(self.timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.command('exit')
                self.proc.wait(self.timeout)
            except (OSError, TimeoutError, EOFError,
                    subprocess.TimeoutExpired):
                pass
        self.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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

"""A private, real RabbitMQ broker on loopback for tests.

``RabbitBroker`` runs Debian's ``rabbitmq-server`` (3.10.x) as a child of
the test process, with everything it writes in its own temporary
directory and every socket it opens bound to 127.0.0.1::

    from tests import rabbit

    def test_something():
        rabbit.skip_or_fail_without_rabbit()
        with rabbit.RabbitBroker() as broker:
            transport = oslo_messaging.get_rpc_transport(conf,
                                                         url=broker.url)
            ...
            broker.restart()      # same port, same data: durable state stays

* ``start()`` picks three free loopback ports (AMQP, Erlang distribution,
  epmd), starts its own ``epmd`` in the foreground as a child process and
  waits until it answers, then starts the broker in a new session (its own
  process group) and waits (bounded, ``start_timeout``) until a real AMQP
  connection with kombu succeeds.  A broker that exits early fails the
  start at once, with the end of its logs in the message.
* ``stop()`` sends SIGTERM to the broker, waits (bounded, ``stop_timeout``)
  for all of its processes to exit, SIGKILLs whatever is left, then stops
  epmd and removes the temporary directory.  ``leftover_pids()`` lists
  every process we started that is still alive; after ``stop()`` it is
  empty.
* ``restart()`` stops and starts the broker only (epmd keeps running), on
  the same ports, node name and data directory, so durable queues and
  persistent messages survive.  ``restart(graceful=False)`` SIGKILLs the
  broker instead (a crash: persistent messages published without
  publisher confirms may be lost, and were, in a trial).
* ``url`` is ``rabbit://guest:guest@127.0.0.1:PORT/`` (oslo.messaging),
  ``amqp_url`` the same for kombu.  RabbitMQ lets the guest user in only
  over loopback, which is all we use.
* ``messaging_conf()`` gives a private ``cfg.ConfigOpts`` that
  oslo.messaging works with; ``skip_or_fail_without_rabbit()`` skips a test
  where RabbitMQ is not installed, or fails it under
  ``LOKI_REQUIRE_RABBIT=1`` (set by .ci/run).

How the broker is run: ``/usr/sbin/rabbitmq-server`` is a wrapper that
``su``s to the ``rabbitmq`` user and runs the real script with Debian's
fixed paths (``/var/lib/rabbitmq``, ``/var/log/rabbitmq``).  We run the
real script, ``/usr/lib/rabbitmq/bin/rabbitmq-server``, directly as the
current user (root works) with ``HOME`` set to the temporary directory (the
Erlang cookie is written there) and these variables:

``RABBITMQ_NODENAME=loki-<pid>-<n>@localhost``, ``RABBITMQ_MNESIA_BASE``,
``RABBITMQ_LOG_BASE``, ``RABBITMQ_LOGS`` (one file), ``RABBITMQ_CONFIG_FILE``
(``listeners.tcp.1 = 127.0.0.1:PORT``, ``listeners.ssl = none``,
``loopback_users.guest = true``), ``RABBITMQ_ADVANCED_CONFIG_FILE`` (a path
that does not exist), ``RABBITMQ_ENABLED_PLUGINS_FILE`` (``[].``: no
management plugin, no other listener), ``RABBITMQ_CONF_ENV_FILE`` (an empty
file, so /etc/rabbitmq/rabbitmq-env.conf is not read),
``RABBITMQ_NODE_IP_ADDRESS=127.0.0.1``, ``RABBITMQ_NODE_PORT``,
``RABBITMQ_DIST_PORT``, ``RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel
inet_dist_use_interface {127,0,0,1}`` (the distribution listener on
loopback too), ``ERL_EPMD_ADDRESS=127.0.0.1`` and ``ERL_EPMD_PORT``; other
``RABBITMQ_*`` and ``ERL_*`` variables of the test process are dropped.
The broker then listens on exactly two sockets, 127.0.0.1:PORT (AMQP) and
127.0.0.1:DIST_PORT; epmd on 127.0.0.1 and ::1 (it always adds loopback).

Processes: the script runs ``erl`` (``beam.smp``) in the background and
traps SIGTERM to stop it gracefully, so SIGTERM to the script's pid is a
clean broker shutdown.  ``beam.smp`` stays in the script's process group,
but its helpers ``erl_child_setup`` and ``inet_gethost`` call ``setsid()``
and leave it, so signalling the group is not enough: the fixture follows
parent links in /proc and tracks every descendant by pid and start time
(a recycled pid is never signalled).  After the broker dies its helpers
exit by themselves and are reparented to PID 1, which may show them as
zombies for a moment.  Our epmd answers before the broker starts;
otherwise ``erl`` would start an epmd of its own as a daemon, outside our
control.

Installing the package: the postinst runs ``invoke-rc.d rabbitmq-server
start`` (and erlang-base ``deb-systemd-invoke start epmd.socket`` under
systemd), which would start the system broker on all interfaces and an
epmd.  On this machine /usr/sbin/policy-rc.d (a container image's, ``exit
101``) denied it and nothing was left running; tools/setup-env.sh writes a
policy-rc.d denying just those two for its install where none exists.

Measured on this machine (2 cores, Erlang 25.2.3, RabbitMQ 3.10.8), all
while other test suites kept the load average between 10 and 35, so wall
times are inflated: a broker start costs 6.5-7.5 s of CPU (beam.smp on
both cores) and took 7.7-9.7 s of wall time at load 10-15, 14-19 s at
load 28-35, fresh or on existing data alike; a graceful stop 1.2-2 s (a
SIGKILL stop 0.1 s); ``restart()`` is the sum, 8.7-9.5 s at load 10-15;
the RPC test, about 25 s at load 10-15 and 64 s at load 25-35.
"""

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REQUIRE_ENV = 'LOKI_REQUIRE_RABBIT'
RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'
ERLANG_ROOT = '/usr/lib/erlang'

_counter = itertools.count()


def find_epmd():
    """The path of the ``epmd`` binary under /usr/lib/erlang, or None."""
    candidates = [os.path.join(ERLANG_ROOT, 'bin', 'epmd')]
    try:
        names = sorted(os.listdir(ERLANG_ROOT), reverse=True)
    except OSError:
        names = []
    candidates += [os.path.join(ERLANG_ROOT, name, 'bin', 'epmd')
                   for name in names if name.startswith('erts-')]
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return None


def rabbit_missing():
    """Why no private broker can run here, or None when one can."""
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        return ('RabbitMQ is not installed (%s is missing; apt-get install '
                'rabbitmq-server, or run tools/setup-env.sh)'
                % RABBITMQ_SERVER)
    if find_epmd() is None:
        return 'Erlang epmd not found under %s' % ERLANG_ROOT
    try:
        import kombu  # noqa: F401
    except ImportError:
        return 'kombu is not installed in this Python'
    return None


def skip_or_fail_without_rabbit():
    """Skip the calling test when RabbitMQ cannot run here.

    With ``LOKI_REQUIRE_RABBIT=1`` in the environment (CI) the test fails
    instead, with the same reason.
    """
    reason = rabbit_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == '1':
        pytest.fail('%s=1 but %s' % (REQUIRE_ENV, reason), pytrace=False)
    pytest.skip(reason)


def messaging_conf():
    """A private ``cfg.ConfigOpts`` that oslo.messaging can use.

    oslo.messaging's RPC client and server read the
    ``[oslo_messaging_tracing]`` group, which the library registers on the
    global ``cfg.CONF`` only; a bare private ``ConfigOpts`` makes every call
    fail with NoSuchOptError.  Constructing oslo.messaging's public
    ``oslo_messaging.conffixture.ConfFixture`` on the private object
    registers all of the library's groups there (tracing included);
    nothing else of the fixture is used.  No configuration file is read.
    """
    from oslo_config import cfg
    from oslo_messaging import conffixture

    conf = cfg.ConfigOpts()
    conf([], project='loki-rabbit-test', default_config_files=[],
         default_config_dirs=[])
    conffixture.ConfFixture(conf)
    return conf


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _epmd_answers(port):
    """Whether an epmd on ``port`` answers a NAMES request."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1) as s:
            s.sendall(b'\x00\x01n')  # length 1, NAMES_REQ (110)
            return len(s.recv(4)) > 0
    except OSError:
        return False


def _port_accepts(port, timeout=0.5):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=timeout):
            return True
    except OSError:
        return False


def process_table():
    """``{pid: (ppid, pgid, state, starttime)}`` of every process.

    From /proc; ``starttime`` (clock ticks after boot) tells a process from
    a later one that got the same pid.
    """
    table = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as stat:
                fields = stat.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, ...; starttime is field 22.
        table[int(name)] = (int(fields[1]), int(fields[2]), fields[0],
                            int(fields[19]))
    return table


def descendants(root, table=None):
    """``{pid: starttime}`` of the live descendants of ``root``.

    The broker's Erlang VM runs helpers that call ``setsid()`` and so leave
    the broker's process group: ``erl_child_setup`` and, under it,
    ``inet_gethost``.  Following the parent links finds them.
    """
    table = process_table() if table is None else table
    children = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if table[pid][2] != 'Z':
            found[pid] = table[pid][3]
        todo.extend(children.get(pid, ()))
    return found


def still_running(tracked, table=None):
    """The pids of ``{pid: starttime}`` that are the same live processes."""
    table = process_table() if table is None else table
    return sorted(pid for pid, started in tracked.items()
                  if pid in table and table[pid][3] == started
                  and table[pid][2] != 'Z')


def group_members(pgid, table=None):
    """Live (non-zombie) pids in process group ``pgid``."""
    table = process_table() if table is None else table
    return sorted(pid for pid, (_, group, state, _) in table.items()
                  if group == pgid and state != 'Z')


def process_alive(pid):
    """Whether ``pid`` is a live process (zombies count as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


class BrokerError(Exception):
    """The broker (or its epmd) did not start or stop as expected."""


class RabbitBroker(object):
    """One private RabbitMQ node on 127.0.0.1; see the module docstring.

    :param start_timeout: seconds to wait for the broker to accept AMQP.
    :param stop_timeout: seconds to wait for a SIGTERMed broker to exit
        before its process group is killed.
    """

    def __init__(self, start_timeout=60.0, stop_timeout=30.0):
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.base_dir = None
        self.port = None
        self.dist_port = None
        self.epmd_port = None
        self.nodename = None
        self.epmd = None
        self.process = None
        # Every process we started or saw under the broker: pid: starttime.
        self._tracked = {}
        self.start_seconds = None
        self.stop_seconds = None

    # -- public API ---------------------------------------------------------

    @property
    def url(self):
        """The oslo.messaging transport URL of this broker."""
        if self.port is None:
            raise BrokerError('broker not started')
        return 'rabbit://guest:guest@127.0.0.1:%d/' % self.port

    @property
    def amqp_url(self):
        """The same broker as a kombu URL (vhost ``/``)."""
        if self.port is None:
            raise BrokerError('broker not started')
        return 'amqp://guest:guest@127.0.0.1:%d//' % self.port

    @property
    def pid(self):
        """The broker's pid (the script, leader of its process group)."""
        return self.process.pid if self.process else None

    @property
    def epmd_pid(self):
        return self.epmd.pid if self.epmd else None

    @property
    def log_file(self):
        return os.path.join(self.base_dir, 'log', 'rabbit.log')

    def start(self):
        """Start epmd and the broker; return when AMQP connections work."""
        if self.process is not None:
            raise BrokerError('broker already running')
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix='loki-rabbit-')
            self.port = free_port()
            self.dist_port = free_port()
            self.epmd_port = free_port()
            self.nodename = 'loki-%d-%d@localhost' % (os.getpid(),
                                                      next(_counter))
            self._write_config()
        try:
            if self.epmd is None:
                self._start_epmd()
            self._start_broker()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop the broker and epmd and remove the temporary directory."""
        try:
            self._stop_broker()
        finally:
            self._stop_epmd()
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
                self.port = None

    def restart(self, graceful=True):
        """Stop and start the broker on the same ports and data.

        With ``graceful=False`` the broker is SIGKILLed instead of asked to
        stop: a crash, as clients see it (unacknowledged state may be lost).
        """
        self._stop_broker(graceful=graceful)
        self._start_broker()

    def leftover_pids(self):
        """Processes we started (any run, epmd too) that are still alive.

        The broker script, every descendant seen under it (``beam.smp``,
        ``erl_child_setup``, ``inet_gethost``) and epmd; a pid counts only
        while it is the same process (same start time).
        """
        table = process_table()
        self._track(table)
        return still_running(self._tracked, table)

    def log_tail(self, chars=4000):
        """The end of the broker's log and console output, for messages."""
        text = ''
        for name in ('console.log', 'log/rabbit.log', 'epmd.log'):
            path = os.path.join(self.base_dir or '', name)
            try:
                with open(path, errors='replace') as f:
                    data = f.read()
            except OSError:
                continue
            text += '--- %s ---\n%s\n' % (name, data[-chars:])
        return text

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals ----------------------------------------------------------

    def _path(self, *parts):
        return os.path.join(self.base_dir, *parts)

    def _write_config(self):
        for sub in ('mnesia', 'log'):
            os.makedirs(self._path(sub))
        with open(self._path('rabbitmq.conf'), 'w') as f:
            f.write('listeners.tcp.1 = 127.0.0.1:%d\n'
                    'listeners.ssl = none\n'
                    'loopback_users.guest = true\n'
                    'log.console = false\n'
                    'log.file.level = info\n' % self.port)
        with open(self._path('enabled_plugins'), 'w') as f:
            f.write('[].\n')
        open(self._path('rabbitmq-env.conf'), 'w').close()

    def _env(self):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(('RABBITMQ_', 'ERL_'))}
        env.update({
            'HOME': self.base_dir,
            'RABBITMQ_NODENAME': self.nodename,
            'RABBITMQ_USE_LONGNAME': 'false',
            'RABBITMQ_CONF_ENV_FILE': self._path('rabbitmq-env.conf'),
            'RABBITMQ_CONFIG_FILE': self._path('rabbitmq.conf'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': self._path('advanced.config'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': self._path('enabled_plugins'),
            'RABBITMQ_MNESIA_BASE': self._path('mnesia'),
            'RABBITMQ_LOG_BASE': self._path('log'),
            'RABBITMQ_LOGS': self._path('log', 'rabbit.log'),
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(self.dist_port),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
                '-kernel inet_dist_use_interface {127,0,0,1}',
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'ERL_EPMD_PORT': str(self.epmd_port),
        })
        return env

    def _start_epmd(self):
        with open(self._path('epmd.log'), 'ab') as log:
            self.epmd = subprocess.Popen(
                [find_epmd(), '-address', '127.0.0.1',
                 '-port', str(self.epmd_port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=self._env(), cwd=self.base_dir)
        self._track()
        deadline = time.monotonic() + 10
        while not _epmd_answers(self.epmd_port):
            if self.epmd.poll() is not None:
                raise BrokerError('epmd exited with %s\n%s'
                                  % (self.epmd.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                raise BrokerError('epmd did not listen on port %d in 10 s'
                                  % self.epmd_port)
            time.sleep(0.05)

    def _stop_epmd(self):
        if self.epmd is None:
            return
        if self.epmd.poll() is None:
            self.epmd.terminate()
            try:
                self.epmd.wait(10)
            except subprocess.TimeoutExpired:
                self.epmd.kill()
                self.epmd.wait(10)
        self.epmd = None

    def _start_broker(self):
        began = time.monotonic()
        with open(self._path('console.log'), 'ab') as log:
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, env=self._env(),
                cwd=self.base_dir, start_new_session=True)
        # start_new_session: the script leads a new session and group.
        self._track()
        self._wait_ready()
        self._track()
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self):
        import kombu

        deadline = time.monotonic() + self.start_timeout
        error = None
        while True:
            if self.process.poll() is not None:
                raise BrokerError('rabbitmq-server exited with %s\n%s'
                                  % (self.process.returncode,
                                     self.log_tail()))
            if _port_accepts(self.port, timeout=1):
                conn = kombu.Connection(self.amqp_url, connect_timeout=5)
                try:
                    # One attempt: connect() would retry after a 2 s sleep.
                    conn.ensure_connection(max_retries=0)
                    return
                except Exception as exc:
                    error = exc
                finally:
                    conn.release()
            if time.monotonic() > deadline:
                raise BrokerError(
                    'broker did not accept AMQP on 127.0.0.1:%d within '
                    '%.0f s (last error: %r)\n%s'
                    % (self.port, self.start_timeout, error,
                       self.log_tail()))
            time.sleep(0.1)

    def _track(self, table=None):
        """Add the broker script, its descendants and epmd to _tracked."""
        table = process_table() if table is None else table
        for child in (self.process, self.epmd):
            if child is not None and child.pid in table:
                self._tracked.setdefault(child.pid, table[child.pid][3])
        if self.process is not None:
            self._tracked.update(descendants(self.process.pid, table))

    def _broker_leftovers(self, tracked):
        table = process_table()
        pids = set(still_running(tracked, table))
        if self.process.returncode is None:
            # Not reaped yet: the group id is still ours.
            pids.update(group_members(self.process.pid, table))
        return sorted(pids)

    def _stop_broker(self, graceful=True):
        """Stop the broker's processes, and only them.

        The script is not reaped until the end, so its pid (the group id)
        cannot be reused meanwhile and signalling the group is safe; the
        helpers outside the group are signalled one by one, each only while
        it is the same process we saw.
        """
        if self.process is None:
            return
        began = time.monotonic()
        table = process_table()
        self._track(table)
        tracked = {pid: self._tracked[pid] for pid in
                   [self.process.pid] + list(descendants(self.process.pid,
                                                         table))
                   if pid in self._tracked}
        if graceful:
            # The script traps SIGTERM and stops the VM gracefully.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while (self._broker_leftovers(tracked)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        if self._broker_leftovers(tracked):
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            for pid in still_running(tracked):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self._broker_leftovers(tracked):
            if time.monotonic() > deadline:
                raise BrokerError('broker processes survived SIGKILL: %s'
                                  % self._broker_leftovers(tracked))
            time.sleep(0.05)
        self.process.wait(10)
        self.process = None
        self.stop_seconds = time.monotonic() - began

#!/usr/bin/env python3
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

"""Record the DAMON traces of tests/data/traces in the sandbox.

On this machine DAMON belongs to the machine itself, so the recordings
are made inside the two-tier sandbox guest (tools/sandbox.py): run on the
host, this script boots the sandbox once (one vCPU), runs itself inside
with ``--inside``, and copies the recordings it made to ``--dest``::

    .venv/bin/python tools/record_traces.py                 # all of them
    .venv/bin/python tools/record_traces.py redis-zipf --intervals 10

Inside, each workload is started, loaded and warmed up, then ``loki-memtier
record`` records its process for ``--intervals`` intervals of
``--interval-s`` seconds with ``--snapshots`` DAMON snapshots each, and
the workload is stopped (every process started here is ended here, by
pid).  The workloads (see ``WORKLOADS``):

* ``redis-zipf`` -- redis-server with 200,000 keys of 1000 bytes (``DEBUG
  POPULATE``), read (90 %) and overwritten (10 %) by a pipelined client
  with Zipf(0.99) popularity; popularity ranks map to keys in blocks of
  128 consecutive keys in random block order, so hot keys sit in clumps
  over the heap;
* ``sqlite-zipf`` -- the sqlite3 shell with an in-memory table of 250,000
  rows of 800 bytes, fed point queries (90 %) and updates (10 %) on its
  stdin, Zipf(0.99) over rows in blocks of 128 rows;
* ``pgbench-tpcb`` -- PostgreSQL 15 (shared_buffers 256 MB) with a pgbench
  database of scale 8 and one pgbench client running the built-in
  TPC-B-like script; the backend serving it is recorded (its shared
  buffers and private memory);
* ``python-objstore`` -- a Python program keeping 1,000,000 byte strings
  in a dict, looked up with Zipf(0.9) popularity in blocks of 256 keys,
  5 % of them replaced; half way through the popularity moves to other
  blocks (a new block order).

Needs redis-server and redis-cli on the machine (``apt-get install
redis-server redis-tools``); postgres, pgbench, psql and sqlite3 are
found on PATH or in /usr/lib/postgresql/*/bin.
"""

import argparse
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DEST = os.path.join(REPO, 'tests', 'data', 'traces')
PYTHON = os.path.join(REPO, '.venv', 'bin', 'python')
LOKI_MEMTIER = os.path.join(REPO, '.venv', 'bin', 'loki-memtier')


def zipf_picker(n, alpha, block, seed):
    """A function drawing ``count`` item indices 0..n-1 with Zipf(alpha)
    popularity, ranks laid out in blocks of ``block`` consecutive items in
    random block order; ``reshuffle()`` draws a new block order."""
    import numpy as np
    rng = np.random.default_rng(seed)
    weights = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    blocks = -(-n // block)
    state = {}

    def reshuffle():
        order = rng.permutation(blocks)
        ranks = np.arange(n)
        items = order[ranks // block] * block + ranks % block
        # The last block may be short: fold what falls off back in.
        state['items'] = np.where(items < n, items, ranks)

    def pick(count):
        return state['items'][np.searchsorted(cdf, rng.random(count))]

    reshuffle()
    pick.reshuffle = reshuffle
    return pick


# ---------------------------------------------------------------- loads --

def redis_load(port, keys, seconds):
    """GET 90 % / SET 10 %, Zipf(0.99) keys, pipelined 200 deep."""
    import numpy as np
    pick = zipf_picker(keys, 0.99, 128, seed=7)
    rng = np.random.default_rng(8)
    value = b'v' * 1000
    sock = socket.create_connection(('127.0.0.1', port))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        items = pick(200)
        writes = rng.random(200) < 0.1
        out, expect = [], 0
        for item, write in zip(items.tolist(), writes.tolist()):
            key = b'key:%d' % item
            if write:
                out.append(b'*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n'
                           % (len(key), key, len(value), value))
                expect += 5                       # +OK\r\n
            else:
                out.append(b'*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n'
                           % (len(key), key))
                expect += len(b'$1000\r\n') + 1000 + 2
        sock.sendall(b''.join(out))
        got = 0
        while got < expect:
            data = sock.recv(1 << 20)
            if not data:
                raise EOFError('redis closed the connection')
            got += len(data)


def sqlite_load(rows, seconds):
    """Drive the sqlite3 shell on stdin: populate, then point queries
    (90 %) and updates (10 %), Zipf(0.99) rows."""
    import numpy as np
    shell = subprocess.Popen(['sqlite3', ':memory:'], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        shell.stdin.write(
            'PRAGMA cache_size=-1000000;\n'
            'CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB);\n'
            'WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c '
            'WHERE x < %d) INSERT INTO kv SELECT x, randomblob(800) FROM c;\n'
            "SELECT 'populated';\n" % (rows - 1))
        shell.stdin.flush()
        while shell.stdout.readline().strip() != 'populated':
            pass
        shell.stdin.write('.output /dev/null\n')
        print('ready %d' % shell.pid, flush=True)
        pick = zipf_picker(rows, 0.99, 128, seed=11)
        rng = np.random.default_rng(12)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            items = pick(500)
            writes = rng.random(500) < 0.1
            shell.stdin.write(''.join(
                'UPDATE kv SET v = randomblob(800) WHERE id = %d;\n' % i
                if w else 'SELECT length(v) FROM kv WHERE id = %d;\n' % i
                for i, w in zip(items.tolist(), writes.tolist())))
            shell.stdin.flush()
        shell.stdin.close()
        shell.wait(60)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def python_objstore(items, seconds, shift_after):
    """A dict of byte strings, Zipf(0.9) lookups in blocks of 256 keys,
    5 % replaced; the popularity moves ``shift_after`` seconds after it
    said ready."""
    import numpy as np
    rng = np.random.default_rng(21)
    blob = rng.bytes(160 * items)
    store = {i: blob[i * 160:(i + 1) * 160] for i in range(items)}
    del blob
    pick = zipf_picker(items, 0.9, 256, seed=22)
    print('ready %d' % os.getpid(), flush=True)
    started = time.monotonic()
    moved = False
    total = 0
    while time.monotonic() - started < seconds:
        if not moved and time.monotonic() - started > shift_after:
            pick.reshuffle()
            moved = True
        keys = pick(1000).tolist()
        replace = rng.random(1000) < 0.05
        for key, new in zip(keys, replace.tolist()):
            value = store[key]
            total += value[0] + value[-1] + len(value)
            if new:
                store[key] = value[1:] + value[:1]
    return total


# ------------------------------------------------------------ workloads --

def _run(argv, **kwargs):
    print('+ %s' % ' '.join(argv), flush=True)
    return subprocess.run(argv, check=True, **kwargs)


def _record(pid, out_path, args, note):
    _run([LOKI_MEMTIER, 'record', '--pid', str(pid), '--output', out_path,
          '--intervals', str(args.intervals), '--interval-s',
          str(args.interval_s), '--snapshots', str(args.snapshots),
          '--sample-us', str(args.sample_us), '--aggr-us', str(args.aggr_us),
          '--note', note])


def _wait_for(what, test, timeout=600):
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise TimeoutError('%s did not happen in %d s' % (what, timeout))
        time.sleep(0.5)


def _stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _load_seconds(args):
    # The load outlasts the recording (warm-up, reads, slack).
    return args.warmup_s + args.intervals * args.interval_s * 1.5 + 60


def record_redis(out_path, args):
    port = 6390
    server = subprocess.Popen(
        ['redis-server', '--port', str(port), '--bind', '127.0.0.1',
         '--save', '', '--appendonly', 'no', '--enable-debug-command', 'yes'],
        stdout=subprocess.DEVNULL)
    load = None
    try:
        def pong():
            done = subprocess.run(['redis-cli', '-p', str(port), 'ping'],
                                  capture_output=True, text=True)
            return done.stdout.strip() == 'PONG'
        _wait_for('redis-server answering', pong, 120)
        _run(['redis-cli', '-p', str(port), 'debug', 'populate', '200000',
              'key', '1000'], stdout=subprocess.DEVNULL)
        load = subprocess.Popen([PYTHON, __file__, '--load', 'redis',
                                 '--port', str(port), '--seconds',
                                 str(_load_seconds(args))])
        time.sleep(args.warmup_s)
        _record(server.pid, out_path, args,
                'redis-server, 200000 keys x 1000 B, GET 90 %/SET 10 %, '
                'Zipf 0.99 in blocks of 128 keys')
    finally:
        if load:
            _stop(load)
        _stop(server)


def _ready_pid(proc):
    line = proc.stdout.readline()
    word, _, pid = line.strip().partition(' ')
    if word != 'ready':
        raise RuntimeError('workload said %r, not "ready PID"' % line)
    return int(pid)


def _record_load(name, out_path, args, description, extra=()):
    """Start this file's ``--load NAME`` workload, wait for it, record."""
    load = subprocess.Popen([PYTHON, __file__, '--load', name,
                             '--seconds', str(_load_seconds(args))]
                            + list(extra),
                            stdout=subprocess.PIPE, text=True)
    try:
        pid = _ready_pid(load)
        time.sleep(args.warmup_s)
        _record(pid, out_path, args, description)
    finally:
        _stop(load)


def record_sqlite(out_path, args):
    _record_load('sqlite', out_path, args,
                 'sqlite3 shell, in-memory table of 250000 rows x 800 B, '
                 'SELECT 90 %/UPDATE 10 %, Zipf 0.99 in blocks of 128 rows')


def record_objstore(out_path, args):
    # The popularity moves half way through the recording.
    shift = args.warmup_s + args.intervals * args.interval_s / 2
    _record_load('objstore', out_path, args,
                 'python dict of 1000000 x 160 B, Zipf 0.9 in blocks of 256 '
                 'keys, 5 % replaced, popularity moves half way through',
                 extra=('--shift-after', str(shift)))


def _pg_bin(name):
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(glob.glob('/usr/lib/postgresql/*/bin/' + name)):
        return path
    raise FileNotFoundError('%s is not installed' % name)


def record_pgbench(out_path, args):
    # PostgreSQL refuses to run as root: the server runs as nobody.
    as_nobody = ['setpriv', '--reuid=65534', '--regid=65534',
                 '--clear-groups']
    data = tempfile.mkdtemp(prefix='loki-pg-')
    os.chown(data, 65534, 65534)
    port = '5499'
    conn = ['-h', data, '-p', port, '-U', 'postgres']
    _run(as_nobody + [_pg_bin('initdb'), '-D', data, '-U', 'postgres',
                      '--auth=trust', '--no-sync'],
         stdout=subprocess.DEVNULL)
    server = subprocess.Popen(as_nobody + [
        _pg_bin('postgres'), '-D', data, '-k', data, '-p', port,
        '-c', 'listen_addresses=', '-c', 'shared_buffers=256MB',
        '-c', 'fsync=off', '-c', 'synchronous_commit=off',
        '-c', 'full_page_writes=off', '-c', 'huge_pages=off',
        '-c', 'autovacuum=off'], stdout=subprocess.DEVNULL)
    bench = None
    try:
        def accepting():
            return subprocess.run([_pg_bin('pg_isready')] + conn,
                                  capture_output=True).returncode == 0
        _wait_for('postgres accepting connections', accepting, 300)
        _run([_pg_bin('pgbench'), '-i', '-s', '8', '-q'] + conn
             + ['postgres'], stdout=subprocess.DEVNULL)
        # Run until stopped (SIGINT below), whatever its own clock says.
        bench = subprocess.Popen(
            [_pg_bin('pgbench'), '-c', '1', '-T', '36000', '-n',
             '-P', '60'] + conn + ['postgres'])
        backend = []

        def connected():
            done = subprocess.run(
                [_pg_bin('psql'), '-At', '-c',
                 "SELECT pid FROM pg_stat_activity WHERE application_name "
                 "= 'pgbench'"] + conn + ['postgres'],
                capture_output=True, text=True)
            backend[:] = done.stdout.split()
            return len(backend) == 1
        # pgbench's first connection (it checks the scale) ends at once:
        # the benchmark's backend is the one still there after warm-up.
        time.sleep(args.warmup_s)
        _wait_for('the pgbench backend', connected, 120)
        try:
            _record(int(backend[0]), out_path, args,
                    'postgres 15 backend of one pgbench client, built-in '
                    'TPC-B-like script, scale 8, shared_buffers 256MB')
        finally:
            print('pgbench: %s; backend %s: %s' % (
                'running' if bench.poll() is None
                else 'exited %s' % bench.returncode, backend[0],
                'alive' if os.path.exists('/proc/' + backend[0])
                else 'gone'), flush=True)
    finally:
        if bench:
            _stop(bench, signal.SIGINT)
        _stop(server, signal.SIGINT)
        shutil.rmtree(data, ignore_errors=True)


WORKLOADS = {
    'redis-zipf': record_redis,
    'sqlite-zipf': record_sqlite,
    'pgbench-tpcb': record_pgbench,
    'python-objstore': record_objstore,
}


# ----------------------------------------------------------------- main --

def _sandbox_tool():
    spec = importlib.util.spec_from_file_location(
        'loki_tools_sandbox', os.path.join(REPO, 'tools', 'sandbox.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(args):
    return ['--intervals', str(args.intervals), '--interval-s',
            str(args.interval_s), '--snapshots', str(args.snapshots),
            '--warmup-s', str(args.warmup_s), '--sample-us',
            str(args.sample_us), '--aggr-us', str(args.aggr_us)]


def on_host(args):
    sandbox = _sandbox_tool()
    os.makedirs(args.dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='loki-traces-') as out:
        result = sandbox.run(
            [PYTHON, os.path.abspath(__file__), '--inside'] + _options(args)
            + args.workloads, cwd=REPO, cpus=1, timeout=args.timeout,
            out_dir=out, stream=sys.stdout.buffer)
        for name in args.workloads:
            src = os.path.join(out, name + '.npz')
            if os.path.exists(src):
                shutil.copy(src, os.path.join(args.dest, name + '.npz'))
                print('%s -> %s' % (name, args.dest))
        if result.returncode:
            print('recording failed in the sandbox (exit %d)'
                  % result.returncode, file=sys.stderr)
    return result.returncode


def inside(args):
    out = os.environ.get('LOKI_SANDBOX_OUT') or tempfile.mkdtemp()
    started = time.perf_counter()
    sum(range(10 ** 7))
    print('python: sum(range(10 ** 7)) took %.2f s'
          % (time.perf_counter() - started), flush=True)
    for name in args.workloads:
        print('== %s' % name, flush=True)
        WORKLOADS[name](os.path.join(out, name + '.npz'), args)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('workloads', nargs='*', metavar='WORKLOAD',
                        help='which to record (default all): %s'
                             % ', '.join(WORKLOADS))
    parser.add_argument('--dest', default=DEFAULT_DEST)
    parser.add_argument('--intervals', type=int, default=60)
    parser.add_argument('--interval-s', type=float, default=6.0)
    parser.add_argument('--snapshots', type=int, default=6)
    parser.add_argument('--sample-us', type=int, default=50000)
    parser.add_argument('--aggr-us', type=int, default=1000000)
    parser.add_argument('--warmup-s', type=float, default=20.0,
                        help='load before the recording starts')
    parser.add_argument('--timeout', type=float, default=1800)
    parser.add_argument('--inside', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--load', choices=('redis', 'sqlite', 'objstore'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--port', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--seconds', type=float, help=argparse.SUPPRESS)
    parser.add_argument('--shift-after', type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error('unknown workloads %s; known: %s'
                     % (', '.join(sorted(unknown)), ', '.join(WORKLOADS)))
    if args.load:
        # SIGTERM ends a load through its finally clauses (the sqlite
        # shell it started is ended with it).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.load == 'redis':
        redis_load(args.port, 200000, args.seconds)
        return 0
    if args.load == 'sqlite':
        sqlite_load(250000, args.seconds)
        return 0
    if args.load == 'objstore':
        python_objstore(1000000, args.seconds, args.shift_after)
        return 0
    args.workloads = args.workloads or list(WORKLOADS)
    if args.inside:
        if os.environ.get('LOKI_SANDBOX') != '1':
            parser.error('--inside runs only in the sandbox guest')
        return inside(args)
    return on_host(args)


if __name__ == '__main__':
    sys.exit(main())

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

"""Nova overhead of LokiDriver against LibvirtDriver, for untiered flavors.

Run as root, with libvirtd + QEMU + qemu-img installed (the real part
starts libvirtd/virtlogd if they are not running and stops only those)::

    .venv/bin/python benchmarks/bench_spawn.py --json

Two figures, LokiDriver ÷ LibvirtDriver, runs interleaved (A B, B A, A B,
...), target ≤ 1.05 each:

* ``ratio`` -- real libvirtd 9.0 + QEMU 7.2 (TCG), Nova's in-process
  services with the real driver and image backend
  (``tests/nova/real_libvirt.py``; Glance/Neutron/Cinder are Nova's
  fixtures, libvirt's event thread is off).  The measure is the wall time
  of ``driver.spawn`` (image backend, XML, define, start, wait for
  RUNNING): it is what the driver owns, and it leaves out the API,
  scheduler and Placement, which are the same code for both drivers.
  ``api_ratio`` is the same for API create → ACTIVE (Nova's harness
  turns RPC casts into calls, so the POST returns after the build).  The
  host is this machine as it is (one NUMA node: untiered), the flavor is
  untiered (128 MiB, 1 vCPU, 1 GB root disk), the image is the rig's
  tiny kernel + initramfs (direct kernel boot; the qcow2 root overlay on
  a cached raw base).  Every round starts each driver's Nova services
  afresh (``--repeat`` rounds, ``--per-case`` spawns per service start;
  each server is deleted before the next).  One untimed warm-up spawn
  fills Nova's image cache first, shared by all rounds.
* ``harness_ratio`` -- Nova's in-process harness with fake libvirt
  (``tests/nova/base.py``): one harness with two computes of the same
  tiered fake hardware (two DRAM cells + a CPU-less slow cell, so
  LokiDriver takes its tiered-host path and confines untiered guests to
  DRAM), one running LokiDriver and one LibvirtDriver.  ``--servers``
  servers are created on each, one POST after another (each waited for
  until ACTIVE), alternating the two hosts server by server (A B, B A,
  ...), so both drivers see the same machine noise and the same growth
  of Nova's and Placement's tables: the creation time of a server grows
  with the servers already there, because Nova's resource tracker reads
  every allocation on its provider at each claim.  The figure is, per
  run, the sum of LokiDriver's POST-to-ACTIVE times over LibvirtDriver's,
  median over ``--harness-repeat`` runs.  (A single multi-create request
  of 100 ran 100 builds at once and did not finish within 10 minutes
  here, with sqlite errors; and one run per driver, one after the other,
  varied by a third between runs on this shared machine.)

Medians and the raw samples (seconds) are reported.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.nova import real_libvirt  # noqa: E402  (sets Nova's mode first)
from tests.nova import base as harness_base  # noqa: E402

from nova.tests.fixtures import libvirt as fakelibvirt  # noqa: E402

import _report  # noqa: E402
from tests import libvirt_rig as rig  # noqa: E402

DRIVERS = ('loki.LokiDriver', 'libvirt.LibvirtDriver')
REAL_FLAVOR_MB = 128
HARNESS_FLAVOR_MB = 64


def _run_case(case):
    """Run one Nova test case; raise if it did not pass."""
    result = unittest.TestResult()
    case.run(result)
    problems = result.errors + result.failures
    if problems or not result.wasSuccessful():
        raise RuntimeError('%s failed:\n%s' % (
            case.id(), '\n'.join(text for _, text in problems)))


# -- real libvirtd ------------------------------------------------------------

class _RealSpawn(real_libvirt.RealLibvirtTestBase):
    """Spawns ``per_case`` untiered servers one after another, deleting
    each; appends (driver.spawn seconds, API seconds) to ``samples``."""

    per_case = 1
    samples = None

    def test_spawn(self):
        driver = self.computes[self.HOST].driver
        real_spawn = driver.spawn
        spawn_times = []

        def timed_spawn(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real_spawn(*args, **kwargs)
            finally:
                spawn_times.append(time.perf_counter() - t0)

        driver.spawn = timed_spawn
        flavor = self._create_flavor(memory_mb=REAL_FLAVOR_MB, vcpu=1,
                                     disk=1, ephemeral=0)
        for _ in range(self.per_case):
            t0 = time.perf_counter()
            server = self.create_server(flavor)
            api = time.perf_counter() - t0
            self._delete_server(server)
            if self.samples is not None:
                self.samples.append((spawn_times[-1], api))


def _real_class(driver, work_dir, image, instances_path):
    return type('RealSpawn_%s' % driver.split('.')[0], (_RealSpawn,), {
        'COMPUTE_DRIVER': driver, 'work_dir': work_dir, 'image': image,
        'INSTANCES_PATH': instances_path})


def bench_real(args):
    started = rig.start_daemons()
    work_dir = tempfile.mkdtemp(prefix='loki-bench-spawn-')
    try:
        os.chmod(work_dir, 0o755)
        image_dir = os.path.join(work_dir, 'image')
        os.mkdir(image_dir)
        image = rig.GuestImage(image_dir)
        instances = os.path.join(work_dir, 'instances')
        classes = {d: _real_class(d, work_dir, image, instances)
                   for d in DRIVERS}
        warm = classes[DRIVERS[1]]('test_spawn')
        _run_case(warm)                       # fills _base; not timed
        for cls in classes.values():
            cls.per_case = args.per_case
        samples = _interleaved(classes, 'test_spawn', args.repeat)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        rig.stop_daemons(started)
    return samples


# -- fake libvirt harness -----------------------------------------------------

class _HarnessPaired(harness_base.LokiTestBase):
    """One harness, two computes with the same fake hardware: one runs
    LokiDriver, the other LibvirtDriver.  Creates ``servers`` untiered
    servers on each, one request after another, alternating the hosts
    (A B, B A, ...), so both drivers see the same machine noise and the
    same growth of Nova's and Placement's tables.  Appends {driver:
    seconds from POST to ACTIVE of each server} to ``samples``."""

    servers = 100
    samples = None
    HOSTS = {'loki.LokiDriver': 'loki-host',
             'libvirt.LibvirtDriver': 'libvirt-host'}

    def _setup_compute_service(self):
        pass                # both computes start in the test

    def _active(self, server):
        shown = self.api.get_server(server['id'])
        if shown['status'] == 'ERROR':
            raise AssertionError('server %s went to ERROR: %s' % (
                server['id'], shown.get('fault')))
        return shown['status'] == 'ACTIVE'

    def _create_on(self, flavor, host):
        t0 = time.perf_counter()
        server = self.api.post_server({'server': self._build_server(
            flavor_id=flavor, networks='none', host=host)})
        # Each poll is an API request served in this process; polling
        # faster only takes CPU from the build it waits for.
        rig.wait_for(lambda: self._active(server), 300,
                     'server %s ACTIVE' % server['id'], interval=0.1)
        return time.perf_counter() - t0

    def test_create(self):
        self.flags(initial_cpu_allocation_ratio=64.0,
                   initial_ram_allocation_ratio=4.0)
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        for driver, host in self.HOSTS.items():
            self.flags(compute_driver=driver)
            self.start_loki_compute(host, slow=(2,))
        self.assertEqual(
            ['LibvirtDriver', 'LokiDriver'],
            sorted(type(self.computes[h].driver).__name__
                   for h in self.HOSTS.values()))
        flavor = self._create_flavor(memory_mb=HARNESS_FLAVOR_MB, vcpu=1,
                                     disk=1, ephemeral=0)
        times = {d: [] for d in DRIVERS}
        for i in range(self.servers):
            for d in (DRIVERS if i % 2 == 0 else DRIVERS[::-1]):
                times[d].append(self._create_on(flavor, self.HOSTS[d]))
        for host in self.HOSTS.values():
            conn = self.computes[host].driver._host.get_connection()
            running = conn.listAllDomains(
                fakelibvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            self.assertEqual(self.servers, len(running), host)
        if self.samples is not None:
            self.samples.append(times)
        print('bench_spawn: harness, %d servers each, ACTIVE in %s'
              % (self.servers, ', '.join(
                  '%.1f s on %s' % (sum(times[d]), d) for d in DRIVERS)),
              file=sys.stderr, flush=True)


def bench_harness(args):
    """[{driver: per-server seconds}] for each of ``harness_repeat``
    paired runs."""
    samples = []
    for _ in range(args.harness_repeat):
        _HarnessPaired.servers = args.servers
        _HarnessPaired.samples = samples
        _run_case(_HarnessPaired('test_create'))
    return samples


def _interleaved(classes, test, rounds):
    """Run ``test`` of each driver's class ``rounds`` times, alternating
    which driver goes first; {driver: samples}."""
    samples = {d: [] for d in DRIVERS}
    for i in range(rounds):
        for d in (DRIVERS if i % 2 == 0 else DRIVERS[::-1]):
            classes[d].samples = samples[d]
            _run_case(classes[d](test))
    return samples


def _median(values):
    return statistics.median(values) if values else None


def _round(values, digits=4):
    return [round(v, digits) for v in values]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=5,
                        help='rounds of the real part (one service start '
                             'per driver each)')
    parser.add_argument('--per-case', type=int, default=1,
                        help='spawns per service start (real part)')
    parser.add_argument('--servers', type=int, default=100,
                        help='servers per driver (harness part)')
    parser.add_argument('--harness-repeat', type=int, default=3,
                        help='paired runs of the harness part')
    parser.add_argument('--skip-real', action='store_true')
    parser.add_argument('--skip-harness', action='store_true')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    loki, plain = DRIVERS
    # Nova's logging writes to stdout; keep stdout for the report only.
    report_out = os.fdopen(os.dup(sys.stdout.fileno()), 'w')
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    report = {'drivers': list(DRIVERS)}
    t_start = time.perf_counter()
    if not args.skip_real:
        if os.geteuid() != 0 or not os.path.exists(
                os.path.join(rig.SBIN, 'libvirtd')):
            parser.exit(2, 'bench_spawn: the real part needs root and '
                           'libvirtd (or pass --skip-real)\n')
        try:
            real = bench_real(args)
        except Exception as exc:        # report what the other part gives
            real = None
            report['real_error'] = str(exc)[-2000:]
    if not args.skip_real and real is not None:
        spawn = {d: [s for s, _ in real[d]] for d in DRIVERS}
        api = {d: [a for _, a in real[d]] for d in DRIVERS}
        report.update({
            'repeat': args.repeat,
            'per_case': args.per_case,
            'spawn_s_loki': round(_median(spawn[loki]), 4),
            'spawn_s_libvirt': round(_median(spawn[plain]), 4),
            'ratio': round(_median(spawn[loki]) / _median(spawn[plain]),
                           3),
            'api_s_loki': round(_median(api[loki]), 4),
            'api_s_libvirt': round(_median(api[plain]), 4),
            'api_ratio': round(_median(api[loki]) / _median(api[plain]),
                               3),
            'spawn_raw_loki': _round(spawn[loki]),
            'spawn_raw_libvirt': _round(spawn[plain]),
            'api_raw_loki': _round(api[loki]),
            'api_raw_libvirt': _round(api[plain]),
        })
    if not args.skip_harness:
        try:
            harness = bench_harness(args)
        except Exception as exc:
            harness = None
            report['harness_error'] = str(exc)[-2000:]
    if not args.skip_harness and harness is not None:
        totals = {d: [sum(run[d]) for run in harness] for d in DRIVERS}
        ratios = [sum(run[loki]) / sum(run[plain]) for run in harness]
        report.update({
            'servers': args.servers,
            'harness_repeat': args.harness_repeat,
            'harness_s_loki': round(_median(totals[loki]), 3),
            'harness_s_libvirt': round(_median(totals[plain]), 3),
            'harness_ratio': round(_median(ratios), 3),
            'harness_raw_loki': _round(totals[loki], 3),
            'harness_raw_libvirt': _round(totals[plain], 3),
            'harness_raw_ratio': _round(ratios, 3),
            'harness_server_s_loki': round(_median(
                [t for run in harness for t in run[loki]]), 3),
            'harness_server_s_libvirt': round(_median(
                [t for run in harness for t in run[plain]]), 3),
        })
    report['target'] = 1.05
    report['elapsed_s'] = round(time.perf_counter() - t_start, 1)
    sys.stdout.flush()
    sys.stdout = report_out
    _report.emit(report, args.json)
    report_out.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())

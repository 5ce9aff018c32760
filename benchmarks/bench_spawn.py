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

Two figures, each LokiDriver ÷ LibvirtDriver of medians, runs interleaved
(A B, B A, A B, ...), target ≤ 1.05 each:

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
  (``tests/nova/base.py``): wall time of creating ``--servers`` servers
  (one POST after another, each waited for until ACTIVE; a single
  multi-create request of 100 ran 100 builds at once and did not finish
  within 10 minutes here, with sqlite errors) on one compute with the
  tiered fake host of the harness (two DRAM cells + a CPU-less slow
  cell, so LokiDriver takes its tiered-host path and confines untiered
  guests to DRAM), ``--harness-repeat`` runs per driver.

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

class _HarnessCreate(harness_base.LokiTestBase):
    """Creates ``servers`` untiered servers one request after another;
    appends the seconds from the first POST to the last ACTIVE to
    ``samples``."""

    servers = 100
    samples = None
    COMPUTE_DRIVER = 'loki.LokiDriver'

    def _setup_compute_service(self):
        self.flags(compute_driver=self.COMPUTE_DRIVER)

    def _active(self, server):
        shown = self.api.get_server(server['id'])
        if shown['status'] == 'ERROR':
            raise AssertionError('server %s went to ERROR: %s' % (
                server['id'], shown.get('fault')))
        return shown['status'] == 'ACTIVE'

    def test_create(self):
        self.flags(initial_cpu_allocation_ratio=64.0,
                   initial_ram_allocation_ratio=4.0)
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        self.start_loki_compute('host1', slow=(2,))
        flavor = self._create_flavor(memory_mb=HARNESS_FLAVOR_MB, vcpu=1,
                                     disk=1, ephemeral=0)
        t0 = time.perf_counter()
        for _ in range(self.servers):
            server = self.api.post_server({'server': self._build_server(
                flavor_id=flavor, networks='none')})
            # Each poll is an API request served in this process; polling
            # faster only takes CPU from the build it waits for.
            rig.wait_for(lambda: self._active(server), 300,
                         'server %s ACTIVE' % server['id'], interval=0.1)
        elapsed = time.perf_counter() - t0
        conn = self.computes['host1'].driver._host.get_connection()
        running = conn.listAllDomains(
            fakelibvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        self.assertEqual(self.servers, len(running))
        if self.samples is not None:
            self.samples.append(elapsed)
        print('bench_spawn: harness, %s: %d servers ACTIVE in %.1f s'
              % (self.COMPUTE_DRIVER, self.servers, elapsed),
              file=sys.stderr, flush=True)


def bench_harness(args):
    classes = {d: type('HarnessCreate_%s' % d.split('.')[0],
                       (_HarnessCreate,), {'COMPUTE_DRIVER': d})
               for d in DRIVERS}
    for cls in classes.values():
        cls.servers = args.servers
    return _interleaved(classes, 'test_create', args.harness_repeat)


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
    parser.add_argument('--servers', type=int, default=100)
    parser.add_argument('--harness-repeat', type=int, default=3)
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
        report.update({
            'servers': args.servers,
            'harness_repeat': args.harness_repeat,
            'harness_s_loki': round(_median(harness[loki]), 3),
            'harness_s_libvirt': round(_median(harness[plain]), 3),
            'harness_ratio': round(
                _median(harness[loki]) / _median(harness[plain]), 3),
            'harness_raw_loki': _round(harness[loki], 3),
            'harness_raw_libvirt': _round(harness[plain], 3),
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

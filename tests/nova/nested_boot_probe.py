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

"""Probe (not collected): which nested guests boot in the sandbox, and
under what load.  An investigation tool for issue 13, kept to rerun.

Each stage boots guests of ``tests/libvirt_rig.domain_xml`` (the workload
image, 160 MiB) on the sandbox's libvirtd at the same time, optionally
with parts of Nova's domain XML added, and reports for each guest
BOOTED (the workload's marker on its console), PANIC or TIMEOUT (400 s,
or ``LOKI_PROBE_TIMEOUT``).
``LOKI_PROBE_STAGES``: stages separated by ``;``, guests in a stage by
``|``, each guest a comma list of ``cpu``, ``iothreads``, ``numatune``,
``sysinfo``, ``pty``, ``acpi`` (or ``plain``).  ``LOKI_PROBE_STRESS``:
``migrate`` (move all guest RAM between the nodes every 3 s),
``compact`` (``/proc/sys/vm/compact_memory`` every 3 s), ``hog`` (a busy
loop and a 0.5 ms sleeper process beside the guests; with ``nice``, at
nice 19).  ``LOKI_PROBE_NESTED_VIRT=1``: libvirt and QEMU for the nested
guests from bookworm-backports (``NESTED_VIRT`` below)::

    python3 tools/sandbox.py run --cpus 1 --timeout 2400 \\
        --env LOKI_PROBE_STAGES='plain;plain|plain' \\
        --env LOKI_PROBE_STRESS=hog -- \\
        .venv/bin/python -m pytest -s tests/nova/nested_boot_probe.py

Measured on 2026-12-05 (sandbox: 1 vCPU, QEMU 7.2 TCG, 6.12 kernel;
times from define to the workload's marker):

* plain: booted in 106 s; plain|plain: both in 235 and 260 s;
* cpu,iothreads,numatune,sysinfo,pty (Nova's XML less its devices and
  features): 101 s alone, 242 and 278 s two at a time;
* plain|plain with migrate+compact: one booted (369 s), one timed out,
  no panic: page moves under a running QEMU do not corrupt its guest;
* plain|plain with hog: PANIC after 229 s (the same early-boot oops as
  the Nova-spawned guests: garbage EFLAGS in an interrupt frame);
* the same with the sandbox's CPU model ``Nehalem`` (no XSAVE, PCID,
  FSGSBASE, PKU or AVX): PANIC after 325 s;
* hog at nice 19: one PANIC (176 s), one booted (385 s): a lower
  priority for the busy processes does not help;
* hog with the sandbox run by QEMU 10.0.2 (bookworm-backports,
  ``LOKI_SANDBOX_QEMU``) instead of 7.2: both PANIC (409 and 423 s): not
  a bug of the outer QEMU 7.2 alone;
* with ``preempt=none`` on the sandbox's kernel and hog: no panic, but
  neither guest booted in 400 s (three sandboxes shared the machine).

Measured on 2026-12-06, outside this probe:

* the sandbox keeps user-space state across preemption: a checker that
  loads 14 general registers, EFLAGS, ymm0-15, MXCSR and the x87 stack
  with known values, spins, and compares them (plus adc/sbb chains and
  self-modifying code), two copies beside the busy loop and the
  sleeper, found no mismatch in about 370,000 context switches and
  120,000 signals (a variant whose signal handler alters a saved
  register is caught within 3 s), so the fault is more likely in the
  nested QEMU 7.2's TCG than in the sandbox;
* libvirt 9.0 refuses to define a domain with QEMU 10.0.2 as its
  emulator; QEMU 10.0.2 started directly with the rig's arguments booted
  one guest beside the busy loop and sleeper (371 s, no panic); two such
  guests timed out at 400 s without a panic;
* QEMU 7.2 started the same way (no libvirt): one guest beside the load
  booted (339 s); two beside the load: one PANIC after 170 s (garbage
  EFLAGS, "Fatal exception in interrupt"), one booted (298 s): libvirt
  is not needed for the panic;
* QEMU 10.0.2 started directly, two guests beside the load, 900 s
  allowed: both booted (841 and 849 s), no panic.  One run each, so a
  lead, not yet a proof: nested QEMU 7.2's TCG is the suspect.

Measured on 2026-12-06, with libvirt 11.3 and QEMU 10.0.2 from
bookworm-backports bound over the machine's inside the sandbox
(``LOKI_PROBE_NESTED_VIRT=1``; tools/sandbox.py ``ensure_nested_virt``):
tests/nova/test_sandbox_vm.py (2 vCPUs, two Nova-spawned guests beside
Nova's services and the agent): no panic in any of seven runs; in six
both guests reached their workload (the first run that passed took
543 s), in the seventh, a slow CI run, the first guest was still filling
its memory when the test's 600 s wait ran out (now 900 s).
"""

import os
import subprocess
import sys
import threading
import time

from lxml import etree
import numpy as np
import pytest

from loki_nova.memtier import mover
from tests import libvirt_rig as rig
from tests.sandbox import INSIDE_ONLY

#: ``LOKI_PROBE_NESTED_VIRT=1``: libvirt 11.3 and QEMU 10.0 from
#: bookworm-backports for the nested guests (tools/sandbox.py,
#: ``ensure_nested_virt``) instead of the machine's 9.0 and 7.2.
NESTED_VIRT = os.environ.get('LOKI_PROBE_NESTED_VIRT') == '1'
pytestmark = [pytest.mark.libvirt, pytest.mark.sandbox(
    cpus=1, nested_virt=NESTED_VIRT)] + [
    mark for mark in INSIDE_ONLY if mark.name != 'sandbox']
libvirt_daemons = rig.libvirt_daemons
libvirt_conn = rig.libvirt_conn
rig_dir = rig.rig_dir

GUEST_MB = 160
#: Seconds a stage may take (``LOKI_PROBE_TIMEOUT``).
TIMEOUT = float(os.environ.get('LOKI_PROBE_TIMEOUT') or 400)
HOGS = ('while True: pass',
        'import time\nwhile True: time.sleep(0.0005)')


def with_nova_parts(xml, parts):
    """The rig's domain XML with the named parts of Nova's added."""
    root = etree.fromstring(xml)
    if 'cpu' in parts:
        cpu = etree.SubElement(root, 'cpu', match='exact')
        etree.SubElement(cpu, 'topology', sockets='1', cores='1',
                         threads='1')
    if 'iothreads' in parts:
        etree.SubElement(root, 'iothreads').text = '1'
    if 'numatune' in parts:
        tune = etree.SubElement(root, 'numatune')
        etree.SubElement(tune, 'memory', mode='restrictive', nodeset='0-1')
    if 'sysinfo' in parts:
        info = etree.SubElement(root, 'sysinfo', type='smbios')
        system = etree.SubElement(info, 'system')
        etree.SubElement(system, 'entry', name='manufacturer').text = 'probe'
        etree.SubElement(root.find('os'), 'smbios', mode='sysinfo')
    if 'pty' in parts:
        devices = root.find('devices')
        serial = devices.find('serial')
        path = serial.find('source').get('path')
        devices.remove(serial)
        serial = etree.SubElement(devices, 'serial', type='pty')
        etree.SubElement(serial, 'log', file=path, append='off')
    if 'acpi' in parts:
        features = etree.SubElement(root, 'features')
        etree.SubElement(features, 'acpi')
        etree.SubElement(features, 'apic')
    return etree.tostring(root, encoding='unicode')


class _Stress:
    def __init__(self, kinds, pids):
        self.kinds = kinds
        self.pids = pids
        self.stop = threading.Event()
        self.hogs = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if 'hog' in self.kinds:
            nice = 19 if 'nice' in self.kinds else 0
            self.hogs = [subprocess.Popen(
                [sys.executable, '-c', code],
                preexec_fn=lambda: os.nice(nice)) for code in HOGS]
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for hog in self.hogs:
            hog.kill()
            hog.wait()

    def _run(self):
        node = 0
        while not self.stop.wait(3):
            if 'compact' in self.kinds:
                with open('/proc/sys/vm/compact_memory', 'w') as f:
                    f.write('1')
            if 'migrate' in self.kinds:
                for pid in self.pids:
                    mover.move_pages(pid, guest_ram_pages(pid), node)
            node = 1 - node


def guest_ram_pages(pid):
    start, end = rig.ram_mapping(pid, GUEST_MB << 20)
    return np.arange(start, end, 4096, dtype=np.uint64)


def boot_stage(conn, directory, image, guests, stress):
    started = time.monotonic()
    booted = []
    for parts in guests:
        name = '%s%d-%d' % (rig.NAME_PREFIX, os.getpid(), len(booted))
        console = os.path.join(directory, name + '.console')
        xml = with_nova_parts(rig.domain_xml(
            name, GUEST_MB, image=image, console=console), parts)
        guest = rig.TinyGuest(conn, name, console, xml)
        guest.dom.create()
        booted.append((parts, guest))
    results = {}
    try:
        with _Stress(stress, [g.pid() for _, g in booted]):
            def done():
                for parts, guest in booted:
                    text = guest.console_text()
                    if guest.name in results:
                        continue
                    if 'Kernel panic' in text or 'Oops' in text:
                        results[guest.name] = 'PANIC'
                    elif rig.WORKLOAD_MARKER in text:
                        results[guest.name] = 'BOOTED'
                    else:
                        continue
                    print('RESULT %s %s after %.0f s' % (
                        parts, results[guest.name],
                        time.monotonic() - started), flush=True)
                return len(results) == len(booted)
            try:
                rig.wait_for(done, TIMEOUT, 'the stage', interval=2.0)
            except TimeoutError:
                pass
    finally:
        for parts, guest in booted:
            if guest.name not in results:
                print('RESULT %s TIMEOUT' % parts, flush=True)
            guest.remove()
    return results


def test_probe(libvirt_conn, rig_dir):
    directory = os.path.join(rig_dir, 'image')
    os.mkdir(directory)
    image = rig.WorkloadImage(directory, None, 12, 15)
    stress = os.environ.get('LOKI_PROBE_STRESS', '').split(',')
    outcomes = []
    for stage in os.environ.get('LOKI_PROBE_STAGES', 'plain').split(';'):
        print('STAGE %s, stress %s' % (stage, stress), flush=True)
        outcomes += boot_stage(libvirt_conn, rig_dir, image,
                               stage.split('|'), stress).values()
    assert outcomes

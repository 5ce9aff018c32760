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

"""Nova's in-process services with a REAL libvirtd and QEMU (TCG).

``RealLibvirtTestBase`` is Nova's ``_IntegratedTestBase`` (API, conductor,
scheduler, one compute, real Placement, sqlite, fake RPC transport), but
the compute driver talks to the machine's ``qemu:///system``: no fake
libvirt, no mocked ``Host.get_connection``, no ``LibvirtImageBackendFixture``
and no mocked ``_create_image``.  Used by ``test_real_libvirt.py`` and
``benchmarks/bench_spawn.py``.

What is real
  libvirtd 9.0 + QEMU 7.2 (``virt_type=qemu``: TCG, KVM is unusable on
  these machines); the driver (``loki.LokiDriver`` or
  ``libvirt.LibvirtDriver``) including ``init_host``, XML generation,
  Nova's image backend (the root disk is a qcow2 overlay on a raw base in
  ``instances_path/_base``, made by ``qemu-img``), the direct-kernel-boot
  kernel and ramdisk fetched into the instance directory, the serial
  console logged by virtlogd, destroy and the removal of the instance
  directory; Placement.

What is stubbed, and why
  * Glance is Nova's ``GlanceFixture`` (in memory); the three images it
    serves hold the bytes of the rig's tiny guest (6.12 kernel + busybox
    initramfs, ``tests/libvirt_rig.GuestImage``) and a 1 MiB raw root
    disk the guest never reads.  Neutron and Cinder are Nova's fixtures;
    servers have ``networks='none'``.
  * ``Host._init_events`` (libvirt's event loop thread) is a no-op, as in
    every Nova functional test: Nova's harness forbids the thread, spawn
    polls the domain state instead, and no test here needs lifecycle
    events.
  * Nova's test poisons that forbid touching the host (``open``,
    ``os.path.isdir``, ``os.listdir``, ``glob`` on ``/sys``; ``os.uname``,
    ``psutil.net_if_addrs``;
    the privsep helper) are lifted: reading the real host is the point.
    privsep runs in-process (``PrivsepFixture``; the tests run as root).
  * Only when ``PHANTOM_SLOW_NODE`` is set (the tiered test): this machine
    has one NUMA node, so a tiered host is modelled by adding a CPU-less
    cell (node 1) to what ``LokiDriver._host_cells`` reports and naming it
    slow in ``[loki] node_tiers``.  The driver then generates
    ``<numatune><memory mode='restrictive' nodeset='0-1'/>``, which the
    real libvirtd defines but refuses to start ("unsupported
    configuration: NUMA node 1 is unavailable").  The XML Nova hands to
    ``Host.write_instance_config`` is therefore recorded unchanged
    (``self.generated_xml``) and the phantom node is dropped from the
    numatune nodesets before libvirt gets it, so the live domain carries
    ``mode='restrictive' nodeset='0'``.  Everything else in the XML
    (memfd backing, ``<loki:memtier>``) reaches libvirt as generated.

Needs root, libvirtd + QEMU (``qemu-system-x86``) and ``qemu-img``
(``qemu-utils``: Nova's image backend runs ``qemu-img info``/``create``).

Safety: domain names are ``loki-nova-<pid>-<n>-%08x`` (``instance_name_
template``), so nothing here can collide with a domain somebody else
defined; a cleanup removes domains with this test's own prefix only, and
only if a test left one behind.
"""

import builtins
import contextlib
import glob
import itertools
import os
import sys

import fixtures
import libvirt
import psutil
from lxml import etree
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers
from nova.virt import hardware

from loki_nova.virt import driver as loki_driver
from loki_nova.virt import tiers as tiers_mod
from tests import libvirt_rig as rig

URI = rig.URI
MiB = 1 << 20
ROOT_DISK_BYTES = 1 * MiB
#: The real functions Nova's test poisons replace, captured at import.
_REAL_HOST_FUNCTIONS = {
    'builtins.open': builtins.open,
    'os.path.isdir': os.path.isdir,
    'os.listdir': os.listdir,
    'glob.glob': glob.glob,
    'glob.iglob': glob.iglob,
    'os.uname': os.uname,
    'psutil.net_if_addrs': psutil.net_if_addrs,
}
_numbers = itertools.count()


def drop_nodes(xml, nodes):
    """``xml`` with ``nodes`` removed from every ``<numatune>`` nodeset."""
    root = etree.fromstring(xml)
    tune = root.find('numatune')
    if tune is None:
        return xml
    for el in [tune.find('memory')] + tune.findall('memnode'):
        if el is None or not el.get('nodeset'):
            continue
        kept = set(hardware.parse_cpu_spec(el.get('nodeset'))) - set(nodes)
        el.set('nodeset', hardware.format_cpu_spec(kept))
    return etree.tostring(root, encoding='unicode')


def mems_allowed(pid):
    """``Mems_allowed_list`` of process ``pid`` (what its cpuset allows)."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('Mems_allowed_list:'):
                return line.split(':', 1)[1].strip()
    return None


def numatune(root):
    """(mode, nodeset) of ``<numatune><memory>`` in parsed domain XML."""
    mem = root.find('numatune/memory')
    if mem is None:
        return None, None
    return mem.get('mode'), mem.get('nodeset')


class RealLibvirtTestBase(integrated_helpers._IntegratedTestBase):
    """Nova's services with the compute driver on the real libvirtd.

    Class attributes a user sets before running a test:

    * ``work_dir``: a directory QEMU (user libvirt-qemu) can read (the
      rig's ``rig_dir``); each test gets its own ``instances_path`` in it;
    * ``image``: a ``tests.libvirt_rig.GuestImage``;
    * ``COMPUTE_DRIVER``: ``loki.LokiDriver`` or ``libvirt.LibvirtDriver``;
    * ``PHANTOM_SLOW_NODE``: ``(node id, MiB)`` of the modelled slow node,
      or None for the host as it is (see the module doc);
    * ``INSTANCES_PATH``: an ``instances_path`` shared by several tests
      (keeps Nova's image cache ``_base`` warm), or None for a fresh one.
    """

    ADMIN_API = True
    microversion = 'latest'
    COMPUTE_DRIVER = 'loki.LokiDriver'
    PHANTOM_SLOW_NODE = None
    HOST = 'compute'
    INSTANCES_PATH = None
    #: Seconds between two looks at a server's status (each look is an
    #: API request: costly where the services run under TCG).
    POLL_INTERVAL = 0.02
    #: Kernel command line of the root image (image property
    #: os_command_line).
    CMDLINE = rig.KERNEL_CMDLINE
    #: More properties of the root image (e.g. fewer devices for guests
    #: nested under TCG).
    IMAGE_PROPERTIES = {}
    work_dir = None
    image = None

    def setUp(self):
        if self.work_dir is None or self.image is None:
            raise RuntimeError('set work_dir and image on %s first'
                               % type(self).__name__)
        self.instances_path = self.INSTANCES_PATH or os.path.join(
            self.work_dir, 'instances-%d-%d' % (os.getpid(),
                                                next(_numbers)))
        os.makedirs(self.instances_path, exist_ok=True)
        os.chmod(self.instances_path, 0o755)
        self.domain_prefix = 'loki-nova-%d-%d-' % (os.getpid(),
                                                   next(_numbers))
        #: Every domain XML the driver generated, in order, unchanged.
        self.generated_xml = []
        self.conn = libvirt.open(URI)
        self.addCleanup(self.conn.close)
        # Registered before the services start, so it runs after they are
        # stopped (cleanups run last in, first out).
        self.addCleanup(self._remove_own_leftovers)
        super().setUp()

    def _clear_attrs(self):
        # nova.test.TestCase deletes public attributes after each test;
        # under pytest that breaks pytest's own teardown.
        pass

    def _setup_services(self):
        for name, real in _REAL_HOST_FUNCTIONS.items():
            self.useFixture(fixtures.MonkeyPatch(name, real))
        self.useFixture(nova_fixtures.PrivsepFixture())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host._init_events', lambda host: None))
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.flags(compute_driver=self.COMPUTE_DRIVER,
                   instances_path=self.instances_path,
                   instance_name_template=self.domain_prefix + '%08x')
        self.flags(virt_type='qemu', connection_uri=URI, cpu_mode='none',
                   group='libvirt')
        if self.PHANTOM_SLOW_NODE:
            self._add_phantom_slow_node(*self.PHANTOM_SLOW_NODE)
        self._record_generated_xml()
        self._register_images()
        super()._setup_services()

    def _setup_compute_service(self):
        return self._start_compute(self.HOST)

    # -- stand-ins -------------------------------------------------------

    def _add_phantom_slow_node(self, node_id, memory_mb):
        real_cells = loki_driver.LokiDriver._host_cells

        def host_cells(driver):
            cells = real_cells(driver)
            assert node_id not in {c.id for c in cells}, node_id
            return cells + [tiers_mod.Cell(node_id, memory_mb, 0)]

        self.useFixture(fixtures.MonkeyPatch(
            'loki_nova.virt.driver.LokiDriver._host_cells', host_cells))
        real = [n for n in range(64)
                if os.path.isdir('/sys/devices/system/node/node%d' % n)]
        self.flags(node_tiers=','.join(
            ['%d:0' % n for n in real] + ['%d:1' % node_id]), group='loki')

    def _record_generated_xml(self):
        from nova.virt.libvirt import host as host_mod
        real_write = host_mod.Host.write_instance_config
        generated = self.generated_xml
        phantom = [self.PHANTOM_SLOW_NODE[0]] if self.PHANTOM_SLOW_NODE \
            else []

        def write_instance_config(host, xml):
            generated.append(xml)
            if phantom:
                xml = drop_nodes(xml, phantom)
            return real_write(host, self.rewrite_guest_xml(xml))

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.write_instance_config',
            write_instance_config))

    def rewrite_guest_xml(self, xml):
        """The domain XML libvirt is given, from the driver's (recorded
        unchanged in ``generated_xml``); a test class may take out what
        its guests cannot afford."""
        return xml

    def _register_images(self):
        """Kernel, ramdisk and root disk images in the GlanceFixture."""
        def add(name, disk_format, data, properties=None):
            meta = {'name': name, 'disk_format': disk_format,
                    'container_format': 'bare', 'size': len(data),
                    'status': 'active', 'is_public': True,
                    'min_disk': 0, 'min_ram': 0,
                    'properties': properties or {}}
            return self.glance.create(None, meta, data=_Bytes(data))['id']

        with open(self.image.kernel, 'rb') as f:
            kernel = add('loki-tiny-kernel', 'aki', f.read())
        with open(self.image.initrd, 'rb') as f:
            ramdisk = add('loki-tiny-ramdisk', 'ari', f.read())
        self.image_id = add('loki-tiny-root', 'raw',
                            b'\0' * ROOT_DISK_BYTES,
                            dict(self.IMAGE_PROPERTIES, kernel_id=kernel,
                                 ramdisk_id=ramdisk,
                                 os_command_line=self.CMDLINE))

    # -- helpers ---------------------------------------------------------

    def post_server(self, flavor_id):
        """POST a server of the rig's image; returns it as posted."""
        body = self._build_server(image_uuid=self.image_id,
                                  flavor_id=flavor_id, networks='none')
        return self.api.post_server({'server': body})

    def create_server(self, flavor_id, timeout=120):
        """POST a server; wait (bounded) until it is ACTIVE; fail at once
        on ERROR.  Returns the server as the API shows it."""
        return self.wait_active(self.post_server(flavor_id), timeout)

    def wait_active(self, server, timeout=120):
        def active():
            shown = self.api.get_server(server['id'])
            if shown['status'] == 'ERROR':
                raise AssertionError('server %s went to ERROR: %s' % (
                    server['id'], shown.get('fault')))
            return shown if shown['status'] == 'ACTIVE' else None
        return rig.wait_for(active, timeout, 'server %s ACTIVE'
                            % server['id'], interval=self.POLL_INTERVAL)

    def console_output(self, server):
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output']

    def wait_console(self, server, marker=rig.BOOT_MARKER,
                     timeout=rig.BOOT_TIMEOUT):
        """Wait until ``marker`` is in the server's console output (read
        through the API, i.e. the driver's ``get_console_output``)."""
        last = ['']

        def seen():
            last[0] = self.console_output(server)
            return marker in last[0]
        try:
            rig.wait_for(seen, timeout, 'boot marker %r on the console of '
                         '%s' % (marker, server['id']), interval=0.5)
        except TimeoutError as exc:
            raise AssertionError('%s; console ends: %s'
                                 % (exc, last[0][-2000:])) from None

    def domain(self, server):
        return self.conn.lookupByUUIDString(server['id'])

    def instance_name(self, server):
        return server['OS-EXT-SRV-ATTR:instance_name']

    def instance_dir(self, server):
        return os.path.join(self.instances_path, server['id'])

    def _remove_own_leftovers(self):
        """Destroy and undefine domains with this test's own name prefix
        (there are none unless the test failed half-way)."""
        for dom in self.conn.listAllDomains():
            if not dom.name().startswith(self.domain_prefix):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


class _Bytes:
    """What ``GlanceFixture.create`` reads image data from."""

    def __init__(self, data):
        self._data = data

    def read(self):
        return self._data

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

"""LokiDriver spawns a real tiered guest through Nova's own services.

Real: libvirtd + QEMU (TCG), the driver, Nova's image backend, virtlogd's
console log, Placement, the agent's ``LibvirtWatcher``.  Stubbed: Glance
(Nova's fixture, serving the rig's tiny kernel + initramfs), Neutron,
Cinder, libvirt's event thread, and -- because this machine has one NUMA
node -- the slow tier: a CPU-less node 1 is added to the driver's view of
the host and dropped from the numatune nodeset just before libvirt gets
the XML (``tests/nova/real_libvirt.py`` says exactly how and why).

Run (root, libvirtd installed; skips otherwise)::

    .venv/bin/python -m pytest -m libvirt tests/nova/test_real_libvirt.py
"""

import os
import shutil

import libvirt
import pytest
from lxml import etree

from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier.watcher import libvirt as lvwatcher
from loki_nova.virt import specs
from tests import libvirt_rig as rig
from tests.nova import base
from tests.nova import real_libvirt

pytestmark = pytest.mark.libvirt

# The rig's fixtures, bound here so pytest finds them.
libvirt_daemons = rig.libvirt_daemons
rig_dir = rig.rig_dir
tiny_guest_image = rig.tiny_guest_image

MiB = 1 << 20
FLAVOR_MB = 128
SLOW_NODE = 1
SLOW_NODE_MB = 4096


@pytest.fixture(scope='module', autouse=True)
def _rig(libvirt_daemons, rig_dir, tiny_guest_image):
    if not shutil.which('qemu-img'):
        pytest.skip("Nova's image backend needs qemu-img (apt-get install "
                    "qemu-utils)")
    TestRealLibvirtSpawn.work_dir = rig_dir
    TestRealLibvirtSpawn.image = tiny_guest_image


class TestRealLibvirtSpawn(real_libvirt.RealLibvirtTestBase):

    COMPUTE_DRIVER = 'loki.LokiDriver'
    PHANTOM_SLOW_NODE = (SLOW_NODE, SLOW_NODE_MB)

    def test_tiered_guest_boots_is_watched_and_is_removed(self):
        driver = self.computes[self.HOST].driver
        self.assertTrue(driver.host_tiers.tiered,
                        driver.host_tiers.describe())
        self.assertEqual([SLOW_NODE], driver.host_tiers.slow_nodes)

        extra = dict(specs.flavor_properties(FLAVOR_MB, 'static',
                                             dram_percent=50))
        flavor = self._create_flavor(memory_mb=FLAVOR_MB, vcpu=1, disk=1,
                                     ephemeral=0, extra_spec=extra)
        server = self.create_server(flavor)
        name = self.instance_name(server)
        self.assertTrue(name.startswith(self.domain_prefix), name)

        # The XML the driver generated: tiered over DRAM + the slow node.
        [generated] = [etree.fromstring(x) for x in self.generated_xml
                       if etree.fromstring(x).findtext('name') == name]
        self.assertEqual(('restrictive', '0-%d' % SLOW_NODE),
                         real_libvirt.numatune(generated))

        # The live domain, as the real libvirtd runs it.
        dom = self.domain(server)
        self.assertTrue(dom.isActive())
        live = etree.fromstring(dom.XMLDesc(0))
        self.assertEqual('qemu', live.get('type'))
        self.assertEqual(('restrictive', '0'), real_libvirt.numatune(live))
        self.assertEqual(('memfd', 'shared'), base.memory_backing(live))
        policy = base.loki_metadata(live)
        self.assertEqual(('static', FLAVOR_MB // 2),
                         (policy.policy, policy.floor_mb))
        self.assertEqual(os.path.join(self.instance_dir(server), 'kernel'),
                         live.findtext('os/kernel'))

        self.wait_console(server)

        # Usage split in Placement: floor as DRAM, the rest as slow memory.
        usages = self._get_provider_usages(
            self._get_provider_uuid_by_name(
                driver._host.get_hostname()))
        self.assertEqual(FLAVOR_MB // 2, usages['MEMORY_MB'])
        self.assertEqual(FLAVOR_MB // 2, usages[specs.SLOW_RC])

        # The agent's watcher finds it: QEMU pid and all guest RAM.
        pid_file = os.path.join(rig.PID_DIR, name + '.pid')
        with open(pid_file) as f:
            pid = int(f.read().split()[0])
        found = lvwatcher.LibvirtWatcher(rig.URI).scan()
        self.assertIn(server['id'], found)
        g = found[server['id']]
        self.assertEqual(pid, g.identity.pid)
        self.assertEqual(server['id'], g.identity.uuid)
        self.assertEqual(policy, g.policy)
        self.assertGreaterEqual(len(g.ranges), 1)
        self.assertEqual(FLAVOR_MB * MiB, sum(r.size for r in g.ranges))
        kfs = kernfs.KernelFS()
        guest.verify(kfs, g)
        # 'restrictive' is enforced by the cpuset cgroup (v1 here) only.
        self.assertEqual('0', real_libvirt.mems_allowed(pid))

        # Delete: no domain, no QEMU, no instance directory.
        instance_dir = self.instance_dir(server)
        self.assertTrue(os.path.isdir(instance_dir))
        self._delete_server(server)
        with self.assertRaises(libvirt.libvirtError) as ctx:
            self.conn.lookupByUUIDString(server['id'])
        self.assertEqual(libvirt.VIR_ERR_NO_DOMAIN,
                         ctx.exception.get_error_code())

        def qemu_gone():
            try:
                guest.verify(kfs, g)
            except guest.GuestGone:
                return True
            return False
        rig.wait_for(qemu_gone, rig.DAEMON_TIMEOUT,
                     'QEMU process %d exiting' % pid)
        self.assertFalse(os.path.exists(instance_dir))
        self.assertFalse(os.path.exists(pid_file))
        self.assertNotIn(server['id'],
                         lvwatcher.LibvirtWatcher(rig.URI).scan())

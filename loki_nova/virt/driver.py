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

"""``LokiDriver``: Nova's libvirt driver plus tiered guest memory.

What it adds to ``LibvirtDriver`` (everything else is inherited):

* ``init_host`` splits the host's NUMA cells into DRAM and slow tiers
  (``loki_nova.virt.tiers``).
* ``update_provider_tree`` reports DRAM as ``MEMORY_MB``, the slow tiers as
  ``CUSTOM_LOKI_SLOW_MEMORY_MB`` and the trait
  ``CUSTOM_LOKI_TIERED_MEMORY``; an untiered host reports exactly what the
  libvirt driver reports.
* ``spawn`` checks the ``loki:`` extra specs as a whole before anything is
  created; an invalid combination fails the build with a fault naming the
  spec.  It asks the host's tiering agent to reserve the guest's DRAM floor
  and, when the spawn then fails, to release it.
* Resize and cold migration check the target flavor and refuse, before
  the guest stops, to take a tiered guest to a host without a slow tier.
* ``_get_guest_config`` (used for spawn, hard reboot, resize, cold
  migration, evacuation and rescue) gives tiered guests memfd-backed shared
  RAM, memory allowed on DRAM + slow nodes in libvirt's ``restrictive``
  mode (cgroup limits only, no memory policy, so first touches land on the
  vCPU's local DRAM node and the agent may move pages between the allowed
  nodes), and ``<loki:memtier>`` metadata; untiered guests on a tiered host
  are confined to the DRAM nodes.
* Live migration does not regenerate the XML, so the destination publishes
  its node numbers before the migration and the source rewrites the
  numatune of the XML it hands to libvirt.
"""

import functools
import json
import mmap

from lxml import etree
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import strutils

import nova.conf
from nova import exception
from nova import objects
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver

from loki_nova.conf import loki as loki_conf
from loki_nova.memtier import kernfs
from loki_nova.memtier import metadata
from loki_nova.virt import specs
from loki_nova.virt import tiers as tiers_mod

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
# QEMU guests whose RAM is a memfd in the QEMU process: what the agent
# tiers.  qemu (TCG) is for test rigs; production hosts run kvm.
TIERED_VIRT_TYPES = ('kvm', 'qemu')
loki_conf.register_opts(CONF)

#: Memory mode of a tiered guest: cgroup ``cpuset.mems`` only, no
#: ``set_mempolicy``; pages go where they are first touched (local DRAM)
#: and ``move_pages`` may put them on any allowed node.
TIERED_MODE = 'restrictive'
#: Instance system_metadata key through which a live-migration destination
#: tells the source its DRAM and slow node numbers.
MIGRATION_NODES_KEY = 'loki_migration_nodes'
#: The host's base page size, the smallest libvirt reports: what Nova
#: gives a guest with ``hw:mem_page_size=small``.
SMALL_PAGE_KB = mmap.PAGESIZE // 1024


class LokiMemoryBacking(vconfig.LibvirtConfigGuestMemoryBacking):
    """``<memoryBacking>`` with a memfd source: QEMU then maps guest RAM as
    ``/memfd:memory-backend-memfd (deleted)``, which is how the agent's
    libvirt watcher finds exactly the guest's RAM in the QEMU process."""

    def __init__(self, base=None, **kwargs):
        super().__init__(**kwargs)
        if base is not None:
            for attr in ('hugepages', 'sharedpages', 'locked',
                         'allocateimmediate', 'discard'):
                setattr(self, attr, getattr(base, attr))
        self.sharedaccess = True

    def format_dom(self):
        root = super().format_dom()
        root.append(etree.Element('source', type='memfd'))
        return root


class LokiMetadata(vconfig.LibvirtConfigObject):
    """``<loki:memtier>`` in the domain's ``<metadata>``: the source of
    truth for the agent (``loki_nova.memtier.metadata`` reads it)."""

    def __init__(self, spec, **kwargs):
        super().__init__(root_name=metadata.ELEMENT,
                         ns_prefix=metadata.PREFIX,
                         ns_uri=metadata.NAMESPACE, **kwargs)
        self.spec = spec

    def format_dom(self):
        root = super().format_dom()
        root.append(self._text_node(metadata.POLICY, self.spec.policy))
        root.append(self._text_node(metadata.FLOOR, self.spec.floor_mb))
        if self.spec.policy == 'on_demand':
            root.append(self._text_node(metadata.CEILING,
                                        self.spec.ceiling_mb))
        return root


def _fault(message):
    """An exception that makes the compute manager stop the build (no
    reschedule) with ``message`` in the instance fault."""
    return exception.InvalidInput(reason=message)


class _MigratingGuest:
    """Stands in for ``Guest`` during ``_live_migration_operation`` so that
    the destination XML can be rewritten just before libvirt gets it."""

    def __init__(self, guest, rewrite):
        self._guest = guest
        self._rewrite = rewrite

    def migrate(self, destination, **kwargs):
        if kwargs.get('destination_xml'):
            kwargs['destination_xml'] = self._rewrite(
                kwargs['destination_xml'])
        return self._guest.migrate(destination, **kwargs)

    def __getattr__(self, name):
        return getattr(self._guest, name)


class LokiDriver(libvirt_driver.LibvirtDriver):
    """The libvirt driver with tiered guest memory; see the module doc."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._tiers = tiers_mod.HostTiers({}, {}, 'not discovered yet')
        self._agent_rpc = None

    # -- host ------------------------------------------------------------

    def init_host(self, host):
        super().init_host(host)
        self._tiers = self._discover_tiers()
        if self._tiers.tiered:
            LOG.info('loki: tiered host: %s', self._tiers.describe())
        else:
            LOG.info('loki: no slow memory tier on this host (%s); guests '
                     'run as with the libvirt driver and tiered flavors are '
                     'refused', self._tiers.describe())

    def _host_cells(self):
        caps = self._host.get_capabilities()
        topo = caps.host.topology
        if topo is None:
            return []
        return [tiers_mod.Cell(cell.id, cell.memory // 1024, len(cell.cpus))
                for cell in topo.cells]

    def _discover_tiers(self):
        cells = self._host_cells()
        if CONF.libvirt.virt_type not in TIERED_VIRT_TYPES:
            LOG.warning('loki: [libvirt] virt_type is %s; loki tiers only '
                        '%s guests, so this host is reported untiered and '
                        'tiered flavors are refused',
                        CONF.libvirt.virt_type,
                        ' and '.join(TIERED_VIRT_TYPES))
            return tiers_mod.untiered(
                cells, 'virt_type %s' % CONF.libvirt.virt_type)
        if CONF.libvirt.file_backed_memory > 0:
            LOG.warning('loki: [libvirt] file_backed_memory is set; guest '
                        'RAM is a file, not tiered memory, so this host is '
                        'reported untiered')
            return tiers_mod.untiered(cells, 'file-backed memory')
        return tiers_mod.discover(
            cells, kernfs.KernelFS(CONF.loki.sysfs_root),
            CONF.loki.node_tiers or None)

    @property
    def host_tiers(self):
        return self._tiers

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        before = provider_tree.data(nodename).inventory.get(specs.SLOW_RC)
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        inventory = provider_tree.data(nodename).inventory
        if not self._tiers.tiered:
            if provider_tree.has_traits(nodename, [specs.TRAIT]):
                provider_tree.remove_traits(nodename, specs.TRAIT)
            if before is not None:
                # The host was tiered and its guests may still hold slow
                # memory: Placement refuses to drop inventory in use, which
                # would stop every resource update.  Keep the class, all of
                # it reserved, so nothing new lands on it.
                LOG.error('loki: this host reported %d MiB of %s before and '
                          'now finds no slow tier (%s); keeping the class '
                          'fully reserved so existing allocations stay '
                          'valid. Check the kernel memory tiers or set '
                          '[loki] node_tiers.', before['total'],
                          specs.SLOW_RC, self._tiers.describe())
                inventory[specs.SLOW_RC] = dict(before,
                                                reserved=before['total'])
                provider_tree.update_inventory(nodename, inventory)
            return
        memory = inventory.get('MEMORY_MB')
        fast_mb = self._tiers.fast_mb
        if memory is not None and fast_mb:
            memory['total'] = fast_mb
            memory['max_unit'] = fast_mb
        slow_mb = self._tiers.slow_mb
        inventory[specs.SLOW_RC] = {
            'total': slow_mb,
            'min_unit': 1,
            'max_unit': slow_mb,
            'step_size': 1,
            'allocation_ratio': CONF.loki.slow_memory_allocation_ratio,
            'reserved': min(CONF.loki.slow_memory_reserved_mb, slow_mb),
        }
        provider_tree.update_inventory(nodename, inventory)
        provider_tree.add_traits(nodename, specs.TRAIT)

    # -- flavors ---------------------------------------------------------

    @staticmethod
    def tier_spec(flavor):
        """The flavor's ``TierSpec`` (None when untiered); raises
        ``SpecError``."""
        return specs.from_extra_specs(flavor.memory_mb, flavor.extra_specs)

    @staticmethod
    def _image_prop(image_meta, name):
        props = getattr(image_meta, 'properties', None)
        if props is None:
            return None
        return props.get(name) if props.obj_attr_is_set(name) else None

    @classmethod
    def _check_page_size(cls, flavor, image_meta):
        """Refuse any page size but the small one, read as Nova reads it
        (``small``, a number of KiB, or a size with a unit: ``4KiB``,
        ``4096B``; ``any`` may give huge pages)."""
        extra = flavor.extra_specs or {}
        page = extra.get('hw:mem_page_size') or cls._image_prop(
            image_meta, 'hw_mem_page_size')
        if not page:
            return
        try:
            page_kb = hardware._get_numa_pagesize_constraint(flavor,
                                                             image_meta)
        except exception.Invalid as exc:
            raise specs.SpecError('hw:mem_page_size=%s: %s' % (
                page, exc.format_message())) from None
        if page_kb in (hardware.MEMPAGES_SMALL, SMALL_PAGE_KB):
            return
        # Instance faults keep 255 characters: the spec and the fix first.
        raise specs.SpecError(
            'hw:mem_page_size=%s: not with a tiered %s (huge pages are not '
            'moved between tiers); set small or %dKiB, remove it or set '
            '%s=none' % (page, specs.POLICY, SMALL_PAGE_KB, specs.POLICY))

    def _check_combinations(self, flavor, image_meta):
        """Refuse what cannot be tiered; raises ``SpecError``."""
        extra = flavor.extra_specs or {}
        self._check_page_size(flavor, image_meta)
        if extra.get('hw:pmem'):
            raise specs.SpecError(
                'hw:pmem (vPMEM): not with a tiered %s (the same memory '
                'cannot be a device and a slow tier); use one or the other'
                % specs.POLICY)

        def truthy(value):
            # As Nova reads these specs (y, t, on, 1, ...; image
            # properties are booleans already).
            return value is not None and strutils.bool_from_string(value)

        if truthy(extra.get('hw:mem_encryption')) or truthy(
                self._image_prop(image_meta, 'hw_mem_encryption')):
            raise specs.SpecError(
                'hw:mem_encryption (SEV): not with a tiered %s (encrypted '
                'guest memory is pinned, not moved between tiers); use '
                '%s=none' % (specs.POLICY, specs.POLICY))
        if hardware.is_realtime_enabled(flavor) or truthy(
                extra.get('hw:locked_memory')) or truthy(
                self._image_prop(image_meta, 'hw_locked_memory')):
            raise specs.SpecError(
                'hw:locked_memory/hw:cpu_realtime: not with a tiered %s '
                '(locked memory is not moved between tiers); use %s=none'
                % (specs.POLICY, specs.POLICY))

    def _instance_spec(self, instance):
        """The running instance's ``TierSpec``; an instance whose flavor
        specs are invalid (built before they were checked: spawn and resize
        refuse them) runs untiered, with an error in the log."""
        try:
            return self.tier_spec(instance.flavor)
        except specs.SpecError as exc:
            LOG.error('loki: %s; running the guest untiered', exc,
                      instance=instance)
            return None

    def _check_flavor(self, flavor, image_meta):
        """The checks of a flavor a guest is about to get, wherever it
        runs: its ``loki`` keys, their combination and what else it asks
        for.  Returns the ``TierSpec`` (None when untiered) or raises
        ``SpecError``."""
        specs.check_keys(flavor.extra_specs)
        spec = self.tier_spec(flavor)
        if spec is None:
            return None
        self._check_combinations(flavor, image_meta)
        if not specs.check_resources(flavor.memory_mb, flavor.extra_specs,
                                     spec):
            LOG.warning(
                'loki: flavor %s is tiered (%s) but carries no '
                'resources:MEMORY_MB / resources:%s split, so Placement '
                'accounts all %d MiB as DRAM; "loki-memtier '
                'flavor-properties" prints the split', flavor.name,
                spec.policy, specs.SLOW_RC, flavor.memory_mb)
        return spec

    def check_tiered_flavor(self, flavor, image_meta):
        """Every check a tiered guest must pass on this host; returns the
        ``TierSpec`` (None when untiered) or raises ``SpecError``."""
        spec = self._check_flavor(flavor, image_meta)
        if spec is None:
            return None
        if not self._tiers.tiered:
            raise specs.SpecError(
                '%s=%s: this host has no slow memory tier; add trait:%s='
                'required to the flavor so the scheduler picks a tiered host'
                % (specs.POLICY, spec.policy, specs.TRAIT))
        return spec

    # -- lifecycle -------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        try:
            spec = self.check_tiered_flavor(instance.flavor, image_meta)
        except specs.SpecError as exc:
            LOG.error('loki: refusing to build: %s', exc, instance=instance)
            raise _fault(str(exc))
        held = False
        if spec is not None:
            LOG.info('loki: spawning a %s guest: DRAM floor %d MiB, ceiling '
                     '%d MiB of %d MiB', spec.policy, spec.floor_mb,
                     spec.ceiling_mb, instance.flavor.memory_mb,
                     instance=instance)
            answer = self.reserve_dram(context, instance, spec.floor_mb)
            # ok and timeout both leave a reservation on the agent (until
            # the guest appears or the reservation expires).  Without an
            # answer the agent is most likely down: a release would only
            # wait for the same timeout again.
            from loki_nova.memtier import rpc as agent_rpc
            held = answer is not None and answer.get('status') in (
                agent_rpc.OK, agent_rpc.TIMEOUT)
        try:
            return super().spawn(
                context, instance, image_meta, injected_files,
                admin_password, allocations, network_info=network_info,
                block_device_info=block_device_info, power_on=power_on,
                accel_info=accel_info)
        except Exception:
            with excutils.save_and_reraise_exception():
                if held:
                    # The guest will not start here (Nova may reschedule
                    # it to another host): give its floor back now rather
                    # than when the reservation expires.
                    self.release_dram(context, instance)

    @staticmethod
    def _agent_host(instance):
        return instance.host or CONF.host

    @staticmethod
    def _agent_context(context):
        return {'request_id': getattr(context, 'request_id', None)}

    def _agent_client(self):
        if self._agent_rpc is None:
            import oslo_messaging as messaging

            from loki_nova.memtier import rpc as agent_rpc
            from nova import rpc as nova_rpc
            transport = nova_rpc.TRANSPORT
            if transport is None:
                transport = messaging.get_rpc_transport(CONF)
            self._agent_rpc = agent_rpc.AgentClient(transport)
        return self._agent_rpc

    def reserve_dram(self, context, instance, mb):
        """Ask this host's tiering agent for ``mb`` MiB of DRAM before the
        guest starts, and wait (bounded) for its answer.  Whatever it
        says, the spawn goes on: the answer only decides what is logged.
        Returns the answer, or None when there was none."""
        timeout = CONF.loki.reserve_dram_timeout
        if not timeout:
            return None
        from loki_nova.memtier import rpc as agent_rpc
        host = self._agent_host(instance)
        try:
            answer = self._agent_client().reserve_dram(
                self._agent_context(context), host, instance.uuid, mb,
                timeout)
        except Exception as exc:
            LOG.warning('loki: no answer from the tiering agent on %s to '
                        'reserve_dram(%d MiB) (%s: %s); starting the guest '
                        'anyway: Placement holds its DRAM floor and the '
                        'agent makes room when it sees the guest', host, mb,
                        type(exc).__name__, exc, instance=instance)
            return None
        if answer.get('status') == agent_rpc.OK:
            LOG.info('loki: the tiering agent made room for %d MiB of DRAM '
                     'in %.1f s: %s', mb, answer.get('waited_s', 0),
                     answer.get('reason'), instance=instance)
        else:
            LOG.warning('loki: the tiering agent on %s answered %s to '
                        'reserve_dram(%d MiB): %s; starting the guest anyway',
                        host, answer.get('status'), mb, answer.get('reason'),
                        instance=instance)
        return answer

    def release_dram(self, context, instance):
        """Tell this host's tiering agent that the guest it reserved DRAM
        for is not going to start here.  Never raises: a failure is
        logged, and the agent drops the reservation when it expires."""
        host = self._agent_host(instance)
        try:
            answer = self._agent_client().release_dram(
                self._agent_context(context), host, instance.uuid)
        except Exception as exc:
            LOG.warning('loki: the spawn failed and the DRAM reserved for '
                        'the guest could not be released on %s (%s: %s); '
                        'the tiering agent drops the reservation when it '
                        'expires', host, type(exc).__name__, exc,
                        instance=instance)
            return
        LOG.info('loki: the spawn failed; the tiering agent on %s answered '
                 '%s to release_dram: %s', host, answer.get('status'),
                 answer.get('reason'), instance=instance)

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        # Resize and cold migration: refuse an invalid target flavor, or a
        # tiered one on a destination without a slow tier (the guest would
        # silently run untiered there), before the guest stops.
        try:
            spec = self._check_flavor(flavor, instance.image_meta)
            if spec is not None:
                self._check_destination_tiered(context, instance, spec)
        except specs.SpecError as exc:
            LOG.error('loki: refusing to resize or migrate: %s', exc,
                      instance=instance)
            raise exception.InstanceFaultRollback(
                inner_exception=exception.ResizeError(reason=str(exc)))
        return super().migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info,
            block_device_info=block_device_info, timeout=timeout,
            retry_interval=retry_interval)

    def _check_destination_tiered(self, context, instance, spec):
        """Raise ``SpecError`` unless the destination of the instance's
        resize or cold migration is a tiered host.  It is tiered when its
        resource provider has the trait this driver gives tiered hosts, the
        same trait the scheduler matches for a flavor that requires it."""
        ctxt = context.elevated()
        try:
            migration = objects.Migration.get_by_id(
                ctxt, instance.migration_context.migration_id)
            dest = migration.dest_compute
            if dest == instance.host:   # a resize on the same host
                tiered = self._tiers.tiered
            else:
                node = objects.ComputeNode.get_by_host_and_nodename(
                    ctxt, dest, migration.dest_node)
                tiered = specs.TRAIT in self.virtapi.reportclient \
                    .get_provider_traits(ctxt, node.uuid).traits
        except Exception as exc:
            # Moving on would risk running the guest untiered.
            raise specs.SpecError(
                '%s=%s: could not check that the destination has a slow '
                'memory tier (%s: %s); try again' % (
                    specs.POLICY, spec.policy, type(exc).__name__,
                    exc)) from None
        if not tiered:
            raise specs.SpecError(
                '%s=%s: the destination %s has no slow memory tier; add '
                'trait:%s=required to the flavor so the scheduler picks a '
                'tiered host' % (specs.POLICY, spec.policy, dest,
                                 specs.TRAIT))
        LOG.info('loki: the destination %s has a slow memory tier (trait '
                 '%s)', dest, specs.TRAIT, instance=instance)

    # -- guest XML -------------------------------------------------------

    def _get_guest_config(self, instance, network_info, image_meta,
                          disk_info, *args, **kwargs):
        conf = super()._get_guest_config(instance, network_info, image_meta,
                                         disk_info, *args, **kwargs)
        spec = self._instance_spec(instance)
        if not self._tiers.tiered:
            if spec is not None:
                LOG.warning('loki: %s=%s, but this host has no slow memory '
                            'tier; the guest runs with all its memory in '
                            'DRAM', specs.POLICY, spec.policy,
                            instance=instance)
            return conf
        if spec is None:
            self._confine_to_dram(conf)
        else:
            self._make_tiered(conf, spec)
        return conf

    def _confine_to_dram(self, conf):
        if conf.numatune is not None:
            # Nova placed the guest's NUMA cells; they have CPUs, so they
            # are DRAM nodes already.
            return
        numatune = vconfig.LibvirtConfigGuestNUMATune()
        numatune.memory = vconfig.LibvirtConfigGuestNUMATuneMemory()
        numatune.memory.mode = 'strict'
        numatune.memory.nodeset = self._tiers.fast_nodes
        conf.numatune = numatune

    def _make_tiered(self, conf, spec):
        conf.membacking = LokiMemoryBacking(conf.membacking)
        slow = set(self._tiers.slow_nodes)
        if conf.numatune is None:
            numatune = vconfig.LibvirtConfigGuestNUMATune()
            numatune.memory = vconfig.LibvirtConfigGuestNUMATuneMemory()
            numatune.memory.nodeset = sorted(
                set(self._tiers.fast_nodes) | slow)
            conf.numatune = numatune
        else:
            # A NUMA guest: each guest cell keeps its DRAM cell and may also
            # use every slow node.
            numatune = conf.numatune
            if numatune.memory is not None:
                numatune.memory.nodeset = sorted(
                    set(numatune.memory.nodeset) | slow)
            for memnode in numatune.memnodes:
                memnode.nodeset = sorted(set(memnode.nodeset) | slow)
                memnode.mode = TIERED_MODE
        if numatune.memory is not None:
            numatune.memory.mode = TIERED_MODE
        conf.metadata.append(LokiMetadata(spec))

    # -- live migration --------------------------------------------------

    def _migration_nodes(self, check=None):
        return {'check': check, 'fast': self._tiers.fast_nodes,
                'slow': self._tiers.slow_nodes}

    @staticmethod
    def _check_token(migrate_data):
        """The destination check's own token (the name of its shared
        storage probe file), tying published node numbers to one check."""
        if migrate_data is not None and migrate_data.obj_attr_is_set(
                'filename'):
            return migrate_data.filename
        return None

    def _nodes_for(self, context, instance, migrate_data):
        """The published nodes, used up, if they belong to this
        migration's destination check; None otherwise."""
        nodes = self._published_nodes(context, instance, consume=True)
        token = self._check_token(migrate_data)
        if nodes is not None and token is not None and \
                nodes.get('check') not in (None, token):
            LOG.warning('loki: ignoring node numbers published by another '
                        'destination check', instance=instance)
            return None
        return nodes

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info,
                                           dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        data = super().check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration=block_migration,
            disk_over_commit=disk_over_commit)
        # The destination's node numbers, for the source's XML rewrite,
        # written on a fresh copy so no other system_metadata is lost.
        fresh = objects.Instance.get_by_uuid(
            context, instance.uuid, expected_attrs=['system_metadata'])
        fresh.system_metadata[MIGRATION_NODES_KEY] = json.dumps(
            self._migration_nodes(self._check_token(data)),
            separators=(',', ':'))
        fresh.save()
        return data

    @staticmethod
    def _published_nodes(context, instance, consume=False):
        """The destination's nodes as it published them; ``consume``
        removes them, so that a later migration to a host that publishes
        nothing (not a loki host) cannot pick up stale numbers."""
        fresh = objects.Instance.get_by_uuid(
            context, instance.uuid, expected_attrs=['system_metadata'])
        raw = fresh.system_metadata.get(MIGRATION_NODES_KEY)
        if raw is not None and consume:
            del fresh.system_metadata[MIGRATION_NODES_KEY]
            fresh.save()
        return json.loads(raw) if raw else None

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        try:
            self._published_nodes(context, instance, consume=True)
        except Exception as exc:  # never skip the destination's cleanup
            LOG.warning('loki: could not drop the published node numbers: '
                        '%s', exc, instance=instance)
        return super().rollback_live_migration_at_destination(
            context, instance, network_info, block_device_info,
            destroy_disks=destroy_disks, migrate_data=migrate_data)

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data, block_device_info=None):
        data = super().check_can_live_migrate_source(
            context, instance, dest_check_data,
            block_device_info=block_device_info)
        if self._tiers.tiered and self._instance_spec(instance):
            nodes = self._published_nodes(context, instance)
            token = self._check_token(dest_check_data)
            if not nodes or not nodes.get('slow') or (
                    token is not None and
                    nodes.get('check') not in (None, token)):
                self._published_nodes(context, instance, consume=True)
                raise exception.MigrationPreCheckError(
                    reason='instance is tiered (%s) and the destination '
                           'did not report a slow memory tier; it must run '
                           'loki.LokiDriver on a tiered host' % specs.POLICY)
        return data

    def _live_migration_operation(self, context, instance, dest,
                                  block_migration, migrate_data, guest,
                                  device_names):
        nodes = self._nodes_for(context, instance, migrate_data)
        if self._tiers.tiered:
            spec = self._instance_spec(instance)
            rewrite = functools.partial(
                rewrite_numatune, numa_guest=bool(instance.numa_topology),
                tiered=spec is not None, source=self._migration_nodes(),
                destination=nodes)
            guest = _MigratingGuest(guest, rewrite)
        return super()._live_migration_operation(
            context, instance, dest, block_migration, migrate_data, guest,
            device_names)


def _nodeset(text):
    return set(hardware.parse_cpu_spec(text)) if text else set()


def rewrite_numatune(xml, numa_guest, tiered, source, destination):
    """Point the ``<numatune>`` of a live-migrating guest's XML at the
    destination's nodes.

    ``source``/``destination`` are ``{'fast': [...], 'slow': [...]}``
    (``destination`` None when the destination published nothing: not a
    loki host).  A NUMA guest's DRAM nodes were already rewritten by Nova
    from the destination's NUMA claim; they are kept (whatever their
    numbers were on the source) and the destination's slow nodes added.
    A guest without NUMA topology has loki's numatune only, which is
    rebuilt.  A tiered guest needs a destination that published its
    nodes; ``MigrationError`` otherwise."""
    root = etree.fromstring(xml)
    if tiered:
        if not destination or not destination.get('slow'):
            raise exception.MigrationError(
                reason='tiered guest (%s): the destination published no '
                       'slow memory nodes' % specs.POLICY)
        _restore_memfd(root)
    numatune = root.find('numatune')
    if numatune is None:
        return etree.tostring(root, encoding='unicode')
    if destination is None:
        if not numa_guest:
            root.remove(numatune)
        return etree.tostring(root, encoding='unicode')
    dst_fast = set(destination.get('fast', ()))
    dst_slow = set(destination.get('slow', ())) if tiered else set()
    for el in [numatune.find('memory')] + numatune.findall('memnode'):
        if el is None:
            continue
        if numa_guest:
            # Nova's DRAM cells, or every DRAM node if Nova left none.
            dram = (_nodeset(el.get('nodeset')) & dst_fast) or dst_fast
            nodes = dram | dst_slow
        else:
            nodes = dst_fast | dst_slow
        el.set('nodeset', hardware.format_cpu_spec(nodes))
    return etree.tostring(root, encoding='unicode')


def _restore_memfd(root):
    """Nova's ``get_updated_guest_xml`` strips ``<source>`` and
    ``<access>`` from ``<memoryBacking>`` (it only knows file-backed
    memory); a tiered guest keeps its shared memfd RAM on the
    destination."""
    backing = root.find('memoryBacking')
    if backing is None:
        backing = etree.SubElement(root, 'memoryBacking')
    for name in ('source', 'access'):
        for el in backing.findall(name):
            backing.remove(el)
    backing.append(etree.Element('source', type='memfd'))
    backing.append(etree.Element('access', mode='shared'))

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

"""DAMON (virtual address monitoring) through its sysfs interface.

One kdamond per guest, each with one ``vaddr`` context targeting the
guest's pid and one ``stat`` scheme whose access pattern matches every
region; each sample asks the kdamond to refresh the scheme's tried regions
(``update_schemes_tried_regions``) and reads their start, end and
``nr_accesses``: the sampled access checks that found the region accessed
in the last aggregation interval (sample 5 ms, aggregation 100 ms, so 0 to
20).  A chunk gets the value of the hottest region overlapping it.

DAMON may belong to someone else - the host's own memory management, an
operator running ``damo``.  This tracker only ever writes to DAMON when
there is no kdamond at all, or when every kdamond is one it created: it
records the kernel threads it started in ``state_dir`` (so a restarted
agent recognises its own), and otherwise reports itself unavailable
without writing anything.  Writing ``nr_kdamonds`` would tear down every
existing kdamond, so that check comes before any write.

On a KVM host the guest's accesses reach DAMON through KVM's MMU notifiers,
which clear and report the accessed bits of guest memory; under TCG they
are ordinary accesses of the QEMU process.  Under TCG the guest kernel
needs ``pti=on`` for DAMON to see re-accesses (see shared/RIG.md).
"""

import errno
import gzip
import json
import logging
import os

import numpy as np

from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier import trackers

LOG = logging.getLogger(__name__)

KDAMONDS = kernfs_mod.DAMON_DIR + '/admin/kdamonds'
#: Kernel modules that run kdamonds the sysfs interface does not list.
KERNEL_USERS = ('damon_reclaim', 'damon_lru_sort', 'damon_stat')
STATE_FILE = 'damon-kdamonds.json'
_U32_MAX = 2 ** 32 - 1
_ULONG_MAX = 2 ** 64 - 1


class DamonTracker(trackers.Tracker):
    name = 'damon'

    def __init__(self, kfs, state_dir=None, sample_us=5000, aggr_us=100000,
                 update_us=1000000, min_regions=10, max_regions=1000):
        if not kfs.exists(KDAMONDS + '/nr_kdamonds'):
            raise trackers.TrackerUnavailable(
                'the kernel has no DAMON sysfs interface (%s is missing; '
                'needs CONFIG_DAMON_SYSFS)' % kfs.path(KDAMONDS))
        self.state_path = (os.path.join(state_dir, STATE_FILE)
                           if state_dir else None)
        # Read-only checks first; nothing is written unless all pass.
        for module in KERNEL_USERS:
            path = 'sys/module/%s/parameters/enabled' % module
            if kfs.exists(path) and kfs.read_text(path) == 'Y':
                raise trackers.TrackerUnavailable(
                    'DAMON is in use by the kernel\'s %s, and this agent '
                    'leaves it alone' % module)
        if kernel_config(kfs, 'CONFIG_DAMON_VADDR') is False:
            raise trackers.TrackerUnavailable(
                'the kernel is built without CONFIG_DAMON_VADDR (virtual '
                'address monitoring)')
        existing = kfs.read_int(KDAMONDS + '/nr_kdamonds')
        if existing and not self._ours(kfs, existing):
            raise trackers.TrackerUnavailable(
                'DAMON is in use: %d kdamond(s) exist that this agent did '
                'not create, and it leaves them alone (if they are left over '
                'from an agent that crashed, stop them by writing 0 to %s)'
                % (existing, kfs.path(KDAMONDS + '/nr_kdamonds')))
        # Only now may we write: DAMON is free or entirely ours.
        self.kfs = kernfs_mod.KernelFS(kfs.root, allow_damon_writes=True)
        self.attrs = dict(sample_us=sample_us, aggr_us=aggr_us,
                          update_us=update_us)
        self.regions = (min_regions, max_regions)
        self.max_accesses = max(1, aggr_us // sample_us)
        self._slots = {}      # key -> kdamond index
        self._pids = {}       # key -> pid
        self._stop_all(existing)
        self._set_count(0)
        self._probe_vaddr()

    # -- ownership --------------------------------------------------------

    def _ours(self, kfs, existing):
        if not self.state_path or not os.path.exists(self.state_path):
            return False
        try:
            with open(self.state_path) as f:
                recorded = json.load(f)['kdamond_pids']
        except (OSError, ValueError, KeyError):
            return False
        if len(recorded) != existing:
            return False
        for i, pid in enumerate(recorded):
            try:
                now = kfs.read_text('%s/%d/pid' % (KDAMONDS, i))
            except kernfs_mod.KernelFSError:
                return False
            if str(pid) != now:
                return False
        LOG.info('DAMON: taking back the %d kdamond(s) this agent started '
                 'before it restarted', existing)
        return True

    def _record(self):
        if not self.state_path:
            return
        pids = [self.kfs.read_int('%s/%d/pid' % (KDAMONDS, i))
                for i in range(len(self._slots))]
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'kdamond_pids': pids}, f)
        os.replace(tmp, self.state_path)

    # -- kdamond management ----------------------------------------------

    def _k(self, i, rel=''):
        return '%s/%d/%s' % (KDAMONDS, i, rel)

    def _stop_all(self, count):
        for i in range(count):
            if self.kfs.read_text(self._k(i, 'state')) == 'on':
                self.kfs.write_text(self._k(i, 'state'), 'off')

    def _set_count(self, n):
        self.kfs.write_text(KDAMONDS + '/nr_kdamonds', n)

    def _probe_vaddr(self):
        self._set_count(1)
        try:
            self.kfs.write_text(self._k(0, 'contexts/nr_contexts'), 1)
            ops = self.kfs.read_text(
                self._k(0, 'contexts/0/avail_operations')).split()
        finally:
            self._set_count(0)
        if 'vaddr' not in ops:
            raise trackers.TrackerUnavailable(
                'DAMON offers %s operations, not vaddr'
                % (', '.join(ops) or 'no'))

    def _configure(self, i, pid):
        ctx = 'contexts/0/'
        w = self.kfs.write_text
        w(self._k(i, 'contexts/nr_contexts'), 1)
        w(self._k(i, ctx + 'operations'), 'vaddr')
        for name, value in self.attrs.items():
            w(self._k(i, ctx + 'monitoring_attrs/intervals/' + name), value)
        w(self._k(i, ctx + 'monitoring_attrs/nr_regions/min'),
          self.regions[0])
        w(self._k(i, ctx + 'monitoring_attrs/nr_regions/max'),
          self.regions[1])
        w(self._k(i, ctx + 'targets/nr_targets'), 1)
        w(self._k(i, ctx + 'targets/0/pid_target'), pid)
        w(self._k(i, ctx + 'schemes/nr_schemes'), 1)
        scheme = ctx + 'schemes/0/'
        w(self._k(i, scheme + 'action'), 'stat')
        # The defaults (all 0) match nothing: open every range.
        for name, top in (('sz', _ULONG_MAX), ('nr_accesses', _U32_MAX),
                          ('age', _U32_MAX)):
            w(self._k(i, scheme + 'access_pattern/%s/min' % name), 0)
            w(self._k(i, scheme + 'access_pattern/%s/max' % name), top)

    def update(self, guests):
        pids = {key: g.identity.pid for key, (g, _) in guests.items()}
        if pids == self._pids:
            return
        self._stop_all(len(self._slots))
        self._set_count(len(pids))
        self._slots = {}
        for i, (key, pid) in enumerate(sorted(pids.items())):
            self._configure(i, pid)
            self._slots[key] = i
        failed = []
        for key, i in self._slots.items():
            try:
                self.kfs.write_text(self._k(i, 'state'), 'on')
            except kernfs_mod.KernelFSError as exc:
                failed.append('%s (%s)' % (key, exc))
        self._pids = pids
        self._record()
        if failed:
            LOG.warning('DAMON could not start monitoring %s',
                        ', '.join(failed))

    # -- sampling -------------------------------------------------------

    def _read_regions(self, i):
        base = self._k(i, 'contexts/0/schemes/0/tried_regions')
        names = [n for n in self.kfs.listdir(base) if n.isdigit()]
        out = np.zeros((len(names), 3), dtype=np.uint64)
        for row, name in enumerate(names):
            d = self.kfs.path('%s/%s/' % (base, name))
            for col, field in enumerate(('start', 'end', 'nr_accesses')):
                fd = os.open(d + field, os.O_RDONLY)
                try:
                    text = os.read(fd, 64)
                finally:
                    os.close(fd)
                try:
                    out[row, col] = int(text)
                except ValueError:
                    raise kernfs_mod.KernelFSError(
                        errno.EINVAL, '%s holds %r, not an integer'
                        % (d + field, text)) from None
        return out

    def sample(self, guest, layout):
        i = self._slots.get(guest.key)
        if i is None:
            raise KeyError('guest %s is not monitored by DAMON' % guest.key)
        self.kfs.write_text(self._k(i, 'state'),
                            'update_schemes_tried_regions')
        regions = self._read_regions(i)
        return regions_to_chunks(regions, layout, self.max_accesses)

    def forget(self, key):
        # The kdamond is reconfigured by the next update().
        pass

    def close(self):
        if self._slots:
            self._stop_all(len(self._slots))
        self._set_count(0)
        self._slots, self._pids = {}, {}
        if self.state_path and os.path.exists(self.state_path):
            os.unlink(self.state_path)


def kernel_config(kfs, option):
    """True/False when the running kernel's config (/proc/config.gz or
    /boot/config-RELEASE) says whether ``option`` is built in, None when
    no config can be read."""
    text = None
    try:
        with gzip.open(kfs.path('proc/config.gz'), 'rt') as f:
            text = f.read()
    except OSError:
        try:
            release = kfs.read_text('proc/sys/kernel/osrelease')
            with open(kfs.path('boot/config-%s' % release)) as f:
                text = f.read()
        except (OSError, kernfs_mod.KernelFSError):
            return None
    return ('\n%s=y\n' % option) in ('\n' + text)


def regions_to_chunks(regions, layout, max_accesses):
    """DAMON regions (start, end, nr_accesses rows) → per-chunk samples on
    the 0..SAMPLE_SCALE scale; a chunk takes its hottest region."""
    out = np.zeros(len(layout), dtype=np.uint8)
    if not len(regions) or not len(layout):
        return out
    value = np.minimum(regions[:, 2] * trackers.SAMPLE_SCALE // max_accesses,
                       trackers.SAMPLE_SCALE).astype(np.uint8)
    ends = layout.starts + layout.sizes
    lo = np.searchsorted(ends, regions[:, 0], side='right')
    hi = np.searchsorted(layout.starts, regions[:, 1], side='left')
    for a, b, v in zip(lo, hi, value):
        if b > a and v:
            np.maximum(out[a:b], v, out=out[a:b])
    return out

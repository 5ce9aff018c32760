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

"""The host arbiter: how much DRAM each tiered guest may hold.

* ``static`` guests get exactly their floor.
* ``on_demand`` guests get their floor, plus a share of what is left of the
  fast tier (after the host reserve, the floors and any pending
  reservations) in proportion to their unmet hot demand, never above their
  ceiling.  When their demand fits, each gets all of it; when DRAM is
  needed elsewhere (a reservation, a new guest) the shares shrink and
  budgets fall back toward the floors.
* If the floors alone do not fit, nothing is handed out:
  ``InsufficientDram`` says by how much they overflow.  A floor is never
  silently cut.

All quantities are integer MiB.
"""

import dataclasses
import logging

LOG = logging.getLogger(__name__)

STATIC = 'static'
ON_DEMAND = 'on_demand'
POLICIES = (STATIC, ON_DEMAND)


class InsufficientDram(Exception):
    """The guaranteed floors (plus reserve and reservations) exceed the
    fast tier."""

    def __init__(self, capacity_mb, reserve_mb, reserved_mb, floors_mb):
        self.capacity_mb = capacity_mb
        self.reserve_mb = reserve_mb
        self.reserved_mb = reserved_mb
        self.floors_mb = floors_mb
        needed = reserve_mb + reserved_mb + floors_mb
        super().__init__(
            'DRAM floors of %d MiB plus host reserve %d MiB and pending '
            'reservations %d MiB need %d MiB, but the fast tier has %d MiB '
            '(%d MiB short)' % (floors_mb, reserve_mb, reserved_mb, needed,
                                capacity_mb, needed - capacity_mb))


@dataclasses.dataclass(frozen=True)
class GuestDemand:
    """One tiered guest as the arbiter sees it.

    :param name: the guest's identifier (instance UUID in the agent).
    :param policy: ``static`` or ``on_demand``.
    :param floor_mb: guaranteed DRAM.
    :param ceiling_mb: most DRAM an on_demand guest may get (a static
        guest's ceiling is its floor).
    :param hot_mb: DRAM the guest's hot set wants now.
    """

    name: str
    policy: str
    floor_mb: int
    ceiling_mb: int = None
    hot_mb: int = 0

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError('guest %s: policy must be one of %s, got %r'
                             % (self.name, ', '.join(POLICIES), self.policy))
        if self.floor_mb < 0:
            raise ValueError('guest %s: floor_mb must be >= 0, got %d'
                             % (self.name, self.floor_mb))
        if self.hot_mb < 0:
            raise ValueError('guest %s: hot_mb must be >= 0, got %d'
                             % (self.name, self.hot_mb))
        if self.policy == STATIC:
            object.__setattr__(self, 'ceiling_mb', self.floor_mb)
        elif self.ceiling_mb is None or self.ceiling_mb < self.floor_mb:
            raise ValueError('guest %s: an on_demand guest needs ceiling_mb '
                             '>= floor_mb (%d), got %r'
                             % (self.name, self.floor_mb, self.ceiling_mb))

    @property
    def wanted_extra_mb(self):
        """DRAM above the floor the guest could use now."""
        if self.policy == STATIC:
            return 0
        return max(0, min(self.hot_mb, self.ceiling_mb) - self.floor_mb)


def allocate(capacity_mb, reserve_mb, guests, reserved_mb=0):
    """Return ``{name: budget_mb}`` for ``guests``.

    :param capacity_mb: the fast tier's size.
    :param reserve_mb: DRAM kept free for the host.
    :param guests: iterable of ``GuestDemand``; names must be unique.
    :param reserved_mb: DRAM promised to guests about to start.
    :raises InsufficientDram: when the floors do not fit.
    """
    guests = list(guests)
    names = [guest.name for guest in guests]
    if len(set(names)) != len(names):
        raise ValueError('guest names must be unique, got %s' % names)
    if min(capacity_mb, reserve_mb, reserved_mb) < 0:
        raise ValueError('capacity_mb, reserve_mb and reserved_mb must be '
                         '>= 0, got %d, %d, %d'
                         % (capacity_mb, reserve_mb, reserved_mb))
    floors = sum(guest.floor_mb for guest in guests)
    spare = capacity_mb - reserve_mb - reserved_mb - floors
    if spare < 0:
        raise InsufficientDram(capacity_mb, reserve_mb, reserved_mb, floors)

    budgets = {guest.name: guest.floor_mb for guest in guests}
    wanted = {guest.name: guest.wanted_extra_mb for guest in guests
              if guest.wanted_extra_mb > 0}
    total_wanted = sum(wanted.values())
    if total_wanted <= spare:
        for name, extra in wanted.items():
            budgets[name] += extra
        return budgets

    # Not enough for every demand: shares proportional to demand, rounded
    # down, and the MiB lost to rounding go to the largest remainders
    # (ties by name, so the result does not depend on input order).
    shares = {name: spare * extra // total_wanted
              for name, extra in wanted.items()}
    leftover = spare - sum(shares.values())
    by_remainder = sorted(
        wanted, key=lambda name: (-(spare * wanted[name] % total_wanted),
                                  name))
    for name in by_remainder[:leftover]:
        shares[name] += 1
    for name, share in shares.items():
        budgets[name] += share
    LOG.debug('DRAM contended: %d MiB spare for %d MiB of on-demand '
              'wishes; shares %s', spare, total_wanted, shares)
    return budgets

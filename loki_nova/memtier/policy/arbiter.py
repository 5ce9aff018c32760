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
* Reservations (DRAM promised to guests about to start) come after the
  floors of the guests that run: they take only what the host reserve and
  the floors leave (``reservation_room``), so a reservation whose guest
  never arrives can pull on-demand guests down to their floors, never
  below.
* If the floors alone do not fit, nothing is handed out:
  ``InsufficientDram`` says by how much they overflow.  A floor is never
  silently cut.

All quantities are integer MiB.
"""

import dataclasses
import fractions
import heapq
import logging

LOG = logging.getLogger(__name__)

STATIC = 'static'
ON_DEMAND = 'on_demand'
POLICIES = (STATIC, ON_DEMAND)


class InsufficientDram(Exception):
    """The guaranteed floors plus the host reserve exceed the fast tier
    (pending reservations never count here: they yield to floors)."""

    def __init__(self, capacity_mb, reserve_mb, floors_mb):
        self.capacity_mb = capacity_mb
        self.reserve_mb = reserve_mb
        self.floors_mb = floors_mb
        needed = reserve_mb + floors_mb
        super().__init__(
            'DRAM floors of %d MiB plus host reserve %d MiB need %d MiB, '
            'but the fast tier has %d MiB (%d MiB short)'
            % (floors_mb, reserve_mb, needed, capacity_mb,
               needed - capacity_mb))


def reservation_room(capacity_mb, reserve_mb, floors_mb):
    """MiB of the fast tier pending reservations may hold: what the host
    reserve and the floors of running guests leave (never below 0)."""
    return max(0, capacity_mb - reserve_mb - floors_mb)


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
    :param reserved_mb: DRAM promised to guests about to start; it is
        held only up to ``reservation_room`` (floors come first).
    :raises InsufficientDram: when the floors and the reserve do not fit.
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
    if floors + reserve_mb > capacity_mb:
        raise InsufficientDram(capacity_mb, reserve_mb, floors)
    room = reservation_room(capacity_mb, reserve_mb, floors)
    if reserved_mb > room:
        LOG.debug('pending reservations of %d MiB are held only up to the '
                  '%d MiB the floors of running guests leave', reserved_mb,
                  room)
    spare = room - min(reserved_mb, room)

    budgets = {guest.name: guest.floor_mb for guest in guests}
    wanted = {guest.name: guest.wanted_extra_mb for guest in guests
              if guest.wanted_extra_mb > 0}
    total_wanted = sum(wanted.values())
    if total_wanted <= spare:
        for name, extra in wanted.items():
            budgets[name] += extra
        return budgets

    shares = _shares(spare, wanted)
    for name, share in shares.items():
        budgets[name] += share
    LOG.debug('DRAM contended: %d MiB spare for %d MiB of on-demand '
              'wishes; shares %s', spare, total_wanted, shares)
    return budgets


def _shares(spare, wanted):
    """Split ``spare`` MiB among ``wanted`` ({name: MiB}, more than
    ``spare`` in all) in proportion to the wishes, in whole MiB.

    Each MiB goes to the wish with the highest ``wanted / (MiB it already
    has + 1)`` (the D'Hondt rule; on a tie, to the name that sorts first).
    Every guest gets at least its exact share rounded down, a large wish
    perhaps a few MiB more than its exact share, and -- unlike handing the
    MiB lost to rounding to the largest remainders -- less spare never
    gives anyone more: the shares of ``spare`` are the first ``spare`` MiB
    of one fixed order.  That keeps budgets falling as pending
    reservations grow.
    """
    total = sum(wanted.values())
    # The MiB whose quotient wanted/k is at least total/spare -- k up to
    # the exact share rounded down -- are the first of the order, and
    # there are at most spare of them: start there; fewer MiB than there
    # are wishes are left to hand out.
    shares = {name: spare * extra // total for name, extra in wanted.items()}

    def next_mib(name):
        return -fractions.Fraction(wanted[name], shares[name] + 1), name

    heap = [next_mib(name) for name in wanted if shares[name] < wanted[name]]
    heapq.heapify(heap)
    for _ in range(spare - sum(shares.values())):
        _, name = heapq.heappop(heap)
        shares[name] += 1
        if shares[name] < wanted[name]:
            heapq.heappush(heap, next_mib(name))
    return shares

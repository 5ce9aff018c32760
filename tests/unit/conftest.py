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

"""Fixtures shared by the agent's unit tests."""

import pytest

from tests import workloads


@pytest.fixture
def two_guests(tmp_path):
    """Two 32 MiB workload processes registered like guests in
    ``tmp_path/guests``: ``static1`` (floor 8 MiB) and ``od1``
    (on_demand, floor 4 MiB, ceiling 24 MiB), 4 MiB hot each."""
    reg = str(tmp_path / 'guests')
    with workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                            '--register-dir', reg, '--name', 'static1',
                            '--floor-mb', 8) as a, \
            workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                               '--register-dir', reg, '--name', 'od1',
                               '--policy', 'on_demand', '--floor-mb', 4,
                               '--ceiling-mb', 24) as b:
        yield a, b

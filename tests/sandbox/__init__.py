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

"""Tests that run inside the two-tier sandbox guest (tools/sandbox.py)."""

import os

import pytest

#: ``pytestmark`` of test modules that change kernel state (DAMON,
#: cgroups, page placement): marked ``sandbox``, and skipped anywhere but
#: inside the guest even if the batching plugin is not loaded -- on this
#: machine that state belongs to the machine.
INSIDE_ONLY = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.environ.get('LOKI_SANDBOX') != '1',
                       reason='runs only inside the sandbox guest'),
]

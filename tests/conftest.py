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

import os

from loki_nova.memtier import kernfs

# Tests marked ``sandbox`` run batched in the sandbox guest; see
# tests/sandbox_plugin.py.
pytest_plugins = ['tests.sandbox_plugin']

# The machine's DAMON is the machine's: outside the sandbox guest nothing
# this suite runs -- in this process or in any it starts -- may write to
# /sys/kernel/mm/damon (kernfs refuses it).  Inside the guest the kernel
# is the suite's own.
if os.environ.get('LOKI_SANDBOX') == '1':
    os.environ.pop(kernfs.NO_MACHINE_DAMON_ENV, None)
else:
    os.environ[kernfs.NO_MACHINE_DAMON_ENV] = '1'

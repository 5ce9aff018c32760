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

"""LokiDriver in Nova's own in-process services (API, conductor, scheduler,
compute with fake libvirt, real Placement).

Nova decides its concurrency mode once per process, before anything imports
eventlet, from ``OS_NOVA_DISABLE_EVENTLET_PATCHING`` (``true``: native
threads, Nova's default; ``false``: eventlet).  These tests therefore run in
their own pytest process per mode (tools/run-tests.sh runs both); without
the variable they run in threading mode.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', 'true')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

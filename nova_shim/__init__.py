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

"""``nova.virt.loki``: the name Nova loads for ``compute_driver = loki.X``.

Nova imports ``nova.virt.<compute_driver>``, so an out-of-tree driver needs
a module under ``nova.virt``.  loki-nova's wheel installs this one file as
the package ``nova.virt.loki`` (and nothing else of Nova's); the driver
itself lives in ``loki_nova.virt.driver``.
"""

from loki_nova.virt.driver import LokiDriver

__all__ = ['LokiDriver']

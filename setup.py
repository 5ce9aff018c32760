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

# Metadata lives in setup.cfg (pbr); this file only adds what pbr cannot
# describe: the Cython extension, and the one-file shim package
# ``nova.virt.loki`` (from nova_shim/) that lets nova.conf say
# ``compute_driver = loki.LokiDriver``.  Only that package is shipped under
# ``nova``; Nova's own ``__init__`` files are never touched.
import setuptools
from Cython.Build import cythonize

SHIM_PACKAGE = 'nova.virt.loki'
SHIM_DIR = 'nova_shim'


class LokiDistribution(setuptools.Distribution):
    """Adds the shim package after pbr has filled in the package list."""

    def finalize_options(self):
        super().finalize_options()
        packages = list(self.packages or [])
        if SHIM_PACKAGE not in packages:
            packages.append(SHIM_PACKAGE)
        self.packages = packages
        self.package_dir = dict(self.package_dir or {})
        self.package_dir[SHIM_PACKAGE] = SHIM_DIR


extensions = [
    setuptools.Extension(
        'loki_nova.memtier.classifier._core',
        ['loki_nova/memtier/classifier/_core.pyx'],
        include_dirs=['loki_nova/memtier/classifier'],
        depends=['loki_nova/memtier/classifier/_kernel.h'],
        extra_compile_args=['-O3'],
    ),
]

setuptools.setup(
    setup_requires=['pbr>=6.1.1'],
    pbr=True,
    distclass=LokiDistribution,
    ext_modules=cythonize(extensions,
                          compiler_directives={'language_level': 3}),
)

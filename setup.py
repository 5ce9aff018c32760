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

# Metadata lives in setup.cfg (pbr); this file only adds the Cython
# extension, which pbr cannot describe.
import setuptools
from Cython.Build import cythonize

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
    ext_modules=cythonize(extensions,
                          compiler_directives={'language_level': 3}),
)

# Copyright 2026 The liteseg_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""ament_python package definition for liteseg_ros."""

from glob import glob
import os

from setuptools import find_packages
from setuptools import setup

package_name = 'liteseg_ros'
here = os.path.dirname(os.path.abspath(__file__))


def _share(subdir, pattern):
    """Return a data_files entry for files matching pattern, or None if there are none."""
    files = sorted(os.path.relpath(p, here) for p in glob(os.path.join(here, subdir, pattern)))
    if not files:
        return None
    return (os.path.join('share', package_name, subdir), files)


data_files = [
    ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
    ('share/' + package_name, ['package.xml']),
    _share('launch', '*.launch.py'),
    _share('config', '*.yaml'),
    _share('config', '*.xml'),
]

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[entry for entry in data_files if entry is not None],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='The liteseg_ros Authors',
    maintainer_email='liteseg-ros@example.com',
    description='PP-LiteSeg semantic segmentation for ROS 2: node, training and export tools.',
    license='Apache-2.0',
    python_requires='>=3.10',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'liteseg = liteseg_ros.cli:main',
            'segment_node = liteseg_ros.ros.segment_node:main',
        ],
    },
)

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

"""
Fast DDS settings for large frames: which Fast DDS runs, and the shipped profile.

On Fast DDS 2 (ROS 2 Jazzy) the LARGE_DATA builtin transports lose or stall large best-effort
frames (a burst of 300 malformed 1 MB messages stopped delivery for ~15 s), and a process
using them can hang in its TCP transport at exit. ``config/fastdds_large_frames.xml`` (a
64 MiB shared-memory segment plus UDPv4) delivers them; Fast DDS reads it once per process
from ``profiles_env()``: ``FASTDDS_DEFAULT_PROFILES_FILE`` on Fast DDS 3 (Kilted), which
warns that the older ``FASTRTPS_DEFAULT_PROFILES_FILE`` is deprecated, and the older name on
Fast DDS 2, which reads only that one. ``segment.launch.py``
(``large_frames``) and the node benchmarks use these functions; see
docs/troubleshooting.md, "Frames are lost".
"""

from importlib import metadata
import os
from pathlib import Path

PROFILE_NAME = 'fastdds_large_frames.xml'
#: Every name a Fast DDS release reads the profile file from, newest first.
PROFILES_ENVS = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
PACKAGE = 'liteseg_ros'


def fast_dds_major():
    """Return the major version of the installed Fast DDS (2: Jazzy, 3: Kilted), or None."""
    for dist in ('ros_fastdds', 'ros_fastrtps'):
        try:
            return int(metadata.version(dist).split('.')[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    distro = os.environ.get('ROS_DISTRO', '')
    return 2 if distro in ('humble', 'iron', 'jazzy') else 3 if distro else None


def profiles_env():
    """Return the variable this Fast DDS reads its XML profiles file from."""
    return PROFILES_ENVS[0] if (fast_dds_major() or 2) >= 3 else PROFILES_ENVS[1]


def large_frames_by_default():
    """Tell whether the profile is on unless asked otherwise: with Fast DDS 2 (Jazzy)."""
    return fast_dds_major() == 2


def large_frames_profile():
    """
    Return the path of the shipped ``fastdds_large_frames.xml``.

    The installed copy (``share/liteseg_ros/config``) when ament_index finds the package, else
    the one in the source tree this module belongs to.
    """
    try:
        from ament_index_python.packages import (get_package_share_directory,
                                                 PackageNotFoundError)
    except ImportError:
        share = None
    else:
        try:
            share = Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            share = None
    candidates = ([share / 'config' / PROFILE_NAME] if share else []) + [
        Path(__file__).resolve().parents[2] / 'config' / PROFILE_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f'{PROFILE_NAME} is neither installed (share/{PACKAGE}/config) '
                            f'nor in the source tree ({candidates[-1]})')

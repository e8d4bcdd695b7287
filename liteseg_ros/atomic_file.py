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
Atomic file writes: what a user saved is either the old file or the new one, never half.

And an exclusive lock file, for processes that must not write the same file at once.
"""

import contextlib
import os
from pathlib import Path
import tempfile


@contextlib.contextmanager
def atomic_write(path):
    """
    Yield a binary file beside ``path``; on success fsync it and rename it over ``path``.

    On any error (or a kill mid-write) ``path`` keeps its previous content and the temporary
    file is removed (or, after a kill, left as a hidden ``.name.*.tmp``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path, data):
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(data)


@contextlib.contextmanager
def file_lock(path):
    """Hold an exclusive lock on the file ``path`` (created) while the block runs."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic writes still keep what is written consistent
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

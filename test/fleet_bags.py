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


"""Small generated drives for the fleet tests and benchmark: rgb8 frames with mono8 labels."""

from pathlib import Path

from liteseg_ros.bags.rosbag import BagWriter, header, image_message
from liteseg_ros.sample_images import make_street_scene
import numpy as np

IMAGE_TOPIC = '/cam/image_raw'
LABEL_TOPIC = '/cam/labels'
NUM_CLASSES = 19


def perturb(mask, rng):
    """Make a label from a mask: a block shifted to the next class, 5% of pixels ignored."""
    label = mask.copy()
    h, w = label.shape
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    block = label[y0:y0 + h // 3, x0:x0 + w // 3]
    block[...] = (block.astype(np.int64) + 1) % NUM_CLASSES
    label[rng.random(label.shape) < 0.05] = 255
    return label


def drive_frames(segmenter, seed, frames=4, size=(64, 128)):
    """Return [(stamp ns, rgb, model mask, label)] of one generated drive."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        rgb = make_street_scene(*size, seed=1000 * seed + i)
        mask = segmenter.segment(rgb).mask if segmenter is not None else None
        label = perturb(mask, rng) if mask is not None else None
        out.append((10**9 * (100 + seed) + i * 10**8, rgb, mask, label))
    return out


def write_drive(path, frames, storage='mcap'):
    """Write frames (and their labels, when given) as a bag at ``path``; return ``path``."""
    with BagWriter(path, storage) as writer:
        for stamp, rgb, _, label in frames:
            msg_header = header(stamp // 10**9, stamp % 10**9, 'cam')
            writer.write(IMAGE_TOPIC, stamp, image_message(rgb, 'rgb8', msg_header))
            if label is not None:
                writer.write(LABEL_TOPIC, stamp + 1000, image_message(label, 'mono8',
                                                                      msg_header))
    return Path(path)


def truncate(bag, keep=0.5):
    """Cut the storage file of ``bag`` to ``keep`` of its size (a copy that broke off)."""
    storage = next(p for p in Path(bag).iterdir() if p.suffix in ('.mcap', '.db3'))
    data = storage.read_bytes()
    storage.write_bytes(data[:int(len(data) * keep)])
    return bag


class CallHook:
    """A Segmenter that runs ``before(n)`` ahead of its n-th call: faults at a known frame."""

    def __init__(self, segmenter, before):
        self._segmenter, self._before, self.calls = segmenter, before, 0
        self.class_names, self.palette = segmenter.class_names, segmenter.palette
        self.backend, self.upsample = segmenter.backend, segmenter.upsample

    @property
    def timings(self):
        return self._segmenter.timings

    def __call__(self, frames):
        self.calls += 1
        self._before(self.calls)
        return self._segmenter(frames)

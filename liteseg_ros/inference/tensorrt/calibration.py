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
INT8 calibration: the image set, its digest, the cached calibration table, the calibrator.

INT8 uses the (TensorRT 10.1-deprecated, still supported) implicit quantization with
``IInt8EntropyCalibrator2``, fed uint8 NHWC frames resized as the Segmenter resizes them.
The table is kept in ``<engine>.calib`` with a tag naming the model and images it belongs to.
"""

import hashlib
import json
import logging
from pathlib import Path
import time

from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.dataset_files import image_files
from liteseg_ros.inference.tensorrt.sidecar import RECIPE_VERSION
import numpy as np

LOG = logging.getLogger(__name__)

DEFAULT_CALIBRATION_IMAGES = 500
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')
CALIBRATION_HEADER = b'# liteseg-calibration '


def calibration_files(folder, limit=DEFAULT_CALIBRATION_IMAGES):
    """Return up to ``limit`` image files under ``folder``, spread evenly over its sorted list."""
    files = image_files(folder, IMAGE_SUFFIXES, '; int8 calibration needs a folder of frames '
                        'like the ones the model will see')
    if limit and len(files) > limit:
        files = [files[i * len(files) // limit] for i in range(limit)]
    return files


def calibration_digest(files, folder):
    """Return a sha256 identifying the calibration set (relative names and sizes)."""
    entries = [[str(Path(f).relative_to(folder)), Path(f).stat().st_size] for f in files]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def load_calibration_image(path, height, width):
    """Read an image as RGB uint8 resized to the model input (as the Segmenter resizes)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: not a readable image (int8 calibration)')
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


def calibration_tag(onnx_sha256, digest, shape):
    """Return the tag naming the model, images and shape a calibration table belongs to."""
    return json.dumps({'onnx_sha256': onnx_sha256, 'images': digest, 'shape': list(shape),
                       'recipe': RECIPE_VERSION}, sort_keys=True).encode()


def read_calibration_cache(path, tag):
    """Return the TensorRT calibration table in ``path`` if it was made for ``tag``, else None."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    first, _, payload = data.partition(b'\n')
    if first != CALIBRATION_HEADER + tag or not payload:
        LOG.info('%s was made for another model or image set; calibrating again', path)
        return None
    return payload


def write_calibration_cache(path, tag, payload):
    """Store a TensorRT calibration table with the tag of the model and images it belongs to."""
    write_bytes_atomic(path, CALIBRATION_HEADER + tag + b'\n' + bytes(payload))


def make_calibrator(trt, cuda, files, shape, cache_path, tag):
    """Return an IInt8EntropyCalibrator2 feeding uint8 NHWC frames from ``files``."""
    batch, height, width, _ = shape
    nbytes = int(np.prod(shape))

    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Entropy calibration over the image files, one engine-sized batch at a time."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.buffer = cuda.buffer(nbytes)
            self.position = 0
            self.next_log = 0
            self.started = time.monotonic()

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self.position >= len(files):
                LOG.info('int8 calibration: %d images in %.0f s', len(files),
                         time.monotonic() - self.started)
                return None
            frames = self.buffer.host[:nbytes].reshape(shape)
            for i in range(batch):  # a short last batch repeats its first images
                index = self.position + i
                path = files[index if index < len(files) else self.position]
                frames[i] = load_calibration_image(path, height, width)
            self.position += batch
            cuda.upload(self.buffer, nbytes)
            cuda.synchronize()
            if self.position >= self.next_log:
                self.next_log = self.position + max(1, len(files) // 10)
                LOG.info('int8 calibration: %d / %d images', min(self.position, len(files)),
                         len(files))
            return [self.buffer.device_ptr]

        def read_calibration_cache(self):
            payload = read_calibration_cache(cache_path, tag)
            if payload is not None:
                LOG.info('int8 calibration: using %s', cache_path)
            return payload

        def write_calibration_cache(self, cache):
            write_calibration_cache(cache_path, tag, cache)
            LOG.info('int8 calibration: wrote %s', cache_path)

    return Calibrator()

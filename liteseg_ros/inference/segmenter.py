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
Segmenter: camera frames in, class-id masks at each frame's own resolution out.

preprocess (resize to the model input) -> backend (normalise, network, argmax) -> postprocess
(back to each frame's size). Upsampling is a stated trade: ``nearest`` takes the argmax at the
model resolution and enlarges the class ids (cheap); ``bilinear`` enlarges the logits and then
takes the argmax, as PaddleSeg's evaluation does (exact, several times slower on a CPU).
"""

from dataclasses import dataclass
import time

import cv2
from liteseg_ros.inference.backends import load_backend
from liteseg_ros.inference.visualize import colorize
import numpy as np

UPSAMPLE_MODES = ('nearest', 'bilinear')


@dataclass
class Segmentation:
    """One frame's result: class ids (uint8, HxW) and optional confidence (float32, HxW)."""

    mask: np.ndarray
    confidence: np.ndarray = None


def check_frame(frame, index=0):
    """Raise ValueError naming the frame unless it is a non-empty HxWx3 uint8 array."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f'frame {index}: expected a numpy array, got {type(frame).__name__}')
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f'frame {index}: expected an HxWx3 uint8 RGB image, got '
                         f'{frame.dtype} array of shape {frame.shape}')


class Segmenter:
    """
    Segment batches of RGB frames of any sizes with one backend.

    ``timings`` holds the last call's stage times in milliseconds (preprocess, infer,
    postprocess, total).
    """

    def __init__(self, backend, upsample='nearest', confidence=False):
        """Wrap a loaded backend."""
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}')
        self.backend = backend
        self.upsample = upsample
        self.confidence = confidence
        self.config = backend.config
        self.class_names = list(self.config['class_names'])
        self.palette = np.asarray(self.config['palette'], np.uint8)
        self.timings = {}

    @classmethod
    def from_file(cls, path, backend='auto', upsample='nearest', confidence=False,
                  device='auto', threads=0, **options):
        """
        Load a checkpoint, ONNX model or engine with ``load_backend`` and wrap it.

        ``path`` may be a zoo name (``liteseg weights list``): its cached file is loaded,
        downloaded and converted first when missing.
        """
        from liteseg_ros.inference.weights import resolve_model

        path = resolve_model(path, backend)
        return cls(load_backend(path, backend, device, threads, **options), upsample,
                   confidence)

    def preprocess(self, frames):
        """Resize frames into one uint8 NHWC batch at the model's input size."""
        height, width = self.backend.input_size
        batch = np.empty((len(frames), height, width, 3), np.uint8)
        for i, frame in enumerate(frames):
            if frame.shape[:2] == (height, width):
                batch[i] = frame
            else:
                cv2.resize(frame, (width, height), dst=batch[i], interpolation=cv2.INTER_LINEAR)
        return batch

    def postprocess(self, outputs, frames):
        """Bring each frame's result back to the frame's own size."""
        results = []
        confidences = outputs.get('confidence')
        for i, frame in enumerate(frames):
            size = (frame.shape[1], frame.shape[0])
            if 'labels' in outputs:
                mask = _resize(outputs['labels'][i], size, cv2.INTER_NEAREST_EXACT)
            else:
                logits = np.ascontiguousarray(outputs['logits'][i].transpose(1, 2, 0))
                mask = _resize(logits, size, cv2.INTER_LINEAR).argmax(-1).astype(np.uint8)
            confidence = (None if confidences is None
                          else _resize(confidences[i], size, cv2.INTER_LINEAR))
            results.append(Segmentation(mask, confidence))
        return results

    def __call__(self, frames):
        """Segment a list (or NHWC array) of HxWx3 uint8 RGB frames; return Segmentations."""
        frames = list(frames) if not isinstance(frames, np.ndarray) or frames.ndim == 4 else None
        if frames is None:
            raise ValueError('expected a list of frames or an NHWC batch; for one frame use '
                             'segment()')
        for i, frame in enumerate(frames):
            check_frame(frame, i)
        if not frames:
            return []
        start = time.perf_counter()
        batch = self.preprocess(frames)
        preprocessed = time.perf_counter()
        outputs = self.backend.run(batch, 'labels' if self.upsample == 'nearest' else 'logits',
                                   self.confidence)
        inferred = time.perf_counter()
        results = self.postprocess(outputs, frames)
        done = time.perf_counter()
        self.timings = {'preprocess': (preprocessed - start) * 1e3,
                        'infer': (inferred - preprocessed) * 1e3,
                        'postprocess': (done - inferred) * 1e3, 'total': (done - start) * 1e3}
        return results

    def segment(self, frame):
        """Segment one HxWx3 uint8 RGB frame."""
        return self([frame])[0]

    def colorize(self, mask):
        """Return the palette colours (HxWx3 uint8 RGB) of a class-id mask."""
        return colorize(mask, self.palette)


def _resize(image, size, interpolation):
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=interpolation)

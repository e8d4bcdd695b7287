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

"""The small protocol every backend implements, and the checks they share."""

from liteseg_ros.inference.model_files import ModelFileError
import numpy as np


class Backend:
    """
    A loaded model that turns a batch of resized frames into class ids (or logits).

    Attributes: ``name``, ``config`` (the model's liteseg config), ``input_size`` (H, W),
    ``batch_size`` (fixed batch, or None for any), ``device``.
    ``run(images, output='labels'|'logits', confidence=False)`` takes uint8 NHWC RGB frames at
    ``input_size`` and returns {'labels': uint8 NHW} or {'logits': float32 NCHW}, plus
    {'confidence': float32 NHW} when asked. Normalisation happens inside the backend, where it
    is cheapest (in-graph, on the GPU).
    """

    name = 'base'
    config = None
    input_size = None
    batch_size = None
    device = 'cpu'

    def run(self, images, output='labels', confidence=False):
        """Segment a batch; see the class docstring."""
        raise NotImplementedError

    def describe(self):
        """Return a one-line description for logs and diagnostics."""
        height, width = self.input_size
        return (f"{self.name} on {self.device}: PP-LiteSeg-{self.config['variant'].upper()} "
                f"{self.config['num_classes']} classes at {width}x{height}")


def check_batch(backend, images):
    """Raise ValueError unless ``images`` is a uint8 NHWC batch at the backend's input size."""
    height, width = backend.input_size
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4
            or images.shape[1:] != (height, width, 3)):
        got = (f'{images.dtype} {tuple(images.shape)}' if isinstance(images, np.ndarray)
               else type(images).__name__)
        raise ValueError(f'{backend.name} backend expects uint8 batches of shape '
                         f'(N, {height}, {width}, 3), got {got}')


def check_classes(path, model_classes, config):
    """Refuse a model whose output channels disagree with its config's class count."""
    if model_classes and model_classes != config['num_classes']:
        names = config['class_names'][:3]
        raise ModelFileError(f'{path}: the model outputs {model_classes} classes but its config '
                             f"lists {config['num_classes']} ({names}...)")

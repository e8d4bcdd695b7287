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

"""PyTorch backend: the reference path, and the GPU path where TensorRT is absent."""

import logging

from liteseg_ros.inference.backends.base import Backend, check_batch

LOG = logging.getLogger(__name__)


class TorchBackend(Backend):
    """
    Runs a liteseg checkpoint with PyTorch on CPU or CUDA.

    ``fp16`` (CUDA only) runs the network in half precision with fp32 softmax/argmax;
    ``channels_last`` uses NHWC memory, faster for convolutions on recent GPUs; ``compiled``
    wraps the network in ``torch.compile``.
    """

    name = 'torch'

    def __init__(self, path, device='cpu', fp16=False, channels_last=False, compiled=False,
                 input_size=None, threads=None):
        """Load the checkpoint at ``path`` onto ``device``."""
        import torch

        from liteseg_ros.model import load_model

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        self.path = str(path)
        if str(device).startswith('cuda') and not torch.cuda.is_available():
            raise RuntimeError(f'torch backend: device {device!r} asked for but CUDA is not '
                               'available; use device cpu')
        if fp16 and not str(device).startswith('cuda'):
            raise ValueError('torch backend: fp16 needs a CUDA device')
        self.device = str(device)
        model = load_model(path)
        self.config = model.config
        self.input_size = tuple(input_size or self.config['input_size'])
        self.dtype = torch.float16 if fp16 else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(self.device, dtype=self.dtype, memory_format=self.memory_format)
        self.model = torch.compile(model) if compiled else model
        mean = torch.tensor(self.config['mean'], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config['std'], device=self.device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    def normalise(self, images):
        """Upload uint8 NHWC frames and normalise them into the network's dtype and layout."""
        torch = self._torch
        x = torch.from_numpy(images).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float() * self._scale + self._shift
        return x.to(dtype=self.dtype, memory_format=self.memory_format)

    def forward(self, x):
        """Return float32 logits for a normalised batch."""
        with self._torch.inference_mode():
            return self.model(x).float()

    def run(self, images, output='labels', confidence=False):
        """Segment uint8 NHWC frames at the model size."""
        check_batch(self, images)
        torch = self._torch
        with torch.inference_mode():
            logits = self.forward(self.normalise(images))
            result = {}
            if output == 'labels':
                result['labels'] = logits.argmax(1).to(torch.uint8).cpu().numpy()
            else:
                result['logits'] = logits.cpu().numpy()
            if confidence:
                result['confidence'] = torch.softmax(logits, 1).amax(1).cpu().numpy()
        return result

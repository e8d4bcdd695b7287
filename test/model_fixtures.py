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

"""Models for tests: seeded weights whose logits are O(10), saved as checkpoints and ONNX."""

from liteseg_ros.model import build_model, save_checkpoint
import numpy as np
import torch


def seed_weights(model, seed=0):
    """
    Fill weights and BN statistics from a seeded RNG (as the PaddleSeg parity test does).

    Default initialisation gives near-constant logits; these give O(10) logits, so argmax
    agreement between backends means something.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2.0 / fan_in) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1, generator=generator)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


def make_checkpoint(path, variant='t', num_classes=19, dataset='cityscapes', input_size=None,
                    seed=0):
    """Save a seeded model as a liteseg checkpoint at ``path`` and return the path."""
    model = build_model(variant, num_classes, dataset=dataset, input_size=input_size)
    save_checkpoint(path, seed_weights(model, seed))
    return path


def street_image(height, width, seed=0):
    """Return a smooth, real-looking HxWx3 uint8 RGB frame."""
    try:
        from liteseg_ros.sample_images import make_street_scene
    except ImportError:
        make_street_scene = None
    if make_street_scene is not None:
        return make_street_scene(height, width, seed=seed)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phases = rng.uniform(0, 6.28, size=(3, 2))
    channels = [np.sin(6 * x + a) + np.cos(9 * y + b) for a, b in phases]
    return ((np.stack(channels, -1) + 2) * 63.75).astype(np.uint8)

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


"""The model benchmark scripts time when given none (speed does not need trained weights)."""

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]


def default_model(scratch, input_size=None, dynamic_batch=False):
    """
    Export a PP-LiteSeg-T with random (seeded) weights to ONNX in ``scratch``; return its path.

    ``input_size`` [height, width]: None for the default (512x1024). Speed does not depend on
    the weights.
    """
    import torch

    from liteseg_ros.model import build_model, save_checkpoint
    sys.path.insert(0, str(ROOT))
    from training.export import export_onnx

    torch.manual_seed(0)
    checkpoint = Path(scratch) / 't.pt'
    save_checkpoint(checkpoint, build_model('t', 19, dataset='cityscapes',
                                            input_size=input_size))
    export_onnx(checkpoint, Path(scratch) / 't.onnx', dynamic_batch=dynamic_batch)
    return Path(scratch) / 't.onnx'

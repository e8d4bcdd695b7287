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
Training-side metrics: the shared confusion matrix, fed with tensors, summed across processes.

The definitions (PaddleSeg's IoU, mIoU and pixel accuracy) live in
``liteseg_ros.inference.metrics``, shared with bag evaluation.
"""

from liteseg_ros.inference import metrics
import numpy as np
import torch


class ConfusionMatrix(metrics.ConfusionMatrix):
    """Confusion matrix that also takes torch tensors and reduces over torch.distributed."""

    def update(self, pred, label):
        """Add a prediction and its label (numpy arrays or tensors on any device)."""
        if torch.is_tensor(pred):
            pred = pred.detach().cpu().numpy()
        if torch.is_tensor(label):
            label = label.detach().cpu().numpy()
        return super().update(np.asarray(pred), np.asarray(label))

    def reduce_distributed(self):
        """Sum the matrices of all processes (all_reduce) when torch.distributed is running."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        device = torch.device('cpu')
        if dist.get_backend() == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        matrix = torch.from_numpy(self.matrix).to(device)
        dist.all_reduce(matrix, op=dist.ReduceOp.SUM)
        self.matrix = matrix.cpu().numpy()
        return self

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
Segmentation metrics from a dataset-accumulated confusion matrix, as PaddleSeg computes them.

Rows are ground truth, columns predictions; pixels whose label is ``ignore_index`` are not
counted. With PaddleSeg's ``calculate_area``: intersection = diagonal, label area = row sums,
prediction area = column sums (over non-ignored pixels), so

- IoU_c = intersection / (prediction + label - intersection), and 0 for a class with an empty
  union (PaddleSeg ``mean_iou``);
- mIoU = mean of IoU_c over ALL classes, empty ones counting 0 (PaddleSeg). Cityscapes'
  official script skips classes with an empty union instead: ``miou(skip_empty=True)``. Both
  agree whenever every class occurs in the ground truth or the predictions;
- pixel accuracy = sum(intersection) / sum(prediction area) (PaddleSeg ``class_measurement``).
"""

import numpy as np
import torch


class ConfusionMatrix:
    """Accumulate a (num_classes x num_classes) int64 confusion matrix with bincount."""

    def __init__(self, num_classes, ignore_index=255):
        """Start from zeros."""
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self):
        """Zero the counts."""
        self.matrix.zero_()

    def update(self, pred, label):
        """
        Add a prediction and its label (numpy arrays or tensors of equal shape, any device).

        :raises ValueError: shapes differ, or a prediction or label is outside
            0..num_classes-1 (labels may also be ``ignore_index``).
        """
        pred = torch.as_tensor(pred)
        label = torch.as_tensor(label, device=pred.device)
        if pred.shape != label.shape:
            raise ValueError(f'prediction shape {tuple(pred.shape)} differs from label shape '
                             f'{tuple(label.shape)}')
        pred = pred.reshape(-1).long()
        label = label.reshape(-1).long()
        keep = label != self.ignore_index
        pred, label = pred[keep], label[keep]
        c = self.num_classes
        for name, values in (('label', label), ('prediction', pred)):
            if values.numel() and (int(values.min()) < 0 or int(values.max()) >= c):
                raise ValueError(f'{name} values must be in 0..{c - 1} (or ignore_index '
                                 f'{self.ignore_index} for labels), found '
                                 f'{int(values.min())}..{int(values.max())}')
        counts = torch.bincount(label * c + pred, minlength=c * c).reshape(c, c)
        self.matrix += counts.cpu()
        return self

    def reduce_distributed(self):
        """Sum the matrices of all processes (all_reduce) when torch.distributed is running."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        device = torch.device('cpu')
        if dist.get_backend() == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        matrix = self.matrix.to(device)
        dist.all_reduce(matrix, op=dist.ReduceOp.SUM)
        self.matrix = matrix.cpu()
        return self

    def numpy(self):
        """Return the matrix as an int64 ndarray (rows ground truth, columns prediction)."""
        return self.matrix.numpy().copy()

    def areas(self):
        """Return (intersection, prediction area, label area) per class as int64 ndarrays."""
        m = self.matrix.numpy()
        return np.diag(m).copy(), m.sum(axis=0), m.sum(axis=1)

    def iou(self, empty=0.0):
        """Return per-class IoU (float64); classes with an empty union get ``empty``."""
        intersect, pred_area, label_area = self.areas()
        union = pred_area + label_area - intersect
        iou = np.full(self.num_classes, float(empty))
        nonzero = union > 0
        iou[nonzero] = intersect[nonzero] / union[nonzero]
        return iou

    def miou(self, skip_empty=False):
        """Return the mean IoU: PaddleSeg's (empty classes count 0) or Cityscapes' (skipped)."""
        if skip_empty:
            iou = self.iou(empty=np.nan)
            return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float('nan')
        return float(np.mean(self.iou()))

    def pixel_accuracy(self):
        """Return correctly predicted / counted pixels (0 when nothing was counted)."""
        total = int(self.matrix.sum())
        return float(torch.diag(self.matrix).sum()) / total if total else 0.0

    def plot(self, path, class_names=None, title=None):
        """Write a row-normalised (recall) confusion matrix PNG to ``path``."""
        # Agg canvas directly: no pyplot state, no display needed.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        m = self.matrix.numpy().astype(np.float64)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        c = self.num_classes
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        side = max(6.0, 0.45 * c + 2)
        fig = Figure(figsize=(side + 1.5, side))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        image = ax.imshow(norm, cmap='Blues', vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='fraction of ground truth')
        ax.set_xticks(range(c))
        ax.set_yticks(range(c))
        ax.set_xticklabels(names, rotation=90)
        ax.set_yticklabels(names)
        ax.set_xlabel('prediction')
        ax.set_ylabel('ground truth')
        if c <= 30:
            for i in range(c):
                for j in range(c):
                    if norm[i, j] >= 0.005:
                        ax.text(j, i, f'{100 * norm[i, j]:.0f}', ha='center', va='center',
                                fontsize=7, color='white' if norm[i, j] > 0.5 else 'black')
        ax.set_title(title or f'confusion matrix (row-normalised), mIoU {100 * self.miou():.2f}')
        fig.tight_layout()
        fig.savefig(str(path), dpi=100)
        return path

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

A drive or a small set often lacks whole classes (no train, bus or rider): PaddleSeg's mIoU
then sinks by the absent classes' zeros. Reports show both figures, each named by
:func:`miou_label` with what it averages, and absent classes as n/a (docs/bag_eval.md).
"""

import numpy as np


def miou_label(num_classes, present=None):
    """
    Name an mIoU by what it averages.

    ``present`` None: PaddleSeg's, over all ``num_classes``; else the Cityscapes script's, over
    the ``present`` classes that occur in labels or predictions.
    """
    if present is None:
        return f'mIoU (PaddleSeg, all {num_classes} classes)'
    return f'mIoU (present classes, {present} of {num_classes})'


class ConfusionMatrix:
    """
    Dataset-accumulated confusion matrix, rows ground truth and columns prediction.

    The same definitions as ``training.metrics.ConfusionMatrix`` (PaddleSeg): pixels labelled
    ``ignore_index`` are not counted; IoU_c = diag / (row + column - diag), 0 for a class with
    an empty union; mIoU = mean over all classes (``skip_empty=True``: over the classes with a
    non-empty union, as Cityscapes' script); pixel accuracy = trace / counted pixels. Pure
    numpy: bag-eval uses it without torch; ``training.metrics`` adds the distributed reduce.
    """

    def __init__(self, num_classes, ignore_index=255):
        """Start from zeros."""
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, label):
        """
        Add a prediction and its label (integer arrays of the same shape).

        :raises ValueError: shapes differ, or a value is outside 0..num_classes-1 (labels may
            also be ``ignore_index``).
        """
        if pred.shape != label.shape:
            raise ValueError(f'label shape {label.shape} differs from prediction shape '
                             f'{pred.shape}')
        label = label.reshape(-1)
        pred = pred.reshape(-1)
        keep = label != self.ignore_index
        label = label[keep].astype(np.int64)
        pred = pred[keep].astype(np.int64)
        c = self.num_classes
        for name, values in (('label', label), ('prediction', pred)):
            if values.size and (values.min() < 0 or values.max() >= c):
                bad = np.unique(values[(values < 0) | (values >= c)])[:10].tolist()
                raise ValueError(f'{name} values must be in 0..{c - 1} (or ignore_index '
                                 f'{self.ignore_index} for labels), found {bad}')
        self.matrix += np.bincount(label * c + pred, minlength=c * c).reshape(c, c)
        return self

    def reset(self):
        """Zero the counts."""
        self.matrix[:] = 0

    def numpy(self):
        """Return a copy of the int64 matrix (rows ground truth, columns prediction)."""
        return self.matrix.copy()

    def areas(self):
        """Return (intersection, prediction area, label area) per class as int64 arrays."""
        return np.diag(self.matrix).copy(), self.matrix.sum(axis=0), self.matrix.sum(axis=1)

    def __iadd__(self, other):
        """Add another matrix's counts."""
        self.matrix += other.matrix
        return self

    def iou(self, empty=0.0):
        """Return per-class IoU (float64); classes with an empty union get ``empty``."""
        m = self.matrix
        intersect = np.diag(m)
        union = m.sum(axis=0) + m.sum(axis=1) - intersect
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
        return float(np.trace(self.matrix)) / total if total else 0.0

    def present(self):
        """Return a bool per class: it occurs in the labels or the predictions."""
        return (self.matrix.sum(axis=0) + self.matrix.sum(axis=1)) > 0

    def miou_label(self, skip_empty=False):
        """Return the name of :meth:`miou` with what it averages (see :func:`miou_label`)."""
        return miou_label(self.num_classes, int(self.present().sum()) if skip_empty else None)

    def plot(self, path, class_names=None, title=None):
        """Write a row-normalised (recall) confusion matrix PNG to ``path``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        m = self.matrix.astype(np.float64)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        c = self.num_classes
        class_names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        side = max(6.0, 0.45 * c + 2)
        fig = Figure(figsize=(side + 1.5, side))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        image = ax.imshow(norm, cmap='Blues', vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='fraction of ground truth')
        ax.set_xticks(range(c))
        ax.set_yticks(range(c))
        ax.set_xticklabels(class_names, rotation=90)
        ax.set_yticklabels(class_names)
        ax.set_xlabel('prediction')
        ax.set_ylabel('ground truth')
        if c <= 30:
            for i in range(c):
                for j in range(c):
                    if norm[i, j] >= 0.005:
                        ax.text(j, i, f'{100 * norm[i, j]:.0f}', ha='center', va='center',
                                fontsize=7, color='white' if norm[i, j] > 0.5 else 'black')
        if title is None:
            title = (f'confusion matrix (row-normalised), {self.miou_label()} '
                     f'{100 * self.miou():.2f}')
            if not self.present().all() and self.present().any():
                title += (f'\n{self.miou_label(skip_empty=True)} '
                          f'{100 * self.miou(skip_empty=True):.2f}')
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(str(path), dpi=100)
        return path

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
Losses of PP-LiteSeg training: PaddleSeg 2.8's OHEM cross entropy, summed over the 3 heads.

``OHEMCrossEntropy`` follows ``paddleseg/models/losses/ohem_cross_entropy_loss.py`` line by
line:

- p = softmax probability of the ground-truth class; ignored pixels get p + 1 (never kept);
- only when ``0 < min_kept < number of valid pixels``: k-th lowest p with k = ``min_kept``,
  threshold = that p if it is above ``thresh`` else ``thresh``, and pixels with
  p < threshold (strictly) are kept; with ``min_kept == 0`` or ``min_kept >=`` the valid
  pixel count every valid pixel is kept (no hard-example selection at all);
- loss = mean(CE * kept) / (mean(kept) + 1e-5), means over all N*H*W pixels; a batch without
  valid pixels gives 0.

``min_kept`` counts pixels of the batch one process sees (PaddleSeg: per GPU). The selection
is not differentiated (PaddleSeg computes it from integer masks). The loss is computed in
float32 whatever the autocast dtype of the logits. PaddleSeg's OHEM loss has no class weights.
"""

import torch
from torch import nn
import torch.nn.functional as F

EPS = 1e-5


class OHEMCrossEntropy(nn.Module):
    """Online hard example mining cross entropy, equal to PaddleSeg's OhemCrossEntropyLoss."""

    def __init__(self, thresh=0.7, min_kept=10000, ignore_index=255):
        """Keep the probability threshold, the per-process minimum kept and the ignore id."""
        super().__init__()
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = int(ignore_index)

    def kept_mask(self, logits, label):
        """Return the bool (N*H*W,) mask of pixels the loss averages over."""
        n, c = logits.shape[:2]
        flat = label.reshape(-1)
        valid = flat != self.ignore_index
        num_valid = int(valid.sum())
        if not (self.min_kept < num_valid and num_valid > 0) or self.min_kept <= 0:
            return valid
        prob = F.softmax(logits, dim=1).transpose(0, 1).reshape(c, -1)
        gt = torch.where(valid, flat, torch.zeros_like(flat))
        prob = prob.gather(0, gt.unsqueeze(0)).squeeze(0) + (~valid).to(prob.dtype)
        kth = torch.kthvalue(prob, min(prob.numel(), self.min_kept)).values
        thresh = torch.tensor(self.thresh, dtype=prob.dtype, device=prob.device)
        threshold = torch.where(kth > thresh, kth, thresh)
        return valid & (prob < threshold)

    def forward(self, logits, label):
        """Return the scalar loss of NCHW ``logits`` against NHW (or N1HW) ``label``."""
        if label.dim() == logits.dim():
            label = label.squeeze(1)
        logits = logits.float()
        label = label.long()
        with torch.no_grad():
            kept = self.kept_mask(logits.detach(), label)
        target = torch.where(kept, label.reshape(-1),
                             torch.full_like(label.reshape(-1), self.ignore_index))
        loss = F.cross_entropy(logits, target.reshape(label.shape),
                               ignore_index=self.ignore_index, reduction='none')
        kept = kept.reshape(label.shape).to(loss.dtype)
        return (loss * kept).mean() / (kept.mean() + EPS)

    def extra_repr(self):
        """Show the settings."""
        return f'thresh={self.thresh}, min_kept={self.min_kept}, ignore_index={self.ignore_index}'


class MultiHeadLoss(nn.Module):
    """Sum of ``coef * loss(logits, label)`` over the model's train-mode head outputs."""

    def __init__(self, loss, coefs=(1.0, 1.0, 1.0)):
        """Use one ``loss`` module for every head, weighted by ``coefs``."""
        super().__init__()
        self.loss = loss
        self.coefs = [float(c) for c in coefs]
        self.last_terms = []

    def forward(self, logits_list, label):
        """Return the weighted sum; ``last_terms`` keeps the detached per-head losses."""
        if len(logits_list) != len(self.coefs):
            raise ValueError(f'{len(logits_list)} head outputs but {len(self.coefs)} loss '
                             'coefficients')
        terms = [coef * self.loss(logits, label)
                 for coef, logits in zip(self.coefs, logits_list)]
        self.last_terms = [t.detach() for t in terms]
        return sum(terms)


def build_loss(config):
    """Return the ``MultiHeadLoss`` of a config's ``loss`` section."""
    section = config['loss']
    if section.get('type', 'ohem_ce') != 'ohem_ce':
        raise ValueError(f"unknown loss.type {section['type']!r}: only 'ohem_ce' is supported")
    ohem = OHEMCrossEntropy(section.get('thresh', 0.7), section['min_kept'],
                            section.get('ignore_index', 255))
    return MultiHeadLoss(ohem, section.get('coefs', (1.0, 1.0, 1.0)))

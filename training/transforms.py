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
Data augmentation and normalisation equal to PaddleSeg 2.8's ``paddleseg.transforms``.

Every transform is ``transform(image, label, rng) -> (image, label)``: ``image`` is HxWx3
float32 RGB with values in [0, 255], ``label`` HxW uint8 (or None in evaluation),
``rng`` a ``numpy.random.Generator``. ``Compose`` takes the uint8 RGB image a dataset reads,
runs the transforms and returns float32 CHW.

To give the same numbers as PaddleSeg, the pipeline keeps PaddleSeg's data types:

- the image is float32 from the start (PaddleSeg: ``cv2.imread(...).astype('float32')``), so
  ``ResizeStepScaling`` interpolates in float32 and ``RandomPaddingCrop`` pads with exactly
  127.5;
- ``RandomDistort`` casts to uint8 with truncation (``astype('uint8')``: the 127.5 padding
  becomes 127, resized values are floored), applies PIL's ``ImageEnhance`` (Pillow is used
  here too, so the arithmetic is Pillow's own) and the HSV hue shift with uint8 wrap-around,
  and casts back to float32;
- ``Normalize`` is ``(x / 255 - mean) / std`` in PaddleSeg's operation order.

Random draws follow PaddleSeg's call sequence one for one (``rng.shuffle`` of the scale list,
``rng.integers`` for the crop offsets, ``rng.random`` for the flip, ``rng.shuffle`` of the five
distortion ops then ``rng.uniform`` per op), so a replayed sequence of PaddleSeg's draws gives
PaddleSeg's output (test/test_training_data.py does exactly that). Differences that remain:
OpenCV versions differ by up to 1 float32 ulp in INTER_LINEAR on float images, which can move a
value across an integer before the uint8 truncation; ``RandomPaddingCrop``'s
``category_max_ratio`` (1.0 in every PP-LiteSeg config, i.e. off) is not implemented.
"""

import cv2
import numpy as np
from PIL import Image, ImageEnhance

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
IM_PADDING_VALUE = 127.5


class Compose:
    """
    Run transforms on an image (and, in training, its label) and return float32 CHW.

    ``train=True``: the label goes through every transform (crops, flips, scaling).
    ``train=False``: transforms see ``label=None`` and the label is returned unchanged, as
    PaddleSeg's val mode keeps the original-size label for the metric.
    """

    def __init__(self, transforms, train=True):
        """Keep the transform list."""
        self.transforms = list(transforms)
        self.train = train

    def __call__(self, image, label=None, rng=None):
        """Return (float32 CHW image, label) for a HxWx3 uint8 RGB ``image``."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'expected an HxWx3 RGB image, found shape {image.shape}')
        if rng is None:
            rng = np.random.default_rng()
        data = image.astype(np.float32)
        target = label if self.train else None
        for transform in self.transforms:
            data, target = transform(data, target, rng)
        data = np.ascontiguousarray(data.transpose(2, 0, 1))
        return data, (target if self.train else label)

    def __repr__(self):
        """List the transforms."""
        inner = ', '.join(repr(t) for t in self.transforms)
        return f'Compose([{inner}], train={self.train})'


class ResizeStepScaling:
    """
    Scale image and label by a factor drawn from linspace(min, max, (max - min) / step + 1).

    Image: cv2 INTER_LINEAR, label: INTER_NEAREST; the new size is
    ``int(round(factor * size))`` per side (Python's round, as PaddleSeg). ``step == 0`` draws
    the factor uniformly; ``min == max`` uses it without a draw.
    """

    def __init__(self, min_scale_factor=0.75, max_scale_factor=1.25, scale_step_size=0.25):
        """Check and keep the range."""
        if min_scale_factor > max_scale_factor:
            raise ValueError(f'min_scale_factor must be <= max_scale_factor, found '
                             f'{min_scale_factor} and {max_scale_factor}')
        self.min_scale_factor = min_scale_factor
        self.max_scale_factor = max_scale_factor
        self.scale_step_size = scale_step_size

    def factor(self, rng):
        """Draw the scale factor the way PaddleSeg does."""
        if self.min_scale_factor == self.max_scale_factor:
            return self.min_scale_factor
        if self.scale_step_size == 0:
            return rng.uniform(self.min_scale_factor, self.max_scale_factor)
        num_steps = int((self.max_scale_factor - self.min_scale_factor) / self.scale_step_size
                        + 1)
        factors = np.linspace(self.min_scale_factor, self.max_scale_factor, num_steps).tolist()
        rng.shuffle(factors)
        return factors[0]

    def __call__(self, image, label, rng):
        """Resize both by one drawn factor."""
        factor = self.factor(rng)
        w = int(round(factor * image.shape[1]))
        h = int(round(factor * image.shape[0]))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        if label is not None:
            label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        return image, label

    def __repr__(self):
        """Show the range."""
        return (f'ResizeStepScaling({self.min_scale_factor}, {self.max_scale_factor}, '
                f'{self.scale_step_size})')


class RandomPaddingCrop:
    """
    Pad bottom/right up to ``crop_size`` ([W, H]) if needed, then crop a random window.

    Image padding 127.5 (exact: the image is float32 here), label padding 255. An image that
    already has the crop size is returned as is without a random draw, as PaddleSeg.
    """

    def __init__(self, crop_size=(512, 512), im_padding_value=IM_PADDING_VALUE,
                 label_padding_value=255):
        """Keep the crop size ([W, H], PaddleSeg order) and padding values."""
        if len(crop_size) != 2:
            raise ValueError(f'crop_size must be [W, H], found {crop_size!r}')
        self.crop_w, self.crop_h = int(crop_size[0]), int(crop_size[1])
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, image, label, rng):
        """Pad, draw the offsets (rows first, as PaddleSeg) and crop."""
        h, w = image.shape[:2]
        if h == self.crop_h and w == self.crop_w:
            return image, label
        pad_h, pad_w = max(self.crop_h - h, 0), max(self.crop_w - w, 0)
        if pad_h > 0 or pad_w > 0:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                       value=(self.im_padding_value,) * image.shape[2])
            if label is not None:
                label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                           value=self.label_padding_value)
            h, w = image.shape[:2]
        top = int(rng.integers(0, h - self.crop_h + 1))
        left = int(rng.integers(0, w - self.crop_w + 1))
        image = image[top:top + self.crop_h, left:left + self.crop_w]
        if label is not None:
            label = label[top:top + self.crop_h, left:left + self.crop_w]
        return image, label

    def __repr__(self):
        """Show the crop size."""
        return f'RandomPaddingCrop([{self.crop_w}, {self.crop_h}])'


class RandomHorizontalFlip:
    """Mirror image and label left-right with probability ``prob``."""

    def __init__(self, prob=0.5):
        """Keep the probability."""
        self.prob = prob

    def __call__(self, image, label, rng):
        """Flip when a uniform draw is below ``prob``."""
        if rng.random() < self.prob:
            image = image[:, ::-1]
            if label is not None:
                label = label[:, ::-1]
        return image, label

    def __repr__(self):
        """Show the probability."""
        return f'RandomHorizontalFlip({self.prob})'


def _brightness(im, delta):
    return ImageEnhance.Brightness(im).enhance(delta)


def _contrast(im, delta):
    return ImageEnhance.Contrast(im).enhance(delta)


def _saturation(im, delta):
    return ImageEnhance.Color(im).enhance(delta)


def _sharpness(im, delta):
    return ImageEnhance.Sharpness(im).enhance(delta)


def _hue(im, delta):
    """Shift PIL's 8-bit hue by ``delta`` with uint8 wrap-around, as PaddleSeg's numpy code."""
    hsv = np.array(im.convert('HSV'))
    # PaddleSeg: hsv[..., 0] = hsv[..., 0] + delta, a float64 stored into uint8, which
    # truncates toward zero and wraps modulo 256; spelled out so no numpy version differs.
    shifted = np.trunc(hsv[:, :, 0].astype(np.float64) + delta).astype(np.int64)
    hsv[:, :, 0] = np.mod(shifted, 256).astype(np.uint8)
    return Image.fromarray(hsv, mode='HSV').convert('RGB')


class RandomDistort:
    """
    PaddleSeg's photometric distortion: brightness, contrast, saturation, sharpness and hue.

    The five ops are shuffled; each then runs with its probability and a factor drawn from
    [1 - range, 1 + range] (hue: a shift in [-hue_range, hue_range] of PIL's 0..255 hue). A
    probability check is drawn for every op, sharpness (probability 0) included, as PaddleSeg.
    """

    OPS = {'brightness': _brightness, 'contrast': _contrast, 'saturation': _saturation,
           'sharpness': _sharpness, 'hue': _hue}

    def __init__(self, brightness_range=0.5, brightness_prob=0.5, contrast_range=0.5,
                 contrast_prob=0.5, saturation_range=0.5, saturation_prob=0.5, hue_range=18,
                 hue_prob=0.5, sharpness_range=0.5, sharpness_prob=0):
        """Keep ranges and probabilities (PaddleSeg's defaults)."""
        self.ranges = {'brightness': (1 - brightness_range, 1 + brightness_range),
                       'contrast': (1 - contrast_range, 1 + contrast_range),
                       'saturation': (1 - saturation_range, 1 + saturation_range),
                       'sharpness': (1 - sharpness_range, 1 + sharpness_range),
                       'hue': (-hue_range, hue_range)}
        self.probs = {'brightness': brightness_prob, 'contrast': contrast_prob,
                      'saturation': saturation_prob, 'sharpness': sharpness_prob,
                      'hue': hue_prob}

    def __call__(self, image, label, rng):
        """Distort the image; the label is unchanged."""
        ops = ['brightness', 'contrast', 'saturation', 'sharpness', 'hue']
        rng.shuffle(ops)
        im = Image.fromarray(image.astype(np.uint8))
        for name in ops:
            if rng.uniform(0, 1) < self.probs[name]:
                im = self.OPS[name](im, rng.uniform(*self.ranges[name]))
        return np.asarray(im).astype(np.float32), label

    def __repr__(self):
        """Show ranges and probabilities."""
        return f'RandomDistort(ranges={self.ranges}, probs={self.probs})'


class Normalize:
    """``(image / 255 - mean) / std`` in float32, as PaddleSeg's ``functional.normalize``."""

    def __init__(self, mean=MEAN, std=STD):
        """Keep mean and std (per channel)."""
        self.mean = np.array(mean)
        self.std = np.array(std)
        if not np.all(self.std != 0):
            raise ValueError(f'std must not contain 0, found {std!r}')

    def __call__(self, image, label, rng):
        """Normalise the image; the label is unchanged."""
        image = image.astype(np.float32, copy=False) / 255.0
        image -= self.mean
        image /= self.std
        return image, label

    def __repr__(self):
        """Show mean and std."""
        return f'Normalize({self.mean.tolist()}, {self.std.tolist()})'


class Resize:
    """Resize the image (and label, nearest) to ``target_size`` [W, H] with cv2 INTER_LINEAR."""

    def __init__(self, target_size):
        """Keep the target size ([W, H])."""
        self.target_size = (int(target_size[0]), int(target_size[1]))

    def __call__(self, image, label, rng):
        """Resize."""
        image = cv2.resize(image, self.target_size, interpolation=cv2.INTER_LINEAR)
        if label is not None:
            label = cv2.resize(label, self.target_size, interpolation=cv2.INTER_NEAREST)
        return image, label

    def __repr__(self):
        """Show the size."""
        return f'Resize({list(self.target_size)})'


def build_train_transforms(config):
    """
    Return the training ``Compose`` of a config: PaddleSeg's PP-LiteSeg train pipeline.

    ResizeStepScaling, RandomPaddingCrop, RandomHorizontalFlip, RandomDistort (unless
    ``train.distort`` is null), Normalize.
    """
    train = config['train']
    scale = train['scale']
    ignore_index = config['dataset'].get('ignore_index', 255)
    transforms = [ResizeStepScaling(scale['min'], scale['max'], scale['step']),
                  RandomPaddingCrop(train['crop_size'], IM_PADDING_VALUE, ignore_index),
                  RandomHorizontalFlip(train.get('flip_prob', 0.5))]
    distort = train.get('distort')
    if distort:
        prob = distort.get('prob', 0.5)
        transforms.append(RandomDistort(
            brightness_range=distort['brightness'], brightness_prob=prob,
            contrast_range=distort['contrast'], contrast_prob=prob,
            saturation_range=distort['saturation'], saturation_prob=prob,
            hue_range=distort['hue'], hue_prob=prob))
    transforms.append(Normalize(MEAN, STD))
    return Compose(transforms, train=True)


def build_eval_transforms(config=None):
    """
    Return the evaluation ``Compose``: Normalize only, at the image's own size.

    PaddleSeg's PP-LiteSeg configs evaluate the normalised full image resized by the test
    scale (``test_config: {aug_eval: true, scales: 0.5}``); ``training.evaluate`` does that
    resize (to ``eval.size``) on the normalised tensor, so the dataset keeps the full size.
    """
    return Compose([Normalize(MEAN, STD)], train=False)

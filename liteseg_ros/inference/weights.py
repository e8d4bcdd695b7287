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
PaddleSeg's released weights by name: catalogue, download, conversion, cache.

``liteseg weights list`` / ``liteseg weights get NAME`` and every model argument (the node's
``model_path``, ``liteseg bench``, ``bag-eval --model``, ``training.train --init-from``,
``training.export``, a training config's ``pretrained_backbone``) accept a zoo name:

- :data:`CATALOGUE`: the 8 PP-LiteSeg checkpoints of PaddleSeg 2.8's model zoo, named as its
  configs are, and the 2 ImageNet STDC backbones;
- :func:`get` downloads a checkpoint (resuming a cut download, ``liteseg_ros.downloads``),
  converts it with the zoo's variant, classes, dataset and evaluation size
  (``liteseg_ros.model.paddle_weights``, which checks every key and shape) and caches the
  result as ``$XDG_CACHE_HOME/liteseg/NAME.pt``; a file that does not convert is deleted, so
  the cache holds only checkpoints that load;
- :func:`resolve_model` turns a name into the file a backend runs: the checkpoint for
  PyTorch, else an ONNX export cached beside it (made once, by ``python -m training.export``).

``$LITESEG_WEIGHTS_URL`` replaces the scheme and host of every zoo URL (mirrors, air-gapped
sites); the paths stay. torch is imported only when a download is converted.
"""

from dataclasses import dataclass
import os
from pathlib import Path
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse

from liteseg_ros.atomic_file import file_lock
from liteseg_ros.downloads import download, DownloadError, part_path

URL_ENV = 'LITESEG_WEIGHTS_URL'
CACHE_SUBDIR = 'liteseg'
DOWNLOADS_SUBDIR = 'downloads'
PADDLESEG = 'https://paddleseg.bj.bcebos.com/dygraph'


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable set of weights: a segmentation model or an ImageNet backbone."""

    name: str
    variant: str                 # 't' (STDC1) or 'b' (STDC2)
    dataset: str                 # cityscapes, camvid or imagenet (a backbone)
    num_classes: int
    input_size: tuple = None     # (H, W): PaddleSeg's evaluation size; None for backbones
    zoo_miou: str = ''           # as PaddleSeg's README publishes it
    url: str = ''

    @property
    def is_backbone(self):
        """Tell whether these are ImageNet backbone weights (for ``pretrained_backbone``)."""
        return self.dataset == 'imagenet'


def _model(variant, dataset, scale, miou):
    backbone = 'stdc1' if variant == 't' else 'stdc2'
    if dataset == 'cityscapes':
        size = {'0.5': (512, 1024), '0.75': (768, 1536), '1.0': (1024, 2048)}[scale]
        return ZooEntry(
            f'pp_liteseg_{variant}_cityscapes_{scale}', variant, 'cityscapes', 19, size,
            f'{miou} val', f'{PADDLESEG}/cityscapes/pp_liteseg_{backbone}_cityscapes_1024x512_'
            f'scale{scale}_160k/model.pdparams')
    return ZooEntry(f'pp_liteseg_{variant}_camvid', variant, 'camvid', 11, (720, 960),
                    f'{miou} test', f'{PADDLESEG}/camvid/pp_liteseg_{backbone}_camvid_960x720_'
                    '10k/model.pdparams')


# PaddleSeg 2.8, configs/pp_liteseg/README.md (no checksums are published).
CATALOGUE = {entry.name: entry for entry in (
    _model('t', 'cityscapes', '0.5', '73.10%'),
    _model('t', 'cityscapes', '0.75', '76.03%'),
    _model('t', 'cityscapes', '1.0', '77.04%'),
    _model('b', 'cityscapes', '0.5', '75.25%'),
    _model('b', 'cityscapes', '0.75', '78.75%'),
    _model('b', 'cityscapes', '1.0', '79.04%'),
    _model('t', 'camvid', None, '73.30%'),
    _model('b', 'camvid', None, '75.10%'),
    ZooEntry('stdc1_imagenet', 't', 'imagenet', 1000,
             url='https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet1.tar.gz'),
    ZooEntry('stdc2_imagenet', 'b', 'imagenet', 1000,
             url='https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.tar.gz'),
)}


class WeightsError(ValueError):
    """A zoo name that cannot be fetched or converted; the message is one line."""


def _say(text):
    print(text, file=sys.stderr, flush=True)


def cache_dir():
    """Return ``$XDG_CACHE_HOME/liteseg`` (``~/.cache/liteseg`` without it)."""
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / CACHE_SUBDIR


def checkpoint_path(name):
    """Return where the converted checkpoint of ``name`` is cached."""
    return cache_dir() / f'{name}.pt'


def onnx_path(name):
    """Return where the ONNX export of ``name`` is cached."""
    return cache_dir() / f'{name}.onnx'


def lookup(name):
    """Return the :class:`ZooEntry` of ``name``; an unknown name lists the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise WeightsError(f'{name!r} is not a zoo name; known names: '
                           f'{", ".join(CATALOGUE)}') from None


def is_zoo_name(text):
    """Tell whether ``text`` names a zoo entry (and no file of that name exists)."""
    return str(text) in CATALOGUE and not Path(str(text)).exists()


def entry_url(entry):
    """Return the URL of ``entry``, on the host of ``$LITESEG_WEIGHTS_URL`` when it is set."""
    mirror = os.environ.get(URL_ENV, '').strip()
    if not mirror:
        return entry.url
    path = urllib.parse.urlsplit(entry.url).path
    return mirror.rstrip('/') + path


def _download_file(entry):
    suffix = '.tar.gz' if entry.url.endswith('.tar.gz') else '.pdparams'
    return cache_dir() / DOWNLOADS_SUBDIR / f'{entry.name}{suffix}'


def manual_route(entry, out=None):
    """Return the commands that do by hand what ``get`` does for ``entry``."""
    out = out or checkpoint_path(entry.name)
    if entry.is_backbone:
        return (f'download {entry.url} elsewhere, unpack its .pdparams and run python -m '
                f'training.convert_paddle FILE.pdparams {out} --variant {entry.variant} '
                '--backbone-only')
    return (f'download {entry.url} elsewhere and run python -m training.convert_paddle '
            f'FILE.pdparams {out} --variant {entry.variant} --num-classes {entry.num_classes} '
            f'--dataset {entry.dataset}, or set {URL_ENV} to a mirror')


def _convert(entry, source, out):
    """Convert the downloaded ``source`` of ``entry`` into ``out``; every key is checked."""
    from liteseg_ros.model.paddle_weights import convert_backbone, convert_model

    if not entry.is_backbone:
        convert_model(source, out, entry.variant, entry.num_classes, entry.dataset,
                      list(entry.input_size))
        return
    with tempfile.TemporaryDirectory(dir=source.parent) as scratch:
        try:
            with tarfile.open(source) as archive:
                members = [m for m in archive.getmembers()
                           if m.isfile() and m.name.endswith('.pdparams')]
                if len(members) != 1:
                    raise WeightsError(f'{source.name}: expected one .pdparams in the archive, '
                                       f'found {len(members)}')
                pdparams = Path(scratch) / f'{entry.name}.pdparams'
                with archive.extractfile(members[0]) as src, open(pdparams, 'wb') as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise WeightsError(f'{source.name}: not a readable .tar.gz ({exc})') from None
        convert_backbone(pdparams, out, entry.variant)


def get(name, force=False, say=_say):
    """
    Return the cached checkpoint of the zoo entry ``name``, downloading and converting it.

    ``force`` downloads and converts again. Messages and the progress bar go to ``say`` and
    stderr.

    :raises WeightsError: unknown name, no network (the message names the URL and the manual
        route), a cut download (run again to resume) or weights that do not convert (nothing
        is cached).
    """
    entry = lookup(name)
    out = checkpoint_path(name)
    if out.is_file() and not force:
        return out
    cache_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir() / f'.{name}.lock'):
        if out.is_file() and not force:
            return out  # another process made it meanwhile
        source = _download_file(entry)
        if force:
            for stale in (out, onnx_path(name), source, part_path(source)):
                stale.unlink(missing_ok=True)
        url = entry_url(entry)
        try:
            download(url, source, label=name)
        except DownloadError as exc:
            if exc.interrupted:
                raise WeightsError(f'{name}: {exc}') from None
            raise WeightsError(f'{name}: cannot download {url} ({exc.reason}); without network, '
                               f'{manual_route(entry, out)}') from None
        say(f'converting {source.name} (PP-LiteSeg-{entry.variant.upper()}, '
            f'{entry.num_classes} classes, {entry.dataset})')
        try:
            _convert(entry, source, out)
        except Exception as exc:
            out.unlink(missing_ok=True)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WeightsError(f'{name}: {url} does not hold the expected weights, nothing was '
                               f'cached: {reason}') from None
        finally:
            source.unlink(missing_ok=True)
    return out


def checkpoint_file(spec, say=_say):
    """Return ``spec`` as a file: a path as it is, a zoo name as its cached checkpoint."""
    return get(str(spec), say=say) if is_zoo_name(spec) else spec


def exported_onnx(name, say=_say):
    """Return the cached ONNX export of the zoo model ``name``, exporting it on first use."""
    entry = lookup(name)
    if entry.is_backbone:
        raise WeightsError(f'{name} is an ImageNet backbone, not a segmentation model: use it '
                           'as model.pretrained_backbone of a training config')
    checkpoint = get(name, say=say)
    out = onnx_path(name)
    if out.is_file() and out.stat().st_mtime >= checkpoint.stat().st_mtime:
        return out
    with file_lock(cache_dir() / f'.{name}.lock'):
        if out.is_file() and out.stat().st_mtime >= checkpoint.stat().st_mtime:
            return out
        say(f'exporting {checkpoint} to ONNX (python -m training.export), once')
        # training.export writes atomically: a failed export leaves no file behind.
        result = subprocess.run(
            [sys.executable, '-m', 'training.export', str(checkpoint), '--onnx', str(out),
             '--no-check'], capture_output=True, text=True, check=False)
        if result.returncode != 0 or not out.is_file():
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise WeightsError(f'{name}: exporting {checkpoint} to ONNX failed: '
                               f'{lines[-1] if lines else result.returncode}')
    return out


def resolve_model(spec, backend='auto', say=_say):
    """
    Return the model file that ``backend`` runs for ``spec``.

    A path (or anything that is not a zoo name) comes back as it is. A zoo name becomes its
    cached checkpoint for the torch backend and its cached ONNX export for the others.
    """
    if not is_zoo_name(spec):
        return spec
    from liteseg_ros.inference.backends import BACKEND_FILES

    name = str(spec)
    if 'checkpoint' in BACKEND_FILES.get(backend, ()) and not lookup(name).is_backbone:
        return get(name, say=say)
    return exported_onnx(name, say=say)  # refuses a backbone


def describe_catalogue():
    """Return the lines of ``liteseg weights list``: name, dataset, classes, mIoU, cached."""
    rows = [('name', 'dataset', 'classes', 'zoo mIoU', 'cached')]
    for entry in CATALOGUE.values():
        cached = checkpoint_path(entry.name)
        rows.append((entry.name, entry.dataset, str(entry.num_classes), entry.zoo_miou or '-',
                     str(cached) if cached.is_file() else 'no'))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)) + '  ' + row[-1]
            for row in rows]

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
``liteseg weights`` against a real HTTP server on 127.0.0.1 that serves the zoo's paths.

``LITESEG_WEIGHTS_URL`` points the command at the server, ``XDG_CACHE_HOME`` at a temporary
cache. The served files are PaddleSeg-format pickles: the reference venv's own
``paddle.save`` output (parity with PaddleSeg's logits), or a seeded model of ours written
under PaddleSeg's recorded key names. The server honours HTTP Range and can cut a transfer
after N bytes, so resuming is observed on the wire, not assumed.
"""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import io
import json
import os
from pathlib import Path
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.parse

from liteseg_ros.inference import weights
from liteseg_ros.model import build_model, load_model
from liteseg_ros.model.paddle_weights import paddle_to_liteseg_name
from model_fixtures import seed_weights
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / 'data'
CITY_T = 'pp_liteseg_t_cityscapes_0.5'


def zoo_path(name):
    """Return the URL path of a zoo entry (what the server must serve)."""
    return urllib.parse.urlsplit(weights.CATALOGUE[name].url).path


def paddle_names(variant):
    """Return the state-dict names of PaddleSeg 2.8's PP-LiteSeg (recorded, 19 classes)."""
    text = (DATA / f'paddleseg_pp_liteseg_{variant}_cityscapes_state_dict.tsv').read_text()
    return [line.split('\t')[0] for line in text.splitlines()]


def paddle_format(state, names):
    """Return ``state`` (ours) pickled as paddle.save writes it, under PaddleSeg's names."""
    payload = {name: state[paddle_to_liteseg_name(name)].numpy().copy() for name in names}
    assert len(payload) == len([k for k in state if not k.endswith('num_batches_tracked')])
    payload['StructuredToParameterName@@'] = {k: f'param_{i}' for i, k in enumerate(payload)}
    return pickle.dumps(payload, protocol=4)


def seeded_model(variant='t', num_classes=19, dataset='cityscapes'):
    torch.manual_seed(0)
    return seed_weights(build_model(variant, num_classes, dataset=dataset), seed=3).eval()


class ZooServer:
    """
    Files by URL path over HTTP on 127.0.0.1, with Range support.

    ``cut[path] = n`` makes the next response for ``path`` stop after n body bytes (the
    Content-Length still announces all of them) and close the connection. ``requests`` lists
    (path, Range header, body bytes sent).
    """

    def __init__(self):
        """Start serving on a free port in a thread."""
        self.files, self.cut, self.requests = {}, {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = urllib.parse.urlsplit(self.path).path
                data = server.files.get(path)
                ranged = self.headers.get('Range')
                if data is None:
                    self.send_error(404)
                    server.requests.append((path, ranged, 0))
                    return
                start = int(ranged.split('=')[1].split('-')[0]) if ranged else 0
                body = data[start:]
                self.send_response(206 if ranged else 200)
                if ranged:
                    self.send_header('Content-Range',
                                     f'bytes {start}-{len(data) - 1}/{len(data)}')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                limit = server.cut.pop(path, None)
                sent = body if limit is None else body[:limit]
                self.wfile.write(sent)
                server.requests.append((path, ranged, len(sent)))
                if limit is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    zoo = ZooServer()
    yield zoo
    zoo.close()


@pytest.fixture
def cache(tmp_path, monkeypatch, server):
    """Set a private cache and the mirror variable, for this process and its children."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    monkeypatch.setenv(weights.URL_ENV, server.url)
    return tmp_path / 'xdg' / 'liteseg'


def liteseg(*args):
    """Run the ``liteseg`` command in a subprocess (environment of this process)."""
    return subprocess.run([sys.executable, '-m', 'liteseg_ros.cli', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def weight_files(cache_dir):
    """Files in the cache other than the (empty) lock files."""
    return sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob('*')
                  if p.is_file() and not p.name.endswith('.lock'))


def assert_same_weights(path, model):
    loaded = load_model(path)
    expected = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_catalogue_names_urls_and_mirror(monkeypatch):
    """The 8 zoo checkpoints and 2 backbones; the mirror replaces scheme and host only."""
    models = [f'pp_liteseg_{v}_cityscapes_{s}' for v in 'tb' for s in ('0.5', '0.75', '1.0')]
    models += ['pp_liteseg_t_camvid', 'pp_liteseg_b_camvid']
    assert list(weights.CATALOGUE) == models + ['stdc1_imagenet', 'stdc2_imagenet']
    entry = weights.CATALOGUE[CITY_T]
    assert entry.url == ('https://paddleseg.bj.bcebos.com/dygraph/cityscapes/pp_liteseg_stdc1_'
                         'cityscapes_1024x512_scale0.5_160k/model.pdparams')
    monkeypatch.setenv(weights.URL_ENV, 'http://mirror.local:8080/')
    assert weights.entry_url(entry) == ('http://mirror.local:8080/dygraph/cityscapes/pp_liteseg_'
                                        'stdc1_cityscapes_1024x512_scale0.5_160k/model.pdparams')
    assert weights.CATALOGUE['pp_liteseg_b_camvid'].input_size == (720, 960)
    assert weights.CATALOGUE['pp_liteseg_b_cityscapes_1.0'].input_size == (1024, 2048)


def test_cut_download_resumes_with_a_range_request(cache, server):
    """Half the bytes, connection closed: the .part stays; the next get asks for the rest."""
    model = seeded_model()
    data = paddle_format(model.state_dict(), paddle_names('t'))
    path = zoo_path(CITY_T)
    server.files[path] = data
    half = len(data) // 2
    server.cut[path] = half

    first = liteseg('weights', 'get', CITY_T)
    assert first.returncode == 1, first.stdout + first.stderr
    error = first.stderr.strip().splitlines()[-1]
    assert 'transfer cut after %d of %d bytes' % (half, len(data)) in error, first.stderr
    assert 'run again to resume' in error
    assert weight_files(cache) == [f'downloads/{CITY_T}.pdparams.part']
    assert (cache / 'downloads' / f'{CITY_T}.pdparams.part').stat().st_size == half

    second = liteseg('weights', 'get', CITY_T)
    assert second.returncode == 0, second.stdout + second.stderr
    assert server.requests == [(path, None, half), (path, f'bytes={half}-', len(data) - half)]
    checkpoint = Path(second.stdout.strip().splitlines()[-1])
    assert checkpoint == cache / f'{CITY_T}.pt'
    assert weight_files(cache) == [f'{CITY_T}.pt']  # the download is gone after conversion
    assert_same_weights(checkpoint, model)
    config = load_model(checkpoint).config
    assert (config['dataset'], config['num_classes'], config['input_size']) == (
        'cityscapes', 19, [512, 1024])

    # Cached: no request; list shows it; --force fetches again.
    assert liteseg('weights', 'get', CITY_T).stdout.strip().splitlines()[-1] == str(checkpoint)
    assert len(server.requests) == 2
    listing = liteseg('weights', 'list').stdout.splitlines()
    row = next(line for line in listing if line.startswith(CITY_T + ' '))
    assert row.split()[1:5] == ['cityscapes', '19', '73.10%', 'val'] and str(checkpoint) in row
    assert liteseg('weights', 'get', CITY_T, '--force').returncode == 0
    assert server.requests[-1] == (path, None, len(data))


@pytest.mark.parametrize('damage', ['truncated', 'wrong classes'])
def test_damaged_file_is_refused_and_nothing_is_cached(cache, server, damage):
    """A truncated pickle, or CamVid weights at a Cityscapes path: refused, cache empty."""
    if damage == 'truncated':
        data = paddle_format(seeded_model().state_dict(), paddle_names('t'))
        data = data[:int(len(data) * 0.6)]  # the server sends it whole: it is the file
        expected = 'not a readable .pdparams pickle'
    else:
        data = paddle_format(seeded_model('t', 11, 'camvid').state_dict(), paddle_names('t'))
        expected = 'seg_heads.0.conv_out.weight [11, 32, 1, 1]'
    server.files[zoo_path(CITY_T)] = data
    result = liteseg('weights', 'get', CITY_T)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if 'error' in line] == lines[-1:], lines  # progress, 1 error
    assert 'nothing was cached' in lines[-1] and expected in lines[-1], lines[-1]
    assert weight_files(cache) == []
    assert 'no' == next(line for line in liteseg('weights', 'list').stdout.splitlines()
                        if line.startswith(CITY_T + ' ')).split()[-1]


def test_no_server_is_one_line_naming_url_and_manual_route(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    monkeypatch.setenv(weights.URL_ENV, f'http://127.0.0.1:{port}')
    result = liteseg('weights', 'get', 'pp_liteseg_b_camvid')
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    url = f'http://127.0.0.1:{port}' + zoo_path('pp_liteseg_b_camvid')
    for words in (url, 'python -m training.convert_paddle', '--variant b', '--num-classes 11',
                  '--dataset camvid', weights.CATALOGUE['pp_liteseg_b_camvid'].url):
        assert words in lines[0], (words, lines[0])
    assert result.stdout == ''
    unknown = liteseg('weights', 'get', 'pp_liteseg_x')
    assert unknown.returncode == 1 and CITY_T in unknown.stderr


def test_backbone_from_tarball_feeds_training(cache, server):
    """stdc1_imagenet: a .tar.gz with one .pdparams; training takes the name as backbone."""
    from training.checkpoints import load_pretrained_backbone

    model = seeded_model()
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
    names = [n[len('backbone.'):] for n in paddle_names('t') if n.startswith('backbone.')]
    extra = {'fc.weight': np.zeros((1000, 1024), np.float32)}  # the classifier is dropped
    payload = pickle.loads(paddle_format(backbone, ['backbone.' + n for n in names]))
    payload = {k.replace('backbone.', '', 1): v for k, v in payload.items()}
    pdparams = pickle.dumps({**payload, **extra}, protocol=4)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode='w:gz') as tar:
        info = tarfile.TarInfo('PP_STDCNet1/model.pdparams')
        info.size = len(pdparams)
        tar.addfile(info, io.BytesIO(pdparams))
    server.files[zoo_path('stdc1_imagenet')] = archive.getvalue()

    result = liteseg('weights', 'get', 'stdc1_imagenet')
    assert result.returncode == 0, result.stderr
    assert weight_files(cache) == ['stdc1_imagenet.pt']
    fresh = build_model('t', 19)
    load_pretrained_backbone(fresh, 'stdc1_imagenet')
    for key, value in fresh.backbone.state_dict().items():
        assert torch.equal(value, backbone['backbone.' + key]), key


REFERENCE_CASES = [('t', 19, 512, 1024), ('b', 19, 512, 1024), ('t', 11, 720, 960),
                   ('b', 11, 720, 960)]  # test_paddle_parity's cases: one reference build


@pytest.mark.paddle
@pytest.mark.slow
@pytest.mark.parametrize('name, case', [(CITY_T, 't_19_512x1024'),
                                        ('pp_liteseg_b_camvid', 'b_11_720x960')])
def test_get_gives_paddleseg_logits(cache, server, name, case):
    """Serve paddle.save's own file at the zoo path: get's model gives PaddleSeg's logits."""
    sys.path.insert(0, str(Path(__file__).parent))
    from paddle_reference import env as paddle_env
    from tolerances import assert_logits_close, float64_logits

    with paddle_env.required_in_ci():
        cases = paddle_env.make_reference(cases=REFERENCE_CASES, seed=0)
    case_dir = next(c for c in cases if c.name == case)
    server.files[zoo_path(name)] = (case_dir / 'model.pdparams').read_bytes()
    result = liteseg('weights', 'get', name)
    assert result.returncode == 0, result.stderr
    model = load_model(result.stdout.strip().splitlines()[-1])
    entry = weights.CATALOGUE[name]
    assert model.config['dataset'] == entry.dataset
    assert model.config['input_size'] == list(entry.input_size)
    x = np.load(case_dir / 'input.npy')
    with torch.inference_mode():
        ours32 = model(torch.from_numpy(x)).numpy()
    ref64 = np.load(case_dir / 'logits64.npy')
    # Paddle's resize rounds coordinates to float32 even in float64 (test_paddle_parity).
    assert_logits_close(ref64, float64_logits(model, x), f'{name} paddle64 vs ours64',
                        rel=np.finfo(np.float32).eps * 32)
    assert_logits_close(ours32, ref64, f'{name} ours32 vs paddle64')
    assert os.listdir(cache / 'downloads') == []


def test_demo_uses_the_released_weights_when_it_can_fetch_them(cache, server, tmp_path):
    """``liteseg demo`` without --checkpoint (``make demo`` runs node-demo the same way)."""
    model = seeded_model()
    server.files[zoo_path(CITY_T)] = paddle_format(model.state_dict(), paddle_names('t'))
    result = liteseg('demo', '--output', str(tmp_path / 'out'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"using PaddleSeg's released weights {CITY_T} (zoo mIoU 73.10% val)" in result.stdout
    assert 'RANDOM' not in result.stdout + result.stderr
    assert_same_weights(cache / f'{CITY_T}.pt', model)


def test_zoo_name_as_model_of_a_fleet_of_bags(cache, server, tmp_path):
    """``bag-eval BAG BAG --model NAME``: fetched once, every bag evaluated with it."""
    from liteseg_ros.bags.rosbag import BagWriter, header, image_message
    from liteseg_ros.sample_images import make_street_scene

    model = seeded_model()
    server.files[zoo_path(CITY_T)] = paddle_format(model.state_dict(), paddle_names('t'))
    bags = []
    for i in range(2):
        bags.append(tmp_path / f'drive{i}')
        with BagWriter(bags[-1], 'mcap') as writer:
            writer.write('/cam/image_raw', 10**9, image_message(
                make_street_scene(64, 128, seed=i), 'rgb8', header(1, 0, 'cam')))
    result = liteseg('bag-eval', *map(str, bags), '--model', CITY_T, '--backend', 'torch',
                     '--output', str(tmp_path / 'fleet'), '--outputs', 'none', '--no-progress',
                     '--threads', '1')
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / 'fleet' / 'summary.json').read_text())
    assert summary['frames'] == 2 and summary['model'] == str(cache / f'{CITY_T}.pt')
    assert len(server.requests) == 1  # one download for the whole fleet

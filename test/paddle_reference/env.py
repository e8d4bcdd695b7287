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
The PaddlePaddle/PaddleSeg reference environment of the parity tests.

PaddleSeg needs ``numpy<2`` and its own framework, so it lives in a separate
venv that this module creates on first use:

- location: ``$LITESEG_PADDLE_VENV`` when set (used as is), else
  ``<repo>/.cache/paddle_ref/venv``;
- creation is idempotent and safe under parallel pytest workers (an
  ``fcntl`` lock next to the venv); a stamp file is written only after the
  install and an import check succeeded, so a half-built venv is rebuilt;
- :func:`make_reference` runs ``make_reference.py`` in that venv and caches
  its outputs under ``<repo>/.cache/paddle_ref/outputs/<key>`` where the key
  hashes the script, the cases, the seed and the pinned requirements.

Nothing here imports paddle or torch.
"""

import contextlib
import hashlib
import json
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import threading
import time

from liteseg_ros.atomic_file import file_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / '.cache' / 'paddle_ref'
OUTPUTS_DIR = CACHE_DIR / 'outputs'
SCRIPT = Path(__file__).resolve().with_name('make_reference.py')
VENV_ENV_VAR = 'LITESEG_PADDLE_VENV'
REQUIREMENTS = ('paddlepaddle==3.3.1', 'paddleseg==2.8.0', 'numpy<2', 'pandas<3')
PROBE = ('import paddle, paddleseg; '
         "assert paddle.__version__ == '3.3.1', paddle.__version__; "
         "assert paddleseg.__version__ == '2.8.0', paddleseg.__version__")
STAMP_NAME = '.liteseg_paddle_ref_ok'
KEEP_OUTPUTS = 3
INSTALL_TIMEOUT_S = 3600
REFERENCE_TIMEOUT_S = 1800


class PaddleEnvError(RuntimeError):
    """The reference venv could not be created or the reference script failed."""


@contextlib.contextmanager
def required_in_ci():
    """Turn a PaddleEnvError into a test failure when ``CI`` is set, a skip elsewhere."""
    import pytest

    try:
        yield
    except PaddleEnvError as exc:
        message = f'PaddleSeg reference unavailable: {exc}'
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)


def _log(msg):
    print(f'[paddle_ref] {msg}', flush=True)


def venv_dir():
    """Return the reference venv directory ($LITESEG_PADDLE_VENV or the repo cache)."""
    env = os.environ.get(VENV_ENV_VAR)
    return Path(env) if env else CACHE_DIR / 'venv'


def _venv_python(venv):
    return venv / 'bin' / 'python'


def _stamp_text():
    return '\n'.join(REQUIREMENTS) + '\n'


def _clean_env():
    """Environment for child processes: nothing of the calling venv leaks in."""
    env = dict(os.environ)
    for key in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV', 'PYTHONSTARTUP'):
        env.pop(key, None)
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    env['PIP_NO_INPUT'] = '1'
    return env


def _is_ready(venv):
    stamp = venv / STAMP_NAME
    return (_venv_python(venv).exists() and stamp.exists()
            and stamp.read_text() == _stamp_text())


def _probe(python):
    """Return True when ``python`` imports the pinned paddle and paddleseg."""
    try:
        result = subprocess.run([str(python), '-c', PROBE], env=_clean_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _stream(cmd, log, echo_prefixes, timeout_s):
    """
    Run ``cmd``, copy its output to ``log`` and echo lines with the given prefixes.

    Returns the exit code (-9 after a kill on timeout).
    """
    proc = subprocess.Popen(cmd, env=_clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            log.write(line)
            if line.startswith(echo_prefixes):
                _log('  ' + line.rstrip())
        return proc.wait()
    finally:
        timer.cancel()


def _tail(path, lines=15):
    return ''.join(path.read_text(errors='replace').splitlines(keepends=True)[-lines:])


def _run_logged(cmd, log_path, what):
    """Run an install step, appending its output to ``log_path``; raise on failure."""
    _log(f'{what}: {shlex.join(cmd)}  (log: {log_path})')
    with open(log_path, 'a') as log:
        log.write(f'$ {shlex.join(cmd)}\n')
        log.flush()
        try:
            code = _stream(cmd, log, ('Collecting', 'Successfully', 'ERROR'), INSTALL_TIMEOUT_S)
        except OSError as exc:
            raise PaddleEnvError(f'{what} failed to start: {shlex.join(cmd)}: {exc}') from exc
    if code != 0:
        raise PaddleEnvError(
            f'{what} failed (exit {code}): {shlex.join(cmd)}\n'
            f'full log: {log_path}\nlast lines:\n{_tail(log_path)}'
            'The parity tests need PyPI access once to build this venv; or set '
            f'{VENV_ENV_VAR} to an existing venv with {shlex.join(REQUIREMENTS)}.')


def _build(venv):
    log_path = venv.parent / f'{venv.name}.install.log'
    log_path.write_text('')
    if venv.exists():
        if not (venv / 'pyvenv.cfg').exists() and any(venv.iterdir()):
            raise PaddleEnvError(
                f'{venv} exists, is not empty and is not a venv (no pyvenv.cfg); '
                f'point {VENV_ENV_VAR} elsewhere or remove it')
        _log(f'removing incomplete venv {venv}')
        shutil.rmtree(venv)
    t0 = time.monotonic()
    _run_logged([sys.executable, '-m', 'venv', str(venv)], log_path, 'creating venv')
    python = _venv_python(venv)
    _run_logged([str(python), '-m', 'pip', 'install', *REQUIREMENTS], log_path,
                'installing the PaddleSeg reference stack')
    if not _probe(python):
        raise PaddleEnvError(
            f'{python} cannot import paddle 3.3.1 and paddleseg 2.8.0 after the install; '
            f'run: {python} -c "{PROBE}" to see why (install log: {log_path})')
    (venv / STAMP_NAME).write_text(_stamp_text())
    _log(f'reference venv ready at {venv} in {time.monotonic() - t0:.0f} s')


def ensure_paddle_venv():
    """
    Return the python executable of the reference venv, creating the venv if needed.

    :raises PaddleEnvError: the venv could not be created (e.g. no network); the message
        names the failing command and its log.
    """
    venv = venv_dir().absolute()
    if _is_ready(venv):
        return _venv_python(venv)
    with file_lock(venv.parent / f'{venv.name}.lock'):
        if _is_ready(venv):
            return _venv_python(venv)
        python = _venv_python(venv)
        if python.exists() and _probe(python):
            # A complete venv made by hand (e.g. $LITESEG_PADDLE_VENV): adopt it.
            _log(f'using existing reference venv {venv}')
            (venv / STAMP_NAME).write_text(_stamp_text())
            return python
        _build(venv)
    return _venv_python(venv)


def normalise_case(case):
    """Return ``VARIANT:NUM_CLASSES:HEIGHT:WIDTH`` for a string or a 4-tuple."""
    if isinstance(case, str):
        parts = case.split(':')
    else:
        parts = list(case)
    if len(parts) != 4 or str(parts[0]) not in ('t', 'b'):
        raise ValueError(f'bad reference case {case!r}: expected (variant, num_classes, '
                         'height, width) with variant t or b')
    return ':'.join([str(parts[0])] + [str(int(p)) for p in parts[1:]])


def case_name(case):
    """Return the directory name make_reference.py uses, e.g. ``t_19_512x1024``."""
    variant, num_classes, height, width = normalise_case(case).split(':')
    return f'{variant}_{num_classes}_{height}x{width}'


def cache_key(cases, seed):
    """Hash of make_reference.py, the cases, the seed and the pinned requirements."""
    digest = hashlib.sha256()
    digest.update(SCRIPT.read_bytes())
    digest.update(json.dumps({'cases': [normalise_case(c) for c in cases], 'seed': int(seed),
                              'requirements': list(REQUIREMENTS)}).encode())
    return digest.hexdigest()[:16]


def _prune(root, keep):
    entries = sorted((p for p in root.iterdir() if p.is_dir() and (p / 'manifest.json').exists()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
        for suffix in ('.log', '.lock'):
            old.with_name(old.name + suffix).unlink(missing_ok=True)


def make_reference(out_dir=None, cases=(('t', 19, 512, 1024),), seed=0):
    """
    Run make_reference.py in the reference venv; return the case directories.

    :param out_dir: root of the output cache (default ``<repo>/.cache/paddle_ref/outputs``);
        results go to ``out_dir/<cache_key>/<case_name>/`` and are reused when present.
    :param cases: ``(variant, num_classes, height, width)`` tuples or ``'t:19:512:1024'``
        strings.
    :param seed: RNG seed of the weights and inputs.
    :returns: list of :class:`pathlib.Path`, one case directory per case, in order.
    :raises PaddleEnvError: the venv could not be built or the script failed.
    """
    cases = [normalise_case(c) for c in cases]
    root = Path(out_dir) if out_dir is not None else OUTPUTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(cases, seed)
    target = root / key
    paths = [target / case_name(c) for c in cases]
    if (target / 'manifest.json').exists():
        os.utime(target)
        _log(f'reusing cached reference outputs {target}')
        return paths
    python = ensure_paddle_venv()
    with file_lock(root / f'{key}.lock'):
        if (target / 'manifest.json').exists():
            return paths
        tmp = root / f'{key}.tmp-{os.getpid()}'
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [str(python), str(SCRIPT), '--out-dir', str(tmp), '--seed', str(int(seed))]
        for c in cases:
            cmd += ['--case', c]
        log_path = root / f'{key}.log'
        _log(f'making PaddleSeg reference outputs: {shlex.join(cmd)}  (log: {log_path})')
        t0 = time.monotonic()
        with open(log_path, 'w') as log:
            code = _stream(cmd, log, ('make_reference',), REFERENCE_TIMEOUT_S)
        if code != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PaddleEnvError(
                f'reference script failed (exit {code}): {shlex.join(cmd)}\n'
                f'full log: {log_path}\nlast lines:\n{_tail(log_path, 30)}')
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        _log(f'reference outputs in {target} ({time.monotonic() - t0:.0f} s)')
    _prune(root, KEEP_OUTPUTS)
    return paths


if __name__ == '__main__':
    print(ensure_paddle_venv())

"""examples/quickstart.ipynb runs top to bottom (nbclient, CPU) against a checkpoint made here.

The test writes a freshly initialised tiny_256_ce model file and a one-sequence synthetic
dataset into a temporary folder and points the notebook's settings (environment variables) at
them; any cell error fails the test. It checks that the cells produced their figures and the
speed and export lines (the numbers themselves are random-weight numbers).
"""

import os
import pathlib
import re

import nbclient  # the dev extra provides nbclient, nbformat and ipykernel
import nbformat
import pytest

import train_util

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / 'examples' / 'quickstart.ipynb'

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def test_notebook_is_colab_ready():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  source = '\n'.join(c.source for c in nb.cells if c.cell_type == 'code')
  assert source.count("REPO_URL = '") == 1  # the one place to change the repository
  assert "find_spec('ostrack_jax') is None" in source  # pip install skipped when importable
  assert not any(c.get('outputs') for c in nb.cells if c.cell_type == 'code'), (
    'commit the notebook without outputs'
  )
  for marker in ('/work/', '/home/', '/Users/', 'C:\\\\'):
    assert marker not in source, f'machine-specific path {marker!r} in the notebook'


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
  from ostrack_jax.configs import get_config
  from ostrack_jax.datasets import synthetic
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  config = get_config('tiny_256_ce')
  checkpoint = tmp_path / 'tiny.msgpack'
  save_variables(str(checkpoint), init_variables(config, seed=0), config)
  synthetic.make_synthetic_dataset(
    tmp_path / 'synthetic', num_train=0, num_val=1, num_frames=10, frame_size=(320, 240), seed=0
  )
  env = {
    'OSTRACK_CHECKPOINT': str(checkpoint),
    'OSTRACK_CONFIG': 'tiny_256_ce',
    'OSTRACK_JAX_SYNTHETIC': str(tmp_path / 'synthetic'),
    'OSTRACK_TRAIN_IF_MISSING': '0',
    'OSTRACK_MAX_FRAMES': '24',  # the whole example sequence: the comparison needs every frame
    'OSTRACK_EXPORT_DIR': str(tmp_path / 'exported'),
    'JAX_PLATFORMS': 'cpu',
    'XLA_FLAGS': train_util.xla_flags(1),  # one device, as on a plain machine
    'MPLBACKEND': 'module://matplotlib_inline.backend_inline',
    'PYTHONPATH': os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p),
  }
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError naming the failing cell

  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 5, f'expected the box, score-map, CE and success figures, got {len(images)}'
  assert 'frames/s' in text and 'mean IoU' in text
  assert 'max box difference to the live tracker 0.00e+00 px' in text, text[-1500:]
  assert 'max box difference to track() 0.00e+00 px' in text, text[-1500:]  # track_async
  assert 'same artifact: boxes' in text  # the exported tracker on frames of another size
  # compare_trackers: the live and the exported tracker score alike, beside a baseline.
  table = text[text.index('folder (1 seq)') :].splitlines()
  cells = [re.split(r'\s{2,}', line.strip()) for line in table[2:5]]  # names hold spaces
  rows = {c[0]: c[1:] for c in cells}
  assert set(rows) == {'ours', 'ours (exported)', 'first box held'}, table[:6]
  assert rows['ours'] == rows['ours (exported)'], table[:6]

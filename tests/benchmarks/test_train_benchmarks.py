"""The training-speed reports (benchmarks/train_speed.py, benchmarks/device/train_matrix.py) on
made-up measurements: MFU from the analytic count and the device's peak, the original's line,
the projection of the full schedule, and the data pipeline's cores per GPU. (The scripts
themselves run end to end with ``TINY=1 bash benchmarks/device/train_run.sh``, 4-7 minutes.)"""

import importlib
import json
import pathlib
import sys

import pytest

from ostrack_jax.configs import get_config
from ostrack_jax.models import flops


def _import_benchmarks():
  """benchmarks/train_speed.py and benchmarks/device/train_matrix.py, imported with the
  repository on sys.path only while importing (no other test may come to rely on it)."""
  saved = list(sys.path)
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  try:
    return (
      importlib.import_module('benchmarks.train_speed'),
      importlib.import_module('benchmarks.device.train_matrix'),
    )
  finally:
    sys.path[:] = saved


train_speed, train_matrix = _import_benchmarks()


def test_variants_combine_and_unknown_ones_are_refused():
  assert train_speed.variant_fields('bf16act+fused_cudnn') == {
    'bf16_activations': True,
    'attention_impl': 'cudnn',
  }
  assert train_matrix._join('plain', 'bf16act', 'remat') == 'bf16act+remat'
  assert train_matrix._join('plain') == 'plain'
  with pytest.raises(SystemExit, match='unknown variant'):
    train_speed.variant_fields('bf16act+turbo')


def test_train_speed_row_uses_the_analytic_count():
  per_sample = flops.count_macs(get_config('ostrack_256_ce'), 0.7).train_flops
  res = {
    'median_ms': 50.0,
    'min_ms': 49.0,
    'compile_s': 30.0,
    'times_ms': [50.0, 51.0, 49.0],
    'peak_mb': 9000.0,
    'xla_mb': 8000.0,
    'model_flops': 64 * per_sample,
    'xla_flops': 64 * 12e9,
    'global_batch': 64,
  }
  row = train_speed.make_row('ostrack_256_ce', 'plain', 0.7, 'bfloat16', 64, [res], 989.0, [], 'x')
  assert row['samples_per_s'] == pytest.approx(1280.0)
  assert row['mfu'] == pytest.approx(64 * per_sample / 0.05 / 989e12)
  assert row['model_gflop'] == pytest.approx(per_sample / 1e9)
  text = train_speed.render([row], 'test', {'bfloat16': (989.0, 'H100 bf16 dense')}, 64)
  assert '989 TFLOP/s (H100 bf16 dense)' in text
  assert f'{100 * row["mfu"]:.1f}%' in text
  hours = 300 * 60000 / 1280.0 / 3600
  assert f'{hours:.1f} h on one device, {hours / 4:.1f} h on four' in text


def test_matrix_tables(tmp_path):
  per_sample = flops.count_macs(get_config('ostrack_256_ce'), 0.7).train_flops
  recs = [
    {
      'kind': 'train',
      'variant': 'plain',
      'batch': 32,
      'dtype': 'bfloat16',
      'median_ms': 35.3,
      'compile_s': 40.0,
      'model_flops': 32 * per_sample,
      'xla_flops': 32 * 12e9,
      'global_batch': 32,
      'xla_mb': 8100.0,
      'peak_mb': 8200.0,
    },
    {'kind': 'train', 'variant': 'fused_cudnn', 'batch': 128, 'dtype': 'bfloat16', 'error': 'X'},
    {
      'kind': 'loss',
      'variant': 'plain',
      'batch': 32,
      'dtype': 'float32',
      'losses': [10.0] * 20,
    },
    {
      'kind': 'loss',
      'variant': 'plain',
      'batch': 32,
      'dtype': 'bfloat16',
      'losses': [10.5] * 20,
    },
  ]
  (tmp_path / 'train_matrix.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in recs))
  original = {'preset': 'ostrack_256_ce', 'batch': 32, 'median_ms': 122.9, 'device_name': 'GPU'}
  (tmp_path / 'orig.txt').write_text('a table\n' + json.dumps(original) + '\n')
  (tmp_path / 'data.txt').write_text(
    '| input | per CPU-second (1 thread) | main process, wall | 16 worker(s), wall | '
    'wall per core at 16 |\n|---|---|---|---|---|\n'
    '| folder, reduced decode | 240 | 230 | 3100 | 194 |\n'
  )
  text = train_matrix.render(
    tmp_path, 'ostrack_256_ce', str(tmp_path / 'orig.txt'), str(tmp_path / 'data.txt')
  )
  assert (tmp_path / 'train_matrix.md').read_text().strip() == text.strip()
  assert '| train | plain | bfloat16 | 32 | 35.30 | 907 |' in text
  assert '| train | fused_cudnn | bfloat16 | 128 | X |' in text
  assert '3.48x the original' in text  # 122.9 / 35.3
  assert '3100 pairs/s with 16 workers; feeding 907 samples/s takes 3.8 cores' in text
  assert '| plain | bfloat16 | 32 | 20 | 10.5000 | +0.5000 |' in text
  assert '18,000,000 samples' in text and '5.5 h on one device' in text

"""Training-pair throughput of the data pipeline (samples/s) from JPEG folders and from packs.

  python benchmarks/data_speed.py --sequences ../shared/sequences [--batches 12]
  python benchmarks/data_speed.py --root /data/GOT-10k   # an existing GOT-10k tree (train/)
  python benchmarks/data_speed.py --index_sequences 2000  # index build (checks on/off), cache

``--sequences`` lays out a folder of sequences (frames + groundtruth.txt each) as a GOT-10k
tree in a temporary folder (symlinks, no copies), packs it, and measures the OSTrack-256
training pipeline (template 128, search 256, jitter, augmentation) with grain:

* main process, 1 thread (num_workers=0): pairs per CPU-second (the cost per pair on one
  core, insensitive to other load) and per wall-clock second;
* num_workers = 1, 2, ..., all cores (one reader thread each), batches of --batch_size;

for folder input (reduced-resolution decode on and off) and for the ArrayRecord pack. Each
figure is the median of --repeats timed runs of --batches batches after one warm-up batch.
Prints a table; paste it into benchmarks/RESULTS.md with the hardware line it prints.
"""

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import cv2

from ostrack_jax.configs import get_config
from ostrack_jax.data import pack, pipeline, sampler as sampler_lib, sources
from ostrack_jax.data.packed import PackedSource


def layout_got10k(sequences_dir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """GOT-10k tree out/train/<seq>/ with symlinked frames and a copied groundtruth.txt."""
  names = []
  for seq in sorted(p for p in sequences_dir.iterdir() if (p / 'groundtruth.txt').exists()):
    d = out / 'train' / seq.name
    d.mkdir(parents=True)
    for f in seq.iterdir():
      if f.suffix.lower() == '.jpg':
        os.symlink(f.resolve(), d / f.name)
    (d / 'groundtruth.txt').write_text((seq / 'groundtruth.txt').read_text())
    names.append(seq.name)
  if not names:
    raise SystemExit(f'no sequence folders with groundtruth.txt in {sequences_dir}')
  (out / 'train' / 'list.txt').write_text('\n'.join(names) + '\n')
  return out


def measure(config, *, batch_size: int, num_workers: int, batches: int, repeats: int, source):
  """Median (wall-clock samples/s, samples per CPU-second of this process) over ``repeats``.

  A fresh iterator each run; the first batch (worker start-up) is not timed. The CPU figure
  is meaningful for num_workers=0 (everything runs on this process's single thread) and is
  robust to other processes competing for the cores.
  """
  rates, cpu_rates = [], []
  for r in range(repeats):
    config.data.seed = 1000 + r  # different pairs per repeat
    smp = sampler_lib.make_sampler(config, sources=[source])
    it = pipeline.make_iterator(
      smp, num_samples=10**6, batch_size=batch_size, num_workers=num_workers, num_threads=1
    )
    next(it)  # worker start-up and warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
      next(it)
    rates.append(batches * batch_size / (time.perf_counter() - t0))
    cpu_rates.append(batches * batch_size / (time.process_time() - c0))
    it.close()
  return statistics.median(rates), statistics.median(cpu_rates)


def decode_rate(source, repeats: int, count: int = 100) -> float:
  """Reference: pairs/s if a pair cost only two full-size cv2.imdecode calls (1 core)."""
  import numpy as np

  blobs = [
    np.frombuffer(source.frame(s, f).data, np.uint8)
    for s in range(len(source))
    for f in range(0, len(source.sequences[s].boxes), 7)
  ]
  blobs = (blobs * (count // len(blobs) + 1))[:count]
  rates = []
  for _ in range(repeats):
    t0 = time.process_time()
    for b in blobs:
      cv2.imdecode(b, cv2.IMREAD_COLOR)
    rates.append(count / 2 / (time.process_time() - t0))
  return statistics.median(rates)


def write_index_layout(root: pathlib.Path, num_sequences: int, num_frames: int) -> pathlib.Path:
  """A GOT-10k tree of ``num_sequences`` x ``num_frames`` small JPEGs (one 48x32 image's bytes)
  with groundtruth.txt, absence.label, cover.label and meta_info.ini: what the index reads."""
  import numpy as np

  img = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
  data = cv2.imencode('.jpg', img)[1].tobytes()
  names = []
  for s in range(num_sequences):
    name = f'GOT-10k_Train_{s + 1:06d}'
    d = root / 'train' / name
    d.mkdir(parents=True)
    for i in range(num_frames):
      (d / f'{i + 1:08d}.jpg').write_bytes(data)
    (d / 'groundtruth.txt').write_text(''.join(f'{5 + i % 3},4,20,16\n' for i in range(num_frames)))
    (d / 'absence.label').write_text('0\n' * num_frames)
    (d / 'cover.label').write_text('8\n' * num_frames)
    (d / 'meta_info.ini').write_text('[METAINFO]\nresolution: (48, 32)\n')
    names.append(name)
  (root / 'train' / 'list.txt').write_text('\n'.join(names) + '\n')
  return root


def index_speed(num_sequences: int, repeats: int, num_frames: int = 30) -> None:
  """Times the GOT-10k index build (parse every annotation, list every folder; with and without
  the frame-file check) against loading the cache: medians of ``repeats`` (CPU seconds of this
  process, insensitive to other load, and wall seconds)."""
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    root = write_index_layout(tmp / 'got10k', num_sequences, num_frames)
    modes = (
      ('build, frame files not checked', False, None),
      ('build, frame files checked (default)', True, None),
      ('from the cache', True, tmp / 'cache'),
    )
    sources.open_source('got10k_train_full', root, cache_dir=tmp / 'cache')  # warm-up, cache
    times = {label: ([], []) for label, _, _ in modes}
    for _ in range(repeats):  # interleaved, so that drifting load hits every mode alike
      for label, verify, cache in modes:
        t0, c0 = time.perf_counter(), time.process_time()
        src = sources.open_source('got10k_train_full', root, cache_dir=cache, verify_frames=verify)
        times[label][0].append(time.process_time() - c0)
        times[label][1].append(time.perf_counter() - t0)
    rows = [(k, statistics.median(c), statistics.median(w)) for k, (c, w) in times.items()]
    print(
      f'index of {len(src)} GOT-10k sequences x {num_frames} frames, median of {repeats} '
      f'(load average at the end: {os.getloadavg()[0]:.1f})'
    )
    print('| index | CPU s | wall s |\n|---|---|---|')
    for label, c, w in rows:
      print(f'| {label} | {c:.2f} | {w:.2f} |')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--sequences', help='folder of sequences (frames + groundtruth.txt)')
  parser.add_argument('--root', help='an existing GOT-10k root (uses its train split)')
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--batches', type=int, default=12)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument(
    '--workers', default='', help='comma-separated worker counts (default: 1, 2, all cores)'
  )
  parser.add_argument(
    '--index_sequences',
    type=int,
    default=0,
    help='only time the index build for this many GOT-10k-layout sequences of 30 frames',
  )
  args = parser.parse_args()
  if args.index_sequences:
    index_speed(args.index_sequences, args.repeats)
    return
  if not (args.sequences or args.root):
    parser.error('give --sequences or --root')
  cores = os.cpu_count() or 1
  cv2.setNumThreads(1)  # the main-process figure is one core (workers set this themselves)
  workers = (
    [int(w) for w in args.workers.split(',')] if args.workers else sorted({1, min(2, cores), cores})
  )
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    root = (
      layout_got10k(pathlib.Path(args.sequences), tmp / 'got10k')
      if args.sequences
      else pathlib.Path(args.root)
    )
    folder_src = sources.open_source('got10k_train_full', root, cache_dir=None)
    print(folder_src.report.summary())
    t0 = time.perf_counter()
    pack.pack_source(folder_src, tmp / 'packs' / 'got10k_train_full', progress=False)
    print(f'packed in {time.perf_counter() - t0:.1f} s')
    packed_src = PackedSource(tmp / 'packs' / 'got10k_train_full')
    sizes = {s.image_size for s in folder_src.sequences}
    config = get_config('ostrack_256_ce')
    config.data.samples_per_epoch = 10**6
    config.data.train_datasets = ('got10k_train_full',)
    config.data.train_ratios = (1.0,)
    rows = []
    ref = decode_rate(folder_src, args.repeats)
    for label, src, reduced in (
      ('folder, reduced decode', folder_src, True),
      ('folder, full decode', folder_src, False),
      ('pack, reduced decode', packed_src, True),
    ):
      config.data.reduced_decode = reduced
      rate0, cpu0 = measure(
        config,
        batch_size=args.batch_size,
        num_workers=0,
        batches=args.batches,
        repeats=args.repeats,
        source=src,
      )
      row = [label, cpu0, rate0]
      for w in workers:
        row.append(
          measure(
            config,
            batch_size=args.batch_size,
            num_workers=w,
            batches=args.batches,
            repeats=args.repeats,
            source=src,
          )[0]
        )
      rows.append(row)
      print(f'  {label}: ' + ', '.join(f'{v:.0f}' for v in row[1:]), flush=True)
  print()
  print(
    f'hardware: {platform.processor() or platform.machine()}, {cores} cores '
    f'(os.cpu_count), Python {platform.python_version()}; frames {sorted(sizes)}; '
    f'batch {args.batch_size}, median of {args.repeats} x {args.batches} batches'
  )
  header = (
    ['input', 'per CPU-second (1 thread)', 'main process, wall']
    + [f'{w} worker(s), wall' for w in workers]
    + [f'wall per core at {workers[-1]}']
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print(
      f'| {row[0]} | '
      + ' | '.join(f'{v:.0f}' for v in row[1:])
      + f' | {row[-1] / workers[-1]:.0f} |'
    )
  print(
    f'(pairs/s; reference: two bare full-size cv2.imdecode calls per pair give '
    f'{ref:.0f} pairs per CPU-second; load average at the end: {os.getloadavg()[0]:.1f})'
  )


if __name__ == '__main__':
  main()

"""Compare trackers: one table and one set of plots over the result folders of several trackers.

What ``python -m ostrack_jax.compare`` runs, and what a notebook calls
(``ostrack_jax.compare_trackers``). Each results folder holds one tracker's raw results on one
benchmark in the benchmark's official layout (ours from eval.py, or another tracker's published
raw results): GOT-10k ``<seq>/<seq>_001.txt``; LaSOT, TrackingNet, OTB and folder datasets
``<seq>.txt``; ``x,y,w,h`` per frame, comma, tab, space or semicolon separated, floats or
integers (``ostrack_jax.tracking.results``). Time files (``_time.txt``) are optional here; one
that exists must be complete, as eval.py requires.

* Every tracker is scored on the same sequences: by default those every tracker has complete
  and undamaged results for (the checks of eval.py's own result files,
  ``ResultWriter.check``: one line of finite numbers per frame), whose ground truth can be
  scored; the others are listed per tracker with the reason (missing, damaged, no metrics) and
  per dataset (unreadable annotation, first frame only, NaN box). ``require_all`` turns any of
  them into an error naming the tracker, the sequence and the reason.
* A row is eval.py's computation over that set (``report.compute_metrics`` on the tracker's
  folder: GOT-10k AO / SR pooled over frames as the GOT-10k toolkit; AUC, OP50, OP75, P@20,
  NP@0.2 as pytracking's analysis), so a tracker scored on every sequence has the numbers
  eval.py prints for its folder alone. Rows are sorted by the benchmark's main metric: AO,
  then SR0.5, SR0.75 (GOT-10k); AUC, then P@20, NP@0.2 (the others).
* Plots (one curve per tracker, a tracker keeps its colour in every plot, each legend sorted by
  its plot's number as the toolkits draw them): success (AUC), precision (P@20), normalized
  precision (NP@0.2); for GOT-10k also the toolkit's success plot (AO in the legend).
* Attributes: per-sequence labels given in a file (:mod:`attribute_labels`: a table with a
  header, or the LaSOT toolkit's ``annos/att`` folder) add one table and one set of plots per
  attribute, over the scored sequences that have it.

Bad input (an unknown dataset, a results folder that is missing, not a folder, empty or in
another layout, an output that cannot be written, a malformed attribute file) raises
:class:`ostrack_jax.common.errors.InputError` naming it, before any scoring; every bad folder is named
in the one message.
"""

import dataclasses
import json
import os
import pathlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np

from ostrack_jax.common.errors import InputError
from ostrack_jax.common.fileio import atomic_write_text, check_writable
from ostrack_jax.datasets.core import DatasetError
from ostrack_jax.tracking import attribute_labels, eval_sequences, metrics, report, results

DATASET_KEY = '(dataset)'  # left_out key of the sequences no tracker can be scored on
SORT_KEYS = {'got10k': ('AO', 'SR0.5', 'SR0.75'), 'other': ('AUC', 'P@20', 'NP@0.2')}
_SHOWN = 20  # left-out sequences printed per tracker (all of them are in table.json)


class ResultFolder(results.ResultWriter):
  """One tracker's results folder, read only: eval.py's checks (``ResultWriter.check``), except
  that a sequence without a time file is judged on its box file alone (published raw results
  of other trackers often have none). Each sequence is checked once (the folder is not written
  while a comparison reads it; the check parses the whole file, the slow part of scoring)."""

  def __init__(self, out_dir: os.PathLike, layout: str):
    super().__init__(out_dir, layout)
    self._checked: Dict[Tuple[str, int], Optional[str]] = {}

  def check(self, name: str, num_frames: int) -> Optional[str]:
    key = (name, num_frames)
    if key not in self._checked:
      self._checked[key] = self._check(name, num_frames)
    return self._checked[key]

  def _check(self, name: str, num_frames: int) -> Optional[str]:
    box_path, time_path = self.paths(name)
    if time_path.exists():
      return super().check(name, num_frames)
    try:
      results.read_numbers(box_path, 4, num_frames)
    except results.ResultFileError as e:
      return str(e)
    return None


class AttributeTable(TypedDict):
  """One attribute's table in :class:`Comparison`: its title, the scored sequences that have
  it, the rows (as ``Comparison.rows``) over them."""

  title: str
  sequences: List[str]
  rows: List[Tuple[str, Dict[str, float]]]


@dataclasses.dataclass
class Comparison:
  """The outcome of :func:`compare_trackers`.

  rows: ``[(tracker, {metric: value in %})]``, best first (see ``sort_keys``); ``columns`` the
    metrics in table order.
  folders: tracker -> its results folder.
  sequences: the scored sequences (the same for every tracker).
  left_out: tracker (or ``DATASET_KEY``) -> {sequence: reason}: what was not scored, and why.
  attributes: attribute -> ``{'title', 'sequences', 'rows'}`` (rows as ``rows``).
  notes: what the numbers do not include (GOT-10k repetitions after the first run).
  per_sequence: tracker -> sequence -> its row (eval.py's per-sequence table).
  text: the printed report; files: what was written under ``output`` (None: nothing).
  """

  dataset: str
  columns: Tuple[str, ...]
  sort_keys: Tuple[str, ...]
  rows: List[Tuple[str, Dict[str, float]]]
  folders: Dict[str, str]
  sequences: List[str]
  left_out: Dict[str, Dict[str, str]]
  attributes: Dict[str, AttributeTable]
  notes: List[str] = dataclasses.field(default_factory=list)
  per_sequence: Dict[str, Dict[str, Dict[str, float]]] = dataclasses.field(default_factory=dict)
  text: str = ''
  output: Optional[pathlib.Path] = None
  files: List[pathlib.Path] = dataclasses.field(default_factory=list)

  def to_json(self) -> Dict[str, object]:
    """What ``table.json`` holds."""
    return {
      'dataset': self.dataset,
      'columns': list(self.columns),
      'sorted_by': list(self.sort_keys),
      'sequences': self.sequences,
      'trackers': [
        {'rank': i + 1, 'name': n, 'folder': self.folders[n], 'metrics': m}
        for i, (n, m) in enumerate(self.rows)
      ],
      'left_out': self.left_out,
      'notes': self.notes,
      'per_sequence': self.per_sequence,
      'attributes': {
        a: {
          'title': v['title'],
          'sequences': v['sequences'],
          'trackers': [{'name': n, 'metrics': m} for n, m in v['rows']],
        }
        for a, v in self.attributes.items()
      },
    }


# ------------------------------------------------------------------------------ input checks
def parse_results(
  specs: Union[Mapping[str, os.PathLike], Sequence[str]],
) -> Dict[str, pathlib.Path]:
  """Tracker name -> folder from ``{name: folder}`` or ``['NAME=FOLDER' | 'FOLDER', ...]`` (a
  bare folder is named after itself). A name given twice, or one folder under two names, raises
  :class:`InputError`."""
  if isinstance(specs, Mapping):
    pairs = [(str(n), pathlib.Path(f)) for n, f in specs.items()]
  else:
    pairs = []
    for spec in specs:
      spec = str(spec)
      name, eq, folder_text = spec.partition('=')
      if not eq or os.path.isdir(spec):  # a bare folder (even one whose name holds '=')
        path = pathlib.Path(spec)
        name, folder_text = path.resolve().name if path.name in ('', '.', '..') else path.name, spec
      if not name or not folder_text:
        raise InputError(f'--results {spec!r}: expected NAME=FOLDER or FOLDER')
      pairs.append((name, pathlib.Path(folder_text)))
  if not pairs:
    raise InputError('--results: no results folder given')
  out: Dict[str, pathlib.Path] = {}
  seen: Dict[pathlib.Path, str] = {}
  for name, folder in pairs:
    if name in out:
      raise InputError(
        f'--results: the name {name!r} is given twice ({out[name]} and {folder}); name them '
        'NAME=FOLDER'
      )
    key = folder.resolve()
    if key in seen:
      raise InputError(f'--results: {folder} is given twice (as {seen[key]!r} and {name!r})')
    out[name], seen[key] = folder, name
  return out


def folder_problems(folders: Mapping[str, pathlib.Path]) -> Dict[str, str]:
  """Tracker name -> what is wrong with its folder (missing, not a folder, unreadable, empty),
  for the bad ones."""
  bad = {}
  for name, folder in folders.items():
    if not folder.exists():
      bad[name] = f'{name}={folder}: no such folder'
    elif not folder.is_dir():
      bad[name] = f'{name}={folder}: not a folder'
    else:
      try:
        empty = not any(not p.name.startswith('.') for p in folder.iterdir())
      except OSError as e:
        bad[name] = f'{name}={folder}: unreadable ({e.strerror})'
        continue
      if empty:
        bad[name] = f'{name}={folder}: empty'
  return bad


def check_output(output: os.PathLike) -> pathlib.Path:
  """``output`` as a Path if it is (or can be made as) a writable folder, else
  :class:`InputError` naming it (:func:`ostrack_jax.common.fileio.check_writable`: a real write
  probe, as every command's output check); nothing is created here."""
  check_writable(output, f'--output {output}')
  return pathlib.Path(output)


def layout_problems(
  folders: Mapping[str, pathlib.Path], names: Sequence[str], layout: str, dataset: str
) -> Dict[str, str]:
  """Tracker name -> what is wrong, for every folder that holds no result file of ``layout``
  for any of the sequences ``names`` (results in another layout, or of another benchmark)."""
  expected = (
    '<seq>/<seq>_001.txt (the GOT-10k layout)' if layout == 'got10k' else f'<seq>.txt ({layout})'
  )
  bad = {}
  for name, folder in folders.items():
    view = ResultFolder(folder, layout)
    if any(view.has_files(n) for n in names):
      continue
    entries = sorted(p.name + ('/' if p.is_dir() else '') for p in folder.iterdir())
    shown = ', '.join(entries[:3]) + (f', ... ({len(entries)} entries)' if len(entries) > 3 else '')
    bad[name] = (
      f'{name}={folder}: wrong layout: no result file {expected} for any of the {len(names)} '
      f'sequences of {dataset} (it holds {shown})'
    )
  return bad


# ------------------------------------------------------------------------------ the comparison
def compare_trackers(
  dataset: str,
  data_dir: os.PathLike,
  results_folders: Union[Mapping[str, os.PathLike], Sequence[str]],
  *,
  output: Optional[os.PathLike] = None,
  sequences: Optional[Sequence[str]] = None,
  split: Optional[str] = None,
  require_all: bool = False,
  attributes: Optional[os.PathLike] = None,
  plots: bool = True,
) -> Comparison:
  """Scores several trackers' result folders on the same sequences of ``dataset``.

  Args:
    dataset: one of eval.py's datasets (``registry.names('eval')``) with full ground truth
      (not a test split).
    data_dir: the benchmark root in its native layout.
    results_folders: ``{name: folder}``, or ``['NAME=FOLDER' | 'FOLDER', ...]`` as the command
      line takes them (a bare folder is named after itself); each in the dataset's official
      result layout.
    output: the report folder (``table.json``, ``table.txt``, the plots; ``attributes/<name>/``
      per attribute), made if needed; None writes nothing.
    sequences / split: only these sequences / another split folder (as eval.py).
    require_all: a sequence left out for any tracker is an error instead of a note.
    attributes: per-sequence attribute labels (:func:`attribute_labels.read_attributes`).
    plots: write the PNG plots (with ``output``).
  Returns:
    the :class:`Comparison` (``rows`` is the table, best first).
  Raises:
    InputError (before any scoring) for bad input, naming it; with ``require_all``, for the
    first tracker with an unusable sequence.
  """
  eval_sequences.check_dataset_name(dataset)
  folders = parse_results(results_folders)
  bad = folder_problems(folders)
  out_dir = check_output(output) if output is not None else None
  if not data_dir:
    raise InputError('--data-dir is required: the benchmark root with its ground truth')
  if attributes is not None and not os.path.exists(attributes):
    raise InputError(f'--attributes {attributes}: no such file or folder')
  layout = results.layout_for_dataset(dataset)
  left_out: Dict[str, Dict[str, str]] = {DATASET_KEY: {}}
  scorable, names = _read_benchmark(dataset, data_dir, sequences, split, left_out[DATASET_KEY])
  _check_folders(folders, bad, names, layout, dataset)
  labels, titles = _read_labels(attributes, scorable)

  views = {name: ResultFolder(folder, layout) for name, folder in folders.items()}
  common, scored = _score(views, scorable, left_out, layout, dataset, require_all)
  sort_keys = SORT_KEYS['got10k' if layout == 'got10k' else 'other']
  order = _sorted_names(scored, sort_keys)
  tables, subsets = _attribute_tables(labels, titles, common, scored, order, layout, sort_keys)
  comparison = Comparison(
    dataset=dataset,
    columns=report.summary_columns(layout),
    sort_keys=sort_keys,
    rows=[(n, scored[n]['summary']) for n in order],
    folders={n: str(folders[n]) for n in order},
    sequences=[s.name for s in common],
    left_out={k: v for k, v in left_out.items() if v},
    attributes=tables,
    notes=_repetition_notes(views, common) if layout == 'got10k' else [],
    per_sequence={n: dict(scored[n]['rows']) for n in order},
  )
  comparison.text = format_comparison(comparison)
  if out_dir is not None:
    comparison.output = out_dir
    comparison.files = _write(comparison, out_dir, scored, order, subsets, layout, plots)
  return comparison


def _read_benchmark(dataset, data_dir, sequences, split, left_out: Dict[str, str]):
  """(the sequences of ``dataset`` that can be scored (:func:`_scorable`), the names of all
  its sequences, readable or not); ``InputError`` when none can be scored."""
  load_errors: List = []
  seqs = eval_sequences.load_dataset(dataset, data_dir, sequences, split, errors=load_errors)
  scorable = _scorable(seqs, load_errors, left_out)
  if not scorable:
    raise InputError(
      f'{dataset} in {data_dir}: no sequence with full ground truth to score'
      + (' (a test split: its results are scored by the benchmark server)' if seqs else '')
    )
  return scorable, [s.name for s in seqs] + [n for n, _ in load_errors]


def _check_folders(folders, bad: Dict[str, str], names, layout: str, dataset: str) -> None:
  """Raises ``InputError`` naming every bad results folder, in the order given: those of
  ``bad`` (:func:`folder_problems`) and those without a result file of ``layout`` for any
  of the sequences ``names`` (:func:`layout_problems`)."""
  good = {n: f for n, f in folders.items() if n not in bad}
  bad = {**bad, **layout_problems(good, names, layout, dataset)}
  if bad:  # every bad folder in one line, in the order given
    raise InputError(f'--results: {"; ".join(bad[n] for n in folders if n in bad)}')


def _attribute_tables(labels, titles, common, scored, order, layout: str, sort_keys):
  """(attribute -> its table for ``Comparison.attributes``, attribute -> the rows of
  ``common`` that have it), for each attribute of ``titles`` that a scored sequence has."""
  tables, subsets = {}, {}
  for attribute, title in titles.items():
    idx = [i for i, s in enumerate(common) if labels[s.name][attribute]]
    if idx:  # an attribute no scored sequence has: no table
      subsets[attribute] = idx
      rows = [(n, _subset_summary(scored[n], idx, layout)) for n in order]
      tables[attribute] = {
        'title': title,
        'sequences': [common[i].name for i in idx],
        'rows': sorted(rows, key=lambda t: _rank_key(t[1], sort_keys)),
      }
  return tables, subsets


def _scorable(seqs, load_errors, left_out: Dict[str, str]) -> List:
  """The sequences with full ground truth that the metrics accept; the others go to
  ``left_out`` (sequence -> reason)."""
  for name, message in load_errors:
    left_out[name] = f'unreadable: {message}'
  scorable = []
  for seq in seqs:
    if not seq.has_full_gt:
      left_out[seq.name] = 'no ground truth to score (first box only)'
      continue
    try:
      seq.check_ground_truth()
    except DatasetError as e:
      left_out[seq.name] = f'no metrics: {e}'
      continue
    scorable.append(seq)
  return scorable


def _score(views, scorable, left_out, layout: str, dataset: str, require_all: bool):
  """(the sequences every tracker is scored on, tracker -> ``report.compute_metrics`` over
  them); the sequences left out are added to ``left_out[tracker]`` with the reason."""
  for name, view in views.items():
    left_out[name] = {}
    for seq in scorable:
      problem = view.check(seq.name, len(seq))
      if problem is not None:
        kind = 'damaged' if view.has_files(seq.name) else 'missing'
        left_out[name][seq.name] = f'{kind}: {problem}'
  if require_all:
    _require_all(left_out)
  common = [s for s in scorable if not any(s.name in left_out[n] for n in views)]
  while True:  # a sequence one tracker's results cannot be scored on is left out for all
    scored = {
      name: report.compute_metrics(common, view, layout, dataset) for name, view in views.items()
    }
    problems = {(n, s): m for n, r in scored.items() for s, m in r['problems'].items()}
    if not problems:
      break
    for (name, seq_name), message in problems.items():
      left_out[name][seq_name] = message.replace(f'sequence {seq_name!r}: ', '', 1)
    if require_all:
      _require_all(left_out)
    dropped = {seq_name for _, seq_name in problems}
    common = [s for s in common if s.name not in dropped]
  if not common:
    counts = ', '.join(f'{n}: {len(scorable) - len(left_out[n])}' for n in views)
    raise InputError(
      f'no sequence of {dataset} has usable results from every tracker (sequences with '
      f'usable results of the {len(scorable)}: {counts})'
    )
  assert all(len(r['rows']) == len(common) for r in scored.values())
  return common, scored


def _repetition_notes(views, common) -> List[str]:
  """A note per tracker whose GOT-10k folder holds further runs (``<seq>_002.txt``: the
  toolkit's repetitions of a non-deterministic tracker, which its report pools): only the
  first run, ``_001``, is scored here."""
  notes = []
  for name, view in views.items():
    more = [s.name for s in common if (view.out_dir / s.name / f'{s.name}_002.txt').is_file()]
    if more:
      notes.append(
        f'tracker {name!r}: {len(more)} sequence(s) have more runs ({more[0]}_002.txt ...): '
        'only the first (_001) is scored; the GOT-10k toolkit pools all runs'
      )
  return notes


def _subset_curves(curves: metrics.Curves, idx: Sequence[int]) -> metrics.Curves:
  return metrics.Curves(curves.success[idx], curves.precision[idx], curves.norm_precision[idx])


def _subset_summary(scored, idx: Sequence[int], layout: str) -> Dict[str, float]:
  """The summary over the rows ``idx`` of one tracker's ``compute_metrics`` result: what
  ``compute_metrics`` gives on those sequences alone (the same curves and pooled IoUs)."""
  frame_ious = [scored['frame_ious'][i] for i in idx] if scored['frame_ious'] else []
  return report.summarize(_subset_curves(scored['curves'], idx), frame_ious, layout)


def _read_labels(attributes, scorable):
  if attributes is None:
    return {}, {}
  labels, titles = attribute_labels.read_attributes(attributes)
  missing = [s.name for s in scorable if s.name not in labels]
  if missing:
    raise InputError(
      f'--attributes {attributes}: no labels for sequence {missing[0]!r}'
      + (
        f' ({len(missing)} of the {len(scorable)} sequences have none)' if len(missing) > 1 else ''
      )
    )
  return labels, titles


def _require_all(left_out: Dict[str, Dict[str, str]]) -> None:
  for name, seqs in left_out.items():
    if name != DATASET_KEY and seqs:
      seq, reason = next(iter(seqs.items()))
      more = f' (and {len(seqs) - 1} more sequence(s))' if len(seqs) > 1 else ''
      raise InputError(f'--require-all: tracker {name!r}: sequence {seq!r}: {reason}{more}')


def _rank_key(summary: Mapping[str, float], sort_keys: Sequence[str]) -> Tuple[float, ...]:
  """Best first by ``sort_keys``; a NaN (nothing to pool, e.g. every frame invisible) last."""
  return tuple(-v if np.isfinite(v) else np.inf for v in (summary[k] for k in sort_keys))


def _sorted_names(scored, sort_keys) -> List[str]:
  """Tracker names, best first by ``sort_keys`` (then in the order given)."""
  return sorted(scored, key=lambda n: _rank_key(scored[n]['summary'], sort_keys))


def format_comparison(c: Comparison, shown: Optional[int] = _SHOWN) -> str:
  """The printed report: the table, the sequences left out per tracker, one table per
  attribute. ``shown`` caps the left-out sequences listed per tracker (None: all)."""
  parts = [metrics.format_table(c.rows, c.columns, title=f'{c.dataset} ({len(c.sequences)} seq)')]
  parts[-1] += f'\nsorted by {", ".join(c.sort_keys)}; every tracker on the same sequences'
  if c.notes:
    parts.append('\n'.join(f'note: {n}' for n in c.notes))
  if c.left_out:
    count = len(set().union(*c.left_out.values()))
    lines = [f'left out (not scored for any tracker, {count} sequence(s) in all):']
    for name, seqs in c.left_out.items():
      who = 'dataset' if name == DATASET_KEY else f'tracker {name!r}'
      lines.append(f'  {who}: {len(seqs)} sequence(s)')
      items = list(seqs.items())
      for seq, reason in items[:shown] if shown is not None else items:
        lines.append(f'    {seq}: {reason}')
      if shown is not None and len(items) > shown:
        lines.append(f'    ... and {len(items) - shown} more (table.txt, table.json)')
    parts.append('\n'.join(lines))
  for a in c.attributes.values():
    title = f'{a["title"]} ({len(a["sequences"])} seq)'
    parts.append(metrics.format_table(a['rows'], c.columns, title=title))
  return '\n\n'.join(parts)


def _write(c: Comparison, out_dir, scored, order, subsets, layout, plots) -> List[pathlib.Path]:
  out_dir.mkdir(parents=True, exist_ok=True)
  files = [out_dir / 'table.txt', out_dir / 'table.json']
  atomic_write_text(files[0], format_comparison(c, shown=None) + '\n')
  atomic_write_text(files[1], json.dumps(c.to_json(), indent=1) + '\n')
  if not plots:
    return files
  plot_sets = [(out_dir, list(range(len(c.sequences))), '')]
  for attribute, idx in subsets.items():
    title = f' - {c.attributes[attribute]["title"]} ({len(idx)} seq)'
    plot_sets.append((out_dir / 'attributes' / attribute, idx, title))
  for folder, idx, suffix in plot_sets:
    folder.mkdir(parents=True, exist_ok=True)
    entries = [(name, _subset_curves(scored[name]['curves'], idx)) for name in order]
    files += report.save_overlaid_plots(entries, folder, suffix)
    if layout == 'got10k':
      got = [(n, [scored[n]['frame_ious'][i] for i in idx]) for n in order]
      files.append(
        report.save_got10k_success_plot(
          got, folder / 'got10k_success_plot.png', 'Success plots on GOT-10k' + suffix
        )
      )
  return files

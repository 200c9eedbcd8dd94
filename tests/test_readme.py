"""The README works verbatim: every shell command in it refers to something that exists.

Doc test over README.md's fenced ``bash`` blocks: each command is split out (``&&``, line
continuations, environment assignments and launchers such as ``srun`` removed) and checked:

* the test command equals the one `.ci/run` runs, exactly;
* ``pip install`` names extras that pyproject.toml defines;
* ``python SCRIPT`` / ``python -m MODULE``: the script or module exists, every ``--flag`` is
  one its ``--help`` lists (run for real), repository paths (``configs/...``) exist; train.py
  and eval.py arguments are parsed by their own parsers, and ``--config.a.b=v`` overrides are
  applied to the named preset, so an unknown config key fails here;
* ``pytest`` options and markers exist.

The README's ``python`` blocks (the tracking snippets) are executed against a small model file
and an exported tracker made here, on generated frames.
"""

import functools
import importlib.util
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / 'README.md'
TEST_COMMAND = 'python -m pytest -n 2 tests'

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def _blocks(language):
  text = README.read_text()
  return re.findall(r'^```' + language + r'\n(.*?)^```', text, flags=re.S | re.M)


def _commands():
  """(command tokens, source line) for every command in the bash blocks."""
  out = []
  for block in _blocks('bash'):
    text = block.replace('\\\n', ' ')
    for line in text.splitlines():
      line = line.split(' #')[0].strip()
      if not line or line.startswith('#'):
        continue
      for part in line.split('&&'):
        tokens = shlex.split(part)
        while tokens and re.match(r'^[A-Z_][A-Z0-9_]*=', tokens[0]):  # FOO=bar cmd
          tokens = tokens[1:]
        if tokens and tokens[0] in ('srun', 'mpirun'):  # launcher options, then the command
          tokens = tokens[tokens.index('python') :]
        out.append((tokens, part.strip()))
  return out


COMMANDS = _commands()


def _ci_test_command():
  lines = [line.strip() for line in (REPO / '.ci' / 'run').read_text().splitlines()]
  return [line for line in lines if line.startswith('python -m pytest')]


def test_readme_has_the_two_setup_commands_first():
  first = _blocks('bash')[0].strip().splitlines()
  assert first[0].startswith('pip install -e ".[dev]" && python train.py && python eval.py')
  assert first[1] == TEST_COMMAND


def test_readme_test_command_is_the_ci_command():
  """CI runs the README's command; it may only add the report of the slowest tests."""
  ci = _ci_test_command()
  assert len(ci) == 1 and re.fullmatch(r'(.*?)( --durations=\d+)?', ci[0]).group(1) == TEST_COMMAND
  assert '--durations=15' in ci[0]
  assert any(c == TEST_COMMAND for _, c in COMMANDS)


@functools.lru_cache(maxsize=None)
def _help(runner):
  """--help output of a script path or '-m module' (run for real)."""
  args = runner.split(' ')
  out = subprocess.run(
    [sys.executable, *args, '--help'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert out.returncode == 0, f'{runner} --help failed:\n{out.stderr[-2000:]}'
  return out.stdout


def _check_paths(tokens, line):
  for tok in tokens:
    value = tok.split('=', 1)[-1]
    if value.startswith(('configs/', 'benchmarks/', 'examples/', 'tests/')):
      assert (REPO / value).exists(), f'{line}: {value} does not exist in the repository'


def _check_config(rest, line):
  """The command's --config (a preset name or a repository file) with its --config.a.b=v
  overrides applied: an unknown key or a value of the wrong type fails here."""
  from ostrack_jax import configs

  spec = rest[rest.index('--config') + 1] if '--config' in rest else 'tiny_256_ce'
  config = configs.load_config(str(REPO / spec) if spec.endswith('.py') else spec)
  overrides = [t[len('--config.') :] for t in rest if t.startswith('--config.')]
  try:
    configs.apply_overrides(config, overrides)
  except ValueError as e:
    pytest.fail(f'{line}: {e}')


def _check_python(tokens, line):
  args = tokens[1:]
  if args[:2] == ['-m', 'pytest']:
    opts = args[2:]
    assert opts[-1] == 'tests' and (REPO / 'tests').is_dir(), line
    if '-m' in opts:
      marker = opts[opts.index('-m') + 1].replace('not ', '').strip()
      assert f'{marker}:' in (REPO / 'pyproject.toml').read_text(), f'{line}: marker {marker}'
    assert importlib.util.find_spec('xdist') is not None, 'pytest-xdist (-n) is not installed'
    return
  if args[0] == '-m':
    module, rest = args[1], args[2:]
    assert importlib.util.find_spec(module) is not None, f'{line}: no module {module}'
    runner = f'-m {module}'
  else:
    script, rest = args[0], args[1:]
    assert (REPO / script).is_file(), f'{line}: no script {script}'
    runner = script
  _check_paths(rest, line)
  flags = [t.split('=')[0] for t in rest if t.startswith('--') and not t.startswith('--config.')]
  if runner == '-m ostrack_jax.data.pack':  # DATASET positional: a training dataset name
    from ostrack_jax.datasets import registry

    assert rest[0] in registry.names('train'), f'{line}: unknown dataset {rest[0]}'
  help_text = _help(runner)
  for flag in flags:
    assert re.search(re.escape(flag) + r'\b', help_text), f'{line}: {runner} has no {flag}'
  if '--config' in rest or any(t.startswith('--config.') for t in rest):
    _check_config(rest, line)


@pytest.mark.parametrize('tokens,line', COMMANDS, ids=[c for _, c in COMMANDS])
def test_readme_command(tokens, line):
  assert tokens, line
  if tokens[0] == 'pip':
    assert tokens[1:3] == ['install', '-e'], f'{line}: only the editable install is expected'
    extras = re.match(r'\.\[(.*)\]$', tokens[3])
    pyproject = (REPO / 'pyproject.toml').read_text()
    for extra in extras.group(1).split(',') if extras else []:
      assert re.search(rf'^{extra} = \[', pyproject, flags=re.M), f'{line}: no extra {extra}'
    return
  if tokens[0] in ('bash', 'sh') or tokens[0].startswith('.ci/'):  # a repository script
    script = tokens[1] if tokens[0] in ('bash', 'sh') else tokens[0]
    assert (REPO / script).is_file(), f'{line}: no script {script}'
    return
  if tokens[0] in ('git', 'cd'):  # clone / change directory: nothing of ours to check
    return
  assert tokens[0] == 'python', f'{line}: unexpected command {tokens[0]!r}'
  _check_python(tokens, line)


@pytest.mark.slow
def test_readme_python_snippets_run(tmp_path, monkeypatch):
  from ostrack_jax.configs import get_config
  from ostrack_jax.deploy.stablehlo import export_tracker
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  monkeypatch.chdir(tmp_path)
  config = get_config('tiny_256_ce')
  variables = init_variables(config, seed=0)
  save_variables('workdirs/tiny_256_ce/model.msgpack', variables, config)
  snippets = _blocks('python')
  assert len(snippets) >= 2
  if any('load_exported' in s for s in snippets):
    export_tracker(config, variables, 'exported/ostrack_256_ce', platforms=['cpu'])
  rng = np.random.default_rng(0)
  frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
  for snippet in snippets:
    namespace = dict(first_frame=frames[0], frames=frames[1:], x=50.0, y=40.0, w=30.0, h=20.0)
    exec(compile(snippet, 'README.md', 'exec'), namespace)
    boxes = namespace['boxes']
    assert len(boxes) == 2 and all(np.isfinite(b).all() and len(b) == 4 for b in boxes)


def _layout_block() -> str:
  text = (REPO / 'README.md').read_text()
  start = text.index('\n```\nostrack_jax/\n', text.index('Layout. Imports point one way'))
  return text[start + 5 : text.index('\n```', start + 5)]


def test_readme_layout_names_every_module_in_its_room():
  """The README's layout section and the package agree: every module is named under its room."""
  block = _layout_block()
  rooms: dict = {}
  room = ''
  for line in block.splitlines()[1:]:
    m = re.match(r'  (\w+)(/|\.py)\s', line + ' ')
    if m:
      room = m.group(1) if m.group(2) == '/' else ''
      if not room:
        rooms.setdefault('', set()).add(m.group(1) + '.py')
    if room:
      rooms.setdefault(room, set()).update(re.findall(r'\b(\w+\.py)\b', line))
  package = REPO / 'ostrack_jax'
  missing = []
  for path in sorted(package.rglob('*.py')):
    rel = path.relative_to(package)
    if path.name == '__init__.py' or rel.parts[0] == 'configs' and path.name != 'base.py':
      continue  # presets: 'one file per preset'
    where = rel.parts[0] if len(rel.parts) > 1 else ''
    if path.name not in rooms.get(where, set()):
      missing.append(str(rel))
  assert not missing, f'README layout section does not name: {missing}'
  named_rooms = {r for r in rooms if r}
  actual_rooms = {p.name for p in package.iterdir() if (p / '__init__.py').is_file()}
  assert named_rooms == actual_rooms, (named_rooms, actual_rooms)

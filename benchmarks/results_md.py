"""Shared by the benchmark scripts: the host CPU's name and RESULTS.md section replacement."""

import pathlib
import platform
import time

RESULTS = pathlib.Path(__file__).resolve().parent / 'RESULTS.md'


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def write_section(begin: str, end: str, title: str, script: str, argv: str, table: str) -> None:
  """Replaces the section between the ``begin``/``end`` markers of RESULTS.md (or appends it)."""
  text = RESULTS.read_text() if RESULTS.exists() else '# Benchmark results\n'
  section = (
    f'{begin}\n## {title} ({script})\n\n'
    f'Command: `python {script} {argv}`, {time.strftime("%Y-%m-%d")}.\n\n{table}\n{end}'
  )
  if begin in text and end in text:
    text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
  else:
    text = text.rstrip() + '\n\n' + section + '\n'
  RESULTS.write_text(text)

"""Dropping known, harmless log records of third-party libraries for the length of one call.

Used where a library logs on every normal run something that says nothing about the user's
input (orbax on a deliberate handler override, jax2onnx on plugins of libraries that are not
installed): the records that ``drop`` selects are dropped at the named loggers, everything else
they log still shows. Filters on a logger see only the records logged at that logger, so name
the logger that emits the record.
"""

import contextlib
import logging
from typing import Callable, Iterator, Sequence


class _Drop(logging.Filter):
  def __init__(self, drop: Callable[[logging.LogRecord], bool]):
    super().__init__()
    self._drop = drop

  def filter(self, record: logging.LogRecord) -> bool:
    return not self._drop(record)


@contextlib.contextmanager
def dropping(
  logger_names: Sequence[str], drop: Callable[[logging.LogRecord], bool]
) -> Iterator[None]:
  """Within: records of the loggers ``logger_names`` for which ``drop(record)`` is true are
  dropped; the filter is removed on leaving, also on an exception."""
  record_filter = _Drop(drop)
  loggers = [logging.getLogger(name) for name in logger_names]
  for logger in loggers:
    logger.addFilter(record_filter)
  try:
    yield
  finally:
    for logger in loggers:
      logger.removeFilter(record_filter)

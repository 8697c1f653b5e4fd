"""Progress of a long stage: a tqdm bar when stderr is a terminal, else a few log lines.

A logged run (`make demo > log 2>&1`, CI) gets no carriage-return bar text: it gets a log
line when the stage crosses a tenth of its work (at most one per `min_interval_s`) or
`max_interval_s` passed since the last line, so a quick stage prints nothing and a long one
about ten lines. Every progress display of the package goes through `bar`.
"""

import logging as py_logging
import sys
import time
from collections.abc import Callable

import tqdm
from absl import logging


class Bar:
  """One stage's progress; `update`, `set_postfix` and `close` as on a tqdm bar.

  Args:
    total: units of work in the stage (None: unknown; log lines by time only).
    desc: what the stage is, the bar's label and the log lines' prefix.
    initial: units already done (a resumed epoch).
    enabled: False shows nothing at all.
    terminal: draw a bar (True) or write log lines (False); None: whether stderr is a
      terminal.
    unit: what one unit is called.
    min_interval_s, max_interval_s: see the module doc.
    clock, log: time source and log function (tests inject their own).
  """

  def __init__(
    self,
    total: int | None,
    desc: str = "",
    *,
    initial: int = 0,
    enabled: bool = True,
    terminal: bool | None = None,
    unit: str = "it",
    min_interval_s: float = 5.0,
    max_interval_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    log: Callable = logging.info,
  ):
    if terminal is None:
      terminal = _stderr_is_terminal()
    self.total, self.desc, self.n, self.unit = total, desc, initial, unit
    self.postfix = ""
    self._clock, self._log = clock, log
    self._min, self._max = min_interval_s, max_interval_s
    self._start = self._last = clock()
    self._tenth = self._tenths(initial)
    self._tqdm = None
    self._lines = enabled and not terminal
    if enabled and terminal:
      self._tqdm = tqdm.tqdm(
        total=total, desc=desc, initial=initial, unit=unit, leave=False, dynamic_ncols=True
      )

  def _tenths(self, n: int) -> int:
    return 10 * n // self.total if self.total else 0

  def update(self, n: int = 1) -> None:
    self.n += n
    if self._tqdm is not None:
      self._tqdm.update(n)
    elif self._lines:
      now, tenth = self._clock(), self._tenths(self.n)
      since = now - self._last
      if (tenth > self._tenth and since >= self._min) or since >= self._max:
        self._tenth, self._last = tenth, now
        self._log("%s", self.line(now))

  def line(self, now: float) -> str:
    """The log line at time `now`: label, count (percent) and elapsed seconds."""
    done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f} %)"
    if not self.total:
      done = f"{self.n} {self.unit}"
    postfix = f", {self.postfix}" if self.postfix else ""
    return f"{self.desc}: {done}, {now - self._start:.0f} s{postfix}"

  def set_postfix(self, **values) -> None:
    self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())
    if self._tqdm is not None:
      self._tqdm.set_postfix(values)

  def close(self) -> None:
    if self._tqdm is not None:
      self._tqdm.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _stderr_is_terminal() -> bool:
  isatty = getattr(sys.stderr, "isatty", None)
  return bool(isatty and isatty())


def bar(total: int | None, desc: str = "", **kwargs) -> Bar:
  """A `Bar` for a stage of `total` units (see `Bar` for the keyword arguments)."""
  return Bar(total, desc, **kwargs)


def _not_orbax_info(record: py_logging.LogRecord) -> bool:
  """Drops orbax's per-checkpoint INFO chatter; keeps its warnings and errors."""
  return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def show_info_logs() -> None:
  """Shows the run's absl INFO lines (its progress and results), from a launch and from the
  Python API alike, without orbax's INFO lines about every checkpoint it writes."""
  py_logging.getLogger("absl").setLevel(py_logging.INFO)
  # On absl's logger and on its handler (the root's), whichever logger orbax writes through.
  for where in (py_logging.getLogger("absl"), logging.get_absl_handler()):
    if _not_orbax_info not in where.filters:
      where.addFilter(_not_orbax_info)

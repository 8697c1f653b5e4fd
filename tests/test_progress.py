"""A stage's progress (ssm_aimc.progress): a bar on a terminal, a few log lines otherwise."""

import logging as py_logging
import sys

from absl import logging as absl_logging

from ssm_aimc import progress


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _logged(total, steps, seconds_per_step, **kwargs):
  """The log lines of a non-terminal bar of `total` units advanced `steps` times, the clock
  moving `seconds_per_step` before each update."""
  clock, lines = _Clock(), []
  bar = progress.bar(
    total, "stage", terminal=False, clock=clock, log=lambda f, *a: lines.append(f % a), **kwargs
  )
  for _ in range(steps):
    clock.now += seconds_per_step
    bar.update()
  bar.close()
  return lines


def test_a_long_stage_logs_about_every_tenth():
  lines = _logged(100, 100, 1.0)  # 100 s: a tenth every 10 s, each >= min_interval_s apart.
  assert len(lines) == 10
  assert lines[0] == "stage: 10/100 it (10 %), 10 s" and lines[-1].startswith("stage: 100/100")


def test_a_quick_stage_logs_nothing_and_a_slow_one_by_time():
  assert _logged(100, 100, 0.01) == []  # 1 s in all: under min_interval_s.
  slow = _logged(1000, 20, 10.0)  # Tenths never reached; a line every max_interval_s.
  assert len(slow) == 6 and slow[0].startswith("stage: 3/1000 it (0 %), 30 s")


def test_postfix_initial_and_disabled():
  clock, lines = _Clock(), []
  bar = progress.bar(
    10,
    "epoch 2/3",
    initial=5,
    terminal=False,
    clock=clock,
    log=lambda f, *a: lines.append(f % a),
    unit="steps",
  )
  bar.set_postfix(loss="0.123")
  clock.now = 40.0
  bar.update()
  assert lines == ["epoch 2/3: 6/10 steps (60 %), 40 s, loss=0.123"]
  assert _logged(10, 10, 100.0, enabled=False) == []


def test_no_bar_text_unless_stderr_is_a_terminal(capsys):
  """Under pytest stderr is not a terminal: the default writes no bar (no carriage
  returns); a terminal bar is tqdm's, on stderr."""
  assert not sys.stderr.isatty()
  bar = progress.bar(5, "quiet")
  for _ in range(5):
    bar.update()
  bar.close()
  with progress.bar(5, "drawn", terminal=True) as drawn:
    drawn.update(5)
  err = capsys.readouterr().err
  assert "quiet" not in err and "drawn" in err and "\r" in err


def test_info_logs_shown_without_orbax_checkpoint_chatter():
  progress.show_info_logs()
  progress.show_info_logs()  # Idempotent: one filter each, not one per call.
  logger, handler = py_logging.getLogger("absl"), absl_logging.get_absl_handler()
  assert logger.level == py_logging.INFO
  assert sum(f is progress._not_orbax_info for f in logger.filters) == 1
  assert sum(f is progress._not_orbax_info for f in handler.filters) == 1

  def record(level, path):
    return py_logging.LogRecord("absl", level, path, 1, "m", (), None)

  orbax = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert not logger.filter(record(py_logging.INFO, orbax))
  assert logger.filter(record(py_logging.WARNING, orbax))
  assert logger.filter(record(py_logging.INFO, "/ssm_aimc/train.py"))

"""What every claim shares: the verdict words, the Outcome record, a claim's settings read
from its config section, number formats, markdown tables and the figure helpers."""

import dataclasses
import difflib
import os
from collections.abc import Mapping

from ssm_aimc import errors, experiment, figures
from ssm_aimc import workdir as workdir_lib

SUPPORTED, PARTLY, NOT_SUPPORTED = "supported", "partly supported", "not supported"
# Whose way of measuring a claim follows: the QS4D authors' (their code and figures) first,
# this project's own beside it.
AUTHORS, OURS = "the authors' protocol", "our protocol"
PROTOCOLS = (AUTHORS, OURS)
FIGURE = "claim.png"
# Keys of every claim section (ssm_aimc.claims); the others are the claim's own settings.
SHARED_KEYS = ("name", "models_dir", "models")


@dataclasses.dataclass
class Outcome:
  """What one claim measured and what the numbers say.

  Attributes:
    claim: "C1" ... "C5".
    title: short name.
    statement: the paper's claim, in our words.
    rule: how the verdict follows from the numbers.
    verdict: SUPPORTED, PARTLY or NOT_SUPPORTED.
    summary: the measured outcome in a few sentences.
    table: markdown table of the numbers behind it.
    numbers: the same numbers for machines.
    figure: file name of the figure in the claim's workdir.
    protocol: AUTHORS or OURS: whose way of measuring the claim this follows.
  """

  claim: str
  title: str
  statement: str
  rule: str
  verdict: str
  summary: str
  table: str
  numbers: dict
  figure: str = FIGURE
  protocol: str = OURS


def settings(cls, claim: Mapping):
  """The settings dataclass `cls` of a claim from its config section `claim` (the keys
  past SHARED_KEYS). An unknown key is a ConfigError naming the closest valid one, as
  everywhere in a config (ssm_aimc.experiment); every setting must be given."""
  names = [f.name for f in dataclasses.fields(cls)]
  given = {k: v for k, v in claim.items() if k not in SHARED_KEYS}
  for key in given:
    if key not in names:
      close = difflib.get_close_matches(key, names, n=1)
      hint = f"did you mean 'claim.{close[0]}'?" if close else f"valid: {sorted(names)}"
      raise errors.ConfigError(f"Unknown config key 'claim.{key}'; {hint}")
  missing = [n for n in names if n not in given]
  if missing:
    raise errors.ConfigError(f"Claim {claim.get('name')!r} needs claim.{missing[0]}.")
  return cls(**given)


def grade(full: bool, part: bool) -> str:
  """SUPPORTED when the whole rule holds, PARTLY when its weaker part does."""
  return SUPPORTED if full else PARTLY if part else NOT_SUPPORTED


def count(n: int, noun: str) -> str:
  """'1 pair', '3 pairs'."""
  return f"{n} {noun}{'' if n == 1 else 's'}"


def pct(x: float) -> str:
  return f"{100 * x:.2f}"


def times(x: float) -> str:
  return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def chips_text(summary: dict) -> str:
  """ "mean +- std" (percent) of chip accuracies (noise_eval.summary keys)."""
  return f"{pct(summary['analog_accuracy_mean'])} +- {pct(summary['analog_accuracy_std'])}"


def markdown_table(header: list[str], rows: list[list]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def new_figure(cols: int = 1, width: float = 6.0, rows: int = 1):
  """A figure of rows x cols panels of `width` x 4 inches (axes as `Figure.subplots`)."""
  # The object-oriented API: no pyplot state, no backend switch (notebooks keep theirs).
  from matplotlib.figure import Figure  # noqa: PLC0415

  fig = Figure(figsize=(width * cols, 4.0 * rows), layout="constrained" if rows > 1 else None)
  return fig, fig.subplots(rows, cols)


def finish_figure(fig, axes, title: str, workdir: str, grid: str = "both") -> None:
  """Grid on `axes`, `title` over the figure, saved as the claim's figure in `workdir`."""
  for ax in axes:
    ax.grid(alpha=0.3, axis=grid)
  fig.suptitle(title)
  figures.save(fig, os.path.join(workdir, FIGURE), dpi=110)


def log_times_axis(ax) -> None:
  """A log x axis of ratios labelled 1x, 10x, 100x."""
  from matplotlib import ticker  # noqa: PLC0415

  ax.set_xscale("log")
  ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def current_key(stored: dict) -> dict:
  """A stored cache key ({"experiment": to_dict, ...}, `workdir.cached_json`) as this
  version writes it: its experiment read back through `experiment.from_config` (config
  fields added since at their defaults)."""
  out = dict(stored)
  out["experiment"] = experiment.to_dict(experiment.from_config(stored["experiment"]))
  return out


def kept(runs_, path: str, key: dict, compute, stage: str) -> dict:
  """compute()'s dict kept in the JSON file `path` under `key` (`workdir.cached_json`, a
  stored key read back by `current_key`): its time goes into runs_.seconds[stage], and the
  stage into runs_.reused when an earlier process made it (so that the claim's standalone
  time counts it)."""
  kept_before = os.path.exists(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  result = workdir_lib.cached_json(path, key, compute, normalise=current_key)
  runs_.seconds[stage] = result.get("wall_time_s")
  if kept_before:
    runs_.reused.append(stage)
  return result

"""Writing figures so that a crash never leaves half a file, and the training curves.

Plots use matplotlib's object-oriented API (`matplotlib.figure.Figure`): no pyplot state
and no backend switch, so notebooks keep theirs. Every figure the project writes goes
through `save`, which writes it twice: a PNG (to look at) and a PDF next to it (vector, for
papers).
"""

from __future__ import annotations

import math
import os

from ssm_aimc import workdir as workdir_lib

CURVES = "training_curves.png"  # In every training and sweep workdir (and its .pdf twin).


def pdf_path(path: str) -> str:
  """The PDF written next to the PNG `path` (same name, .pdf)."""
  return os.path.splitext(path)[0] + ".pdf"


def save(fig, path: str, dpi: int = 120) -> str:
  """Lays out `fig` (tightly, unless it has a layout engine of its own) and writes it as PNG
  at `path` and as PDF at `pdf_path(path)`, each to a temporary name first, then moved into
  place (a failing write is a WorkdirError). Returns `path`."""
  if fig.get_layout_engine() is None:
    fig.tight_layout()
  for target, fmt in ((path, "png"), (pdf_path(path), "pdf")):
    tmp = f"{target}.tmp{os.getpid()}.{fmt}"
    with workdir_lib.writing(target):
      try:
        fig.savefig(tmp, dpi=dpi, format=fmt)
        os.replace(tmp, target)
      finally:
        if os.path.exists(tmp):
          os.remove(tmp)
  return path


def _runs(records: list[dict]) -> dict[str, list[dict]]:
  """The records of each run, scalar-valued: a single run's as they are (name ""), a sweep's
  by its `run` label, and a stacked population's list values split into one run per
  member ("label[i]")."""
  out = {}
  for r in records:
    run = str(r.get("run", ""))
    width = max((len(v) for v in r.values() if isinstance(v, list)), default=0)
    if not width:
      out.setdefault(run, []).append(r)
    for i in range(width):
      member = {k: v[i] if isinstance(v, list) else v for k, v in r.items()}
      out.setdefault(f"{run}[{i}]", []).append(member)
  return out


def _series(records: list[dict], key: str, per_epoch: bool) -> tuple[list, list]:
  """(steps, values) of the scalar `key` in the epoch records (per_epoch) or the step ones."""
  steps, values = [], []
  for r in records:
    value = r.get(key)
    if ("epoch" in r) == per_epoch and isinstance(value, int | float) and math.isfinite(value):
      steps.append(r["step"])
      values.append(value)
  return steps, values


def plot_training_curves(records: list[dict], path: str, title: str = "") -> str:
  """Loss and accuracy against the training step from the records of a metrics.jsonl: the
  logged steps' training values as thin lines, every epoch's mean training and validation
  values as markers. A sweep's runs (and a population's members) get a color each, with
  their epoch values only. Returns `path` (PNG and PDF, `save`)."""
  # The object-oriented API: no pyplot state, no backend switch (notebooks keep theirs).
  from matplotlib.figure import Figure  # noqa: PLC0415

  runs = _runs(records)
  fig = Figure(figsize=(10, 3.8))
  axes = fig.subplots(1, 2)
  for ax, what in zip(axes, ("loss", "accuracy"), strict=True):
    if len(runs) == 1:
      (run,) = runs.values()
      steps, values = _series(run, f"train_{what}", per_epoch=False)
      if steps:
        ax.plot(steps, values, lw=0.8, alpha=0.6, color="C0", label="train (logged steps)")
      for split, color in (("train", "C0"), ("val", "C1")):
        steps, values = _series(run, f"{split}_{what}", per_epoch=True)
        if steps:
          ax.plot(steps, values, marker="o", color=color, label=f"{split} (epoch)")
    else:
      for i, (name, run) in enumerate(runs.items()):
        for split, style in (("train", ":"), ("val", "-")):
          steps, values = _series(run, f"{split}_{what}", per_epoch=True)
          label = f"{name} {split}" if len(runs) <= 6 else None
          ax.plot(steps, values, style, marker=".", color=f"C{i % 10}", label=label)
    ax.set(xlabel="training step", ylabel=what)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
      ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  return save(fig, path)

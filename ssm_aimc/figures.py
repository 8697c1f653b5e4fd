"""Writing figures and text files so that a crash never leaves half a file.

Plots use matplotlib's object-oriented API (`matplotlib.figure.Figure`): no pyplot state
and no backend switch, so notebooks keep theirs.
"""

from __future__ import annotations

import os


def save(fig, path: str, dpi: int = 120) -> str:
  """Lays out `fig` (tightly, unless it has a layout engine of its own) and writes it as PNG
  to a temporary name, then moves it into place."""
  if fig.get_layout_engine() is None:
    fig.tight_layout()
  tmp = f"{path}.tmp{os.getpid()}.png"
  fig.savefig(tmp, dpi=dpi)
  os.replace(tmp, path)
  return path

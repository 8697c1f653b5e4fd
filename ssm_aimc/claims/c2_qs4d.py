"""C2 as the QS4D authors measured it (their Fig. "NoiseSize" a and b, arXiv 2507.06079):
accuracy against the state dimension N and against the model width H, one curve per bit
width, every model trained from scratch with QAT under their scheme
(configs/claims/c2_qs4d.py).

The size trades against precision where a larger model at fewer bits matches a smaller one
at more bits (within claim.match_points of test accuracy) and costs less in the authors'
metrics (ACE or model size in kB, ssm_aimc.cost).
"""

import dataclasses

from ssm_aimc import experiment
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import c2_size_vs_precision, common, grid

ID, TITLE, PROTOCOL = "C2", c2_size_vs_precision.TITLE, common.AUTHORS
STATEMENT = c2_size_vs_precision.STATEMENT
KEYS = (*grid.ROW_KEYS, "params")
AXES = {"N": "d_state", "H": "d_model"}  # Curve axis -> the model field it varies.


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of this claim.

  Attributes:
    d_states: N of the accuracy-vs-N curves (at the base config's H).
    d_models: H of the accuracy-vs-H curves (at the base config's N).
    bits: one curve per width (grid.FLOAT_BITS: the float model).
    match_points: a larger model "matches" a smaller one within this many points.
  """

  d_states: tuple[int, ...]
  d_models: tuple[int, ...]
  bits: tuple[int, ...]
  match_points: float


def sizes(exp, s: Settings) -> list[tuple[int, int]]:
  """The (N, H) of every model: both curves' points, the base size once."""
  n, h = exp.model.d_state, exp.model.d_model
  return list(dict.fromkeys([(d, h) for d in s.d_states] + [(n, d) for d in s.d_models]))


def model_of(exp, d_state: int, d_model: int, bits: int) -> experiment.Experiment:
  """The experiment of one point: size (N, H), every group at `bits` (float at FLOAT_BITS)."""
  sized = experiment.override(exp, {"model.d_state": d_state, "model.d_model": d_model})
  return sized if bits >= grid.FLOAT_BITS else grid.quantized(sized, {"all": bits})


def measure(exp, runs, workdir: str) -> dict:
  """Every (N, H) x bits model trained from scratch, kept in workdir/grid.json: {"rows":
  d_state, d_model, bits and KEYS each, "base": the base size}."""
  s = common.settings(Settings, exp.claim)
  base = dataclasses.replace(exp, claim=None)
  points = [(n, h, b) for n, h in sizes(base, s) for b in s.bits]
  exps = [model_of(base, n, h, b) for n, h, b in points]
  writer = workdir_lib.MetricsWriter(workdir)
  # Nothing is shared with other claims: every model is the claim's own.
  rows = grid.kept(workdir, "grid", exps, lambda e: grid.trained(e, writer, KEYS), runs)
  rows = [
    {"d_state": n, "d_model": h, "bits": b, **r} for (n, h, b), r in zip(points, rows, strict=True)
  ]
  return {"rows": rows, "base": {"d_state": base.model.d_state, "d_model": base.model.d_model}}


def curves(numbers: dict, axis: str) -> dict:
  """{bits: [(size, row), ...] by size}, widest first, of the accuracy-vs-`axis` ("N" or "H")
  panel."""
  field, other = AXES[axis], [f for f in AXES.values() if f != AXES[axis]][0]
  out: dict = {}
  for r in numbers["rows"]:
    if r[other] == numbers["base"][other]:
      out.setdefault(r["bits"], []).append((r[field], r))
  return {b: sorted(points, key=lambda p: p[0]) for b, points in sorted(out.items(), reverse=True)}


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "pairs": (larger, smaller) rows where the larger model at fewer bits is
  within match_points of the smaller one, "cheaper": those where it also costs less ACE or
  fewer kB}."""
  rows = numbers["rows"]
  pairs = [
    (big, small)
    for big in rows
    for small in rows
    if big["params"] > small["params"]
    and big["bits"] < small["bits"]
    and 100 * (small["test_accuracy"] - big["test_accuracy"]) <= s.match_points + 1e-9
  ]
  cheaper = [
    (big, small)
    for big, small in pairs
    if big["ace"] < small["ace"] or big["model_size_kb"] < small["model_size_kb"]
  ]
  return {"verdict": common.grade(bool(cheaper), bool(pairs)), "pairs": pairs, "cheaper": cheaper}


def _point(r: dict) -> str:
  bits = "float" if r["bits"] >= grid.FLOAT_BITS else f"{r['bits']} bits"
  return f"N={r['d_state']}, H={r['d_model']} at {bits}"


def summary(numbers: dict, judged: dict, s: Settings) -> str:
  rows, cheaper = numbers["rows"], judged["cheaper"]
  text = (
    f"{len(rows)} models ({len(rows) // len(s.bits)} sizes x {len(s.bits)} widths of every "
    f"group). In {common.count(len(judged['pairs']), 'pair')} a larger model at fewer bits "
    "is within "
    f"{s.match_points:g} point of a smaller one at more bits; in {len(cheaper)} of them it "
    "also needs less ACE or fewer kB."
  )
  if cheaper:
    big, small = max(cheaper, key=lambda p: p[1]["model_size_kb"] / p[0]["model_size_kb"])
    text += (
      f" Largest saving: {_point(big)}, {common.pct(big['test_accuracy'])} % in "
      f"{big['model_size_kb']:.3g} kB ({big['ace']:.3g} ACE), against {_point(small)}, "
      f"{common.pct(small['test_accuracy'])} % in {small['model_size_kb']:.3g} kB "
      f"({small['ace']:.3g} ACE)."
    )
  return text + (
    " The authors (sCIFAR) show the same panels for fp and 10 to 6 bits, N from 10 to 1000."
  )


def table(numbers: dict) -> str:
  tables = []
  for axis in AXES:
    panel = curves(numbers, axis)
    widths = list(panel)
    points = {size for pts in panel.values() for size, _ in pts}
    cells = {(b, size): r for b, pts in panel.items() for size, r in pts}
    header = [axis, *("float" if b >= grid.FLOAT_BITS else f"{b} bits" for b in widths)]
    body = [
      [size, *(common.pct(cells[b, size]["test_accuracy"]) for b in widths)]
      for size in sorted(points)
    ]
    tables.append(common.markdown_table(header, body))
  return "\n\n".join(tables)


def figure(numbers: dict, task: str, workdir: str) -> None:
  fig, axes = common.new_figure(2, 5.0)
  for ax, axis in zip(axes, AXES, strict=True):
    for bits, points in curves(numbers, axis).items():
      label = "float" if bits >= grid.FLOAT_BITS else f"{bits} bits"
      xs, ys = [p for p, _ in points], [100 * r["test_accuracy"] for _, r in points]
      ax.plot(xs, ys, marker="o", label=label)
    other = "H" if axis == "N" else "N"
    fixed = numbers["base"][AXES[other]]
    ax.set(xscale="log", xlabel=f"{axis} ({other} = {fixed})", ylabel="test accuracy (%)")
    ax.legend(fontsize=7)
  common.finish_figure(fig, axes, f"C2 size vs precision ({task}, the authors' protocol)", workdir)


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  figure(numbers, task, workdir)
  rule = (
    "supported if some larger model at fewer bits is within "
    f"{s.match_points:g} point of a smaller model at more bits and needs less ACE or fewer "
    "kB; partly if it only matches the accuracy; else not supported."
  )
  out = {**numbers, "pairs": len(judged["pairs"]), "cheaper_pairs": len(judged["cheaper"])}
  text = summary(numbers, judged, s)
  return common.Outcome(
    ID, TITLE, STATEMENT, rule, judged["verdict"], text, table(numbers), out, protocol=PROTOCOL
  )

"""C1 as the QS4D authors measured it (their Figs. "CIFAR10" and "Metrics", arXiv
2507.06079): per tensor group, accuracy against bit width after post-training quantization
(PTQ) and after QAT, the fewest bits that reach the float accuracy, then the float,
PTQ-minimal and QAT-minimal models in the paper's three hardware metrics
(configs/claims/c1_qs4d.py).

Every quantized model uses the authors' scheme (`quant.scheme = "qs4d"`: per-tensor absmax,
b bits = 2^b states, A and the step quantized before discretisation). A group's curve
quantizes that group alone, every other group float. PTQ evaluates the float model's best
checkpoint (`train.evaluate_many`: one vmapped program per structure); QAT fine-tunes it
for claim.qat_epochs (`sweep.train_members`: one compiled step serves every width). The
minimal models quantize every group at once, each at the fewest bits that reached the
float accuracy on its own curve (a group that never did stays float).
"""

import dataclasses

from ssm_aimc import errors, experiment
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import c1_cost, common, grid

ID, TITLE, PROTOCOL = "C1", c1_cost.TITLE, common.AUTHORS
STATEMENT = c1_cost.STATEMENT
# Read off the authors' Fig. "CIFAR10" (sCIFAR grayscale, fp 84.26 %; +-1 bit): the bits a
# group needs to reach the float accuracy, (QAT, PTQ).
PAPER_BITS = {
  "all": ("~8", "~10"),
  "A": ("~4", "~9"),
  "C": ("~2", "~5"),
  "state": ("~5", "~8"),
  "activations": ("~5", "~7"),
  "mixing": ("~4", "~6"),
  "en-/decoder": ("~2", "~4"),
  "dt": ("~1-2", "~10"),
}
# The three hardware metrics (ssm_aimc.cost) and the reductions printed in the authors' Fig.
# "Metrics": % fp -> PTQ, then % PTQ -> QAT, per task.
METRICS = {
  "ace": "computational complexity (ACE)",
  "model_size_kb": "model size (kB)",
  "adc_complexity": "ADC complexity",
}
PAPER_METRICS = {
  "ace": {"sCIFAR": (93.67, 71.42), "Pathfinder": (95.80, 50.0), "HD": (91.15, 91.30)},
  "model_size_kb": {"sCIFAR": (79.17, 44.44), "Pathfinder": (80.39, 28.57), "HD": (76.19, 65.52)},
  "adc_complexity": {"sCIFAR": (68.75, 50.0), "Pathfinder": (78.26, 28.57), "HD": (62.93, 75.0)},
}


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of this claim.

  Attributes:
    baseline: the float model (one of claim.models), trained as usual.
    groups: the groups swept (keys of grid.GROUPS).
    ptq_bits, qat_bits: the widths of each group's PTQ and QAT curves.
    qat_epochs: fine-tuning epochs of every QAT model (from the float model).
    qat_learning_rate: their peak learning rate (a fine-tune's, below a from-scratch run's:
      configs/qat_w8a8.py), with half an epoch of warm-up.
    minimal_epochs: fine-tuning epochs of the QAT-minimal model: the curves screen each
      group with short fine-tunes, the model the metrics are about gets a full one.
    reach_points: a width reaches the float test accuracy within this many points.
    max_loss_points: the QAT-minimal model's loss against float still "small".
    target_reduction: the ACE reduction claimed ("two orders of magnitude": 100).
  """

  baseline: str
  groups: tuple[str, ...]
  ptq_bits: tuple[int, ...]
  qat_bits: tuple[int, ...]
  qat_epochs: int
  qat_learning_rate: float
  minimal_epochs: int
  reach_points: float
  max_loss_points: float
  target_reduction: float

  def __post_init__(self):
    unknown = [g for g in self.groups if g not in grid.GROUPS]
    if unknown:
      raise errors.ConfigError(f"claim.groups: unknown {unknown}; valid: {list(grid.GROUPS)}.")


def bits_to_reach(curve: dict, fp_accuracy: float, reach_points: float) -> int | None:
  """The fewest bits of a {bits: test accuracy} curve within `reach_points` of the float
  accuracy, or None if no width gets there (exactly reach_points below counts as reached:
  accuracies are fractions of a test split, compared to 1e-9 points)."""
  ok = [b for b, acc in curve.items() if 100 * (fp_accuracy - acc) <= reach_points + 1e-9]
  return min(ok, default=None)


def minimal_widths(curves: dict, fp_accuracy: float, reach_points: float) -> dict:
  """{group: bits to reach} of every single group's curve ("all" aside) that reaches."""
  widths = {g: bits_to_reach(c, fp_accuracy, reach_points) for g, c in curves.items()}
  return {g: b for g, b in widths.items() if g != "all" and b is not None}


def measure(exp, runs, workdir: str) -> dict:
  """The float model, the PTQ and QAT curves of every group and the two minimal models:
  {"fp": row, "ptq"/"qat": {group: {bits: test accuracy}}, "ptq_minimal"/"qat_minimal":
  row with its "widths"}; a row holds grid.ROW_KEYS. Each stage is kept in workdir (ptq.json,
  qat.json, fp.json, ptq_minimal.json, qat_minimal.json) with its experiments: reused for
  the same ones, refused (ConfigError) for others."""
  s = common.settings(Settings, exp.claim)
  if s.baseline not in runs.names():
    raise errors.ConfigError(f"claim.baseline {s.baseline!r} is not one of claim.models.")
  runs.train(s.baseline)
  float_exp, float_dir = runs.experiment(s.baseline), runs.workdir(s.baseline)
  qat_exp = experiment.override(
    float_exp,
    {
      "init_checkpoint": float_dir,
      "num_epochs": s.qat_epochs,
      "optimizer.learning_rate": s.qat_learning_rate,
      "optimizer.warmup_epochs": 0.5,
    },
  )
  writer = workdir_lib.MetricsWriter(workdir)
  compute = {
    "ptq": lambda e: grid.evaluated(e, float_dir),
    "qat": lambda e: grid.trained(e, writer),
  }
  curves = {}
  for protocol, base, widths in (("ptq", float_exp, s.ptq_bits), ("qat", qat_exp, s.qat_bits)):
    points = [(g, b) for g in s.groups for b in widths]
    exps = [grid.quantized(base, {g: b}) for g, b in points]
    rows = grid.kept(workdir, protocol, exps, compute[protocol], runs)
    curves[protocol] = {}
    for (group, bits), row in zip(points, rows, strict=True):
      curves[protocol].setdefault(group, {})[bits] = row["test_accuracy"]
  # The float model measured as every other row here (a results.json from an older version
  # may lack the authors' metrics).
  (fp_row,) = grid.kept(workdir, "fp", [float_exp], compute["ptq"], runs)
  out = {"fp": fp_row, **curves}
  minimal_exp = experiment.override(qat_exp, {"num_epochs": s.minimal_epochs})
  for protocol, base in (("ptq", float_exp), ("qat", minimal_exp)):
    widths = minimal_widths(curves[protocol], fp_row["test_accuracy"], s.reach_points)
    name = f"{protocol}_minimal"
    (row,) = grid.kept(workdir, name, [grid.quantized(base, widths)], compute[protocol], runs)
    out[name] = {**row, "widths": widths}
  return out


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "bits": {group: (QAT bits, PTQ bits) to reach float, None: never},
  "reductions": {"ptq"/"qat": {metric: fp / model}}, "loss_points": of the QAT-minimal
  model against float}."""
  fp = numbers["fp"]
  acc = fp["test_accuracy"]
  bits = {
    g: tuple(bits_to_reach(numbers[p][g], acc, s.reach_points) for p in ("qat", "ptq"))
    for g in numbers["qat"]
  }
  reductions = {p: {m: fp[m] / numbers[f"{p}_minimal"][m] for m in METRICS} for p in ("ptq", "qat")}
  loss = 100 * (acc - numbers["qat_minimal"]["test_accuracy"])
  small, ace = loss <= s.max_loss_points, reductions["qat"]["ace"]
  verdict = common.grade(
    small and ace >= s.target_reduction, small and ace >= s.target_reduction / 10
  )
  return {"verdict": verdict, "bits": bits, "reductions": reductions, "loss_points": loss}


def _bits_text(bits: int | None) -> str:
  return "float" if bits is None else str(bits)


def _percent_less(before: float, after: float) -> str:
  """The change from `before` to `after` in percent, as the authors print it (-93.67 %)."""
  return f"{100 * (after / before - 1):+.2f} %"


def summary(numbers: dict, judged: dict, s: Settings) -> str:
  fp, ptq, qat = numbers["fp"], numbers["ptq_minimal"], numbers["qat_minimal"]
  r = judged["reductions"]
  fewer = [g for g, (q, p) in judged["bits"].items() if q is not None and (p is None or q < p)]
  widths = ", ".join(f"{g} {b}" for g, b in qat["widths"].items()) or "none"
  to_ptq, to_qat = PAPER_METRICS["ace"]["HD"]
  return (
    f"Float {common.pct(fp['test_accuracy'])} %. QAT reaches the float accuracy (within "
    f"{s.reach_points:g} point) with fewer bits than PTQ in {len(fewer)} of "
    f"{len(judged['bits'])} groups ({', '.join(fewer) or 'none'}; "
    f"{common.count(s.qat_epochs, 'fine-tuning epoch')} per point). With every group at "
    f"its fewest QAT bits ({widths}; "
    f"{common.count(s.minimal_epochs, 'fine-tuning epoch')}) the model scores "
    f"{common.pct(qat['test_accuracy'])} % ({-judged['loss_points']:+.2f} points) at "
    f"{common.times(r['qat']['ace'])} less ACE, {common.times(r['qat']['model_size_kb'])} "
    f"fewer kB and {common.times(r['qat']['adc_complexity'])} less ADC complexity than "
    f"float; the PTQ-minimal model scores {common.pct(ptq['test_accuracy'])} % at "
    f"{common.times(r['ptq']['ace'])} less ACE. The authors' HD model goes fp -> QAT "
    f"{common.times(paper_reduction('ace', 'HD'))} in ACE (fp -> PTQ -{to_ptq:.2f} %, "
    f'PTQ -> QAT -{to_qat:.2f} % in their Fig. "Metrics").'
  )


def paper_reduction(metric: str, task: str) -> float:
  """fp / QAT-minimal of `metric` in the authors' Fig. "Metrics": their two printed
  reductions (fp -> PTQ, PTQ -> QAT, in %) composed."""
  to_ptq, to_qat = PAPER_METRICS[metric][task]
  return 1.0 / ((1.0 - to_ptq / 100.0) * (1.0 - to_qat / 100.0))


def table(numbers: dict, judged: dict) -> str:
  bits = common.markdown_table(
    ["group", "QAT bits to float", "PTQ bits to float", "authors' QAT (sCIFAR)", "authors' PTQ"],
    [[g, *(_bits_text(b) for b in qp), *PAPER_BITS[g]] for g, qp in judged["bits"].items()],
  )
  models = {"float": numbers["fp"], "PTQ-minimal": numbers["ptq_minimal"]}
  models["QAT-minimal"] = numbers["qat_minimal"]
  header = ["model", "test accuracy (%)", *METRICS.values()]
  rows = [
    [n, common.pct(r["test_accuracy"]), *(f"{r[m]:.4g}" for m in METRICS)]
    for n, r in models.items()
  ]
  ptq, qat = numbers["ptq_minimal"], numbers["qat_minimal"]
  for name, before, after in (("fp -> PTQ", numbers["fp"], ptq), ("PTQ -> QAT", ptq, qat)):
    rows.append([name, "", *(_percent_less(before[m], after[m]) for m in METRICS)])
  for task in PAPER_METRICS["ace"]:
    cells = [" / ".join(f"-{v:.2f} %" for v in PAPER_METRICS[m][task]) for m in METRICS]
    rows.append([f"authors, {task} (fp -> PTQ / PTQ -> QAT)", "", *cells])
  return bits + "\n\n" + common.markdown_table(header, rows)


def figure(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> None:
  """One panel per group (accuracy against bits, PTQ and QAT) and the three metrics."""
  groups = list(numbers["qat"])
  cols = 4
  rows = -(-len(groups) // cols) + 1
  fig, axes = common.new_figure(cols, 3.6, rows)
  acc = 100 * numbers["fp"]["test_accuracy"]
  panels = list(axes.flat)
  for ax, group in zip(panels, groups, strict=False):
    for protocol, marker in (("ptq", "x"), ("qat", "o")):
      curve = sorted(numbers[protocol][group].items())
      ax.plot(
        [b for b, _ in curve], [100 * a for _, a in curve], marker=marker, label=protocol.upper()
      )
    ax.axhline(acc, color="gray", lw=1, label="float")
    ax.axhline(acc - s.reach_points, color="gray", lw=1, ls=":")
    ax.set_ylim(max(0.0, acc - 30), 100)
    ax.set(title=group, xlabel="bits", ylabel="test accuracy (%)")
  panels[0].legend(fontsize=7)
  models = {"float": numbers["fp"], "PTQ": numbers["ptq_minimal"], "QAT": numbers["qat_minimal"]}
  bottom = panels[(rows - 1) * cols :]
  for ax, (metric, label) in zip(bottom, METRICS.items(), strict=False):
    values = [r[metric] for r in models.values()]
    ax.bar(list(models), values, color=["C7", "C0", "C1"])
    for i, v in enumerate(values[1:], start=1):
      ax.annotate(_percent_less(values[i - 1], v), (i, v), ha="center", va="bottom", fontsize=7)
    ax.set(yscale="log", title=label)
  bottom[-1].bar(
    list(models), [100 * r["test_accuracy"] for r in models.values()], color=["C7", "C0", "C1"]
  )
  bottom[-1].set(title="test accuracy (%)", ylim=(max(0.0, acc - 20), 100))
  for ax in panels[len(groups) : (rows - 1) * cols]:
    ax.set_visible(False)
  common.finish_figure(
    fig, panels, f"C1 bits per group and cost ({task}, the authors' protocol)", workdir
  )


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  figure(numbers, judged, s, task, workdir)
  rule = (
    f"supported if the QAT-minimal model (every group at the fewest QAT bits that reach the "
    f"float accuracy within {s.reach_points:g} point) needs >= {s.target_reduction:g}x less "
    f"computational complexity (ACE) than the float model at <= {s.max_loss_points:g} point "
    f"of loss; partly if >= {s.target_reduction / 10:g}x at that loss; else not supported."
  )
  out = {**numbers, "bits_to_float": judged["bits"], "reductions": judged["reductions"]}
  text = summary(numbers, judged, s)
  return common.Outcome(
    ID,
    TITLE,
    STATEMENT,
    rule,
    judged["verdict"],
    text,
    table(numbers, judged),
    out,
    protocol=PROTOCOL,
  )

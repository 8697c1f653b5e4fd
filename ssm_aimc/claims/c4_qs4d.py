"""C4 as the QS4D authors measured it (their Fig. "Pruning", arXiv 2507.06079): the share of
each kind of weight that greedy pruning removes within a tolerance, per layer and for the
whole model, at each bit width of their scheme, over training seeds
(configs/claims/c4_qs4d.py).

Every model is trained from scratch (float, or QAT of every group under quant.scheme =
"qs4d"), then pruned greedily once per kind from its unpruned self (`ssm_aimc.greedy`),
judged on the validation split; the pruned model's test accuracy is reported.
"""

import dataclasses
import os

import numpy as np

from ssm_aimc import errors, experiment, greedy, pruning, runner, runs, train
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import c4_pruning, common, grid

ID, TITLE, PROTOCOL = "C4", c4_pruning.TITLE, common.AUTHORS
STATEMENT = c4_pruning.STATEMENT
LABELS = {
  "linear": "linear layer",
  "unstructured": "unstructured kernel",
  "structured": "structured kernel",
}
# Read off the authors' Fig. "Pruning" (sCIFAR, whole model, +-2 %): share pruned at
# 7 bit / 10 bit / fp.
PAPER_SHARES = {
  "linear": {7: 47, 10: 47, grid.FLOAT_BITS: 55},
  "unstructured": {7: 27, 10: 19, grid.FLOAT_BITS: 22},
  "structured": {7: 21, 10: 11, grid.FLOAT_BITS: 10},
}
GREEDY_DIR = "greedy"


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of this claim.

  Attributes:
    bits: the widths compared (grid.FLOAT_BITS: the float model), every group at that width.
    seeds: training seeds of every width.
    kinds: the kinds pruned (greedy.KINDS), each in its own pass.
    tolerance_points: validation accuracy lost (points) that still counts as within.
    max_batch: masks per evaluation call of the greedy pass (decisions do not depend on it).
    min_gain: the structured share at the lowest width must be at least this x float's.
  """

  bits: tuple[int, ...]
  seeds: tuple[int, ...]
  kinds: tuple[str, ...]
  tolerance_points: float
  max_batch: int
  min_gain: float

  def __post_init__(self):
    unknown = [k for k in self.kinds if k not in greedy.KINDS]
    if unknown:
      raise errors.ConfigError(f"claim.kinds: unknown {unknown}; valid: {greedy.KINDS}.")
    grid.check_widths(self.bits)
    if "structured" not in self.kinds:
      raise errors.ConfigError(
        "claim.kinds must hold 'structured': the verdict compares its shares."
      )


def _bits_text(bits: int) -> str:
  return "fp" if bits >= grid.FLOAT_BITS else f"{bits} bit"


def model_name(bits: int, seed: int, exp) -> str:
  """The folder name of one model in the models directory (its size in the name, so claims
  and variants sharing the folder never collide)."""
  m = exp.model
  return (
    f"c4_qs4d_{m.n_layers}x{m.d_model}x{m.d_state}_{_bits_text(bits).replace(' ', '')}_seed{seed}"
  )


def recipes(exp, s: Settings) -> dict:
  """{model name: {"init_from": "", "overrides": ...}} of every (bits, seed)."""
  out = {}
  for bits in s.bits:
    quant = {} if bits >= grid.FLOAT_BITS else grid.quantized_overrides({"all": bits})
    for seed in s.seeds:
      out[model_name(bits, seed, exp)] = {"init_from": "", "overrides": {"seed": seed, **quant}}
  return out


def prune_passes(exp, workdir: str, s: Settings) -> dict:
  """Each kind's greedy pass over the best checkpoint of `workdir` (trained under `exp`):
  {kind: shares per layer ("layer <i>") and "total", validation and test accuracy before
  and after, the evaluations it took}."""
  inf = train.load_for_inference(exp, workdir)
  setup, spec, params = inf.setup, exp.quant.spec, inf.params
  groups, scores = pruning.greedy_units(
    setup.model, params, spec, s.kinds, setup.example, "h2", inf.batch_stats
  )
  val, test = (
    pruning.greedy_evaluator(
      setup.model, params, groups, split, exp.eval_batch_size, spec, inf.batch_stats
    )
    for split in (setup.dataset.val, setup.dataset.test)
  )
  out = {}
  for kind in s.kinds:
    result = greedy.prune_model(val, kind, scores, s.tolerance_points / 100, s.max_batch)
    masks = np.stack([np.ones_like(result.keep), result.keep]).astype(np.float32)
    test_before, test_after = test.accuracies(masks)
    shares = result.shares()
    out[kind] = {
      "shares": {
        "total": shares["total"],
        **{f"layer {greedy.block_index(g.layer)}": shares[g.layer] for g in result.groups},
      },
      "units": sum(g.size for g in result.groups),
      "val_before": result.baseline,
      "val_after": result.accuracy,
      "test_before": float(test_before),
      "test_after": float(test_after),
      "evaluations": result.evaluations,
      "seconds": result.seconds,
    }
  return out


def measure(exp, runs_, workdir: str) -> dict:
  """Every (bits, seed) model trained, then pruned greedily per kind (kept in
  workdir/greedy/<model>.json): {"models": rows of name, bits, seed and per kind the
  `prune_pass` numbers, "layers": n_layers}."""
  s = common.settings(Settings, exp.claim)
  own = runs.Runs(runs_.base, runs_.root, recipes(runs_.base, s))
  rows = []
  for name in own.names():
    own.train(name)
    model_exp = own.experiment(name)
    key = {
      "model": workdir_lib.read_json(os.path.join(own.workdir(name), workdir_lib.RESULTS))[
        "checkpoint_step"
      ],
      "experiment": experiment.to_dict(model_exp),
      "kinds": s.kinds,
      "tolerance_points": s.tolerance_points,
    }
    kept = common.kept(
      runs_,
      os.path.join(workdir, GREEDY_DIR, f"{name}.json"),
      key,
      lambda name=name, model_exp=model_exp: prune_passes(model_exp, own.workdir(name), s),
      f"greedy {name}",
    )
    bits = model_exp.quant.weight_bits if model_exp.quant.enabled else grid.FLOAT_BITS
    rows.append(
      {"name": name, "bits": int(bits), "seed": model_exp.seed, **{k: kept[k] for k in s.kinds}}
    )
  runs_.seconds.update({k: v for k, v in own.seconds.items()})
  runs_.reused.extend(own.reused)
  val_examples = len(runner.build(runs_.base).dataset.val)
  return {"models": rows, "layers": exp.model.n_layers, "val_examples": val_examples}


def spread(numbers: dict, kind: str, bits: int, where: str = "total") -> dict:
  """{"mean", "min", "max", "n"} over seeds of the share of `kind` pruned at `bits` in
  `where` ("total" or "layer <i>")."""
  values = [r[kind]["shares"][where] for r in numbers["models"] if r["bits"] == bits]
  return {
    "mean": float(np.mean(values)),
    "min": float(np.min(values)),
    "max": float(np.max(values)),
    "n": len(values),
  }


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "low": the lowest width, "gain": structured share low / float (means),
  "separated": the seed ranges do not overlap}."""
  low = min(s.bits)
  q, f = spread(numbers, "structured", low), spread(numbers, "structured", grid.FLOAT_BITS)
  gain = q["mean"] / f["mean"] if f["mean"] > 0 else (float("inf") if q["mean"] > 0 else 0.0)
  more = q["mean"] > 0 and gain >= s.min_gain
  separated = q["min"] > f["max"]
  verdict = common.grade(more and separated, more)
  return {"verdict": verdict, "low": low, "gain": gain, "separated": separated}


def _share_text(sp: dict) -> str:
  text = f"{100 * sp['mean']:.1f}"
  if sp["n"] > 1:
    text += f" ({100 * sp['min']:.0f}-{100 * sp['max']:.0f})"
  return text


def _accuracy(numbers: dict, kind: str, bits: int, key: str) -> float:
  return float(np.mean([r[kind][key] for r in numbers["models"] if r["bits"] == bits]))


def table(numbers: dict, s: Settings) -> str:
  layers = [f"layer {i}" for i in range(numbers["layers"])]
  header = [
    "kind",
    "bits",
    *layers,
    "whole model",
    "authors (sCIFAR)",
    "test before (%)",
    "test after (%)",
  ]
  body = []
  for kind in s.kinds:
    for bits in sorted(s.bits):
      paper = PAPER_SHARES[kind].get(bits)
      body.append(
        [
          LABELS[kind],
          _bits_text(bits),
          *(_share_text(spread(numbers, kind, bits, where)) for where in layers),
          _share_text(spread(numbers, kind, bits)),
          f"~{paper}" if paper is not None else "",
          common.pct(_accuracy(numbers, kind, bits, "test_before")),
          common.pct(_accuracy(numbers, kind, bits, "test_after")),
        ]
      )
  return common.markdown_table(header, body)


def figure(numbers: dict, s: Settings, task: str, workdir: str) -> None:
  wheres = [f"layer {i}" for i in range(numbers["layers"])] + ["total"]
  fig, axes = common.new_figure(len(wheres), 2.4)
  axes = np.atleast_1d(axes)
  widths = sorted(s.bits)  # Lowest first, float last, as the authors' panels.
  xs = np.arange(len(widths))
  for ax, where in zip(axes, wheres, strict=True):
    for kind in s.kinds:
      sp = [spread(numbers, kind, b, where) for b in widths]
      mean = [100 * p["mean"] for p in sp]
      line = ax.plot(xs, mean, ls="--", marker="o", label=LABELS[kind])
      low, high = [100 * p["min"] for p in sp], [100 * p["max"] for p in sp]
      ax.fill_between(xs, low, high, color=line[0].get_color(), alpha=0.25, lw=0)
    ax.set_xticks(xs, [_bits_text(b) for b in widths], rotation=90)
    ax.set_title("complete model" if where == "total" else where.capitalize(), fontsize=9)
    ax.set_ylim(-3, 103)
  axes[0].set_ylabel("pruned (%)")
  axes[-1].legend(fontsize=7)
  seeds = f"{len(s.seeds)} seeds, min-max shaded" if len(s.seeds) > 1 else "1 seed"
  common.finish_figure(
    fig, list(axes), f"C4 greedy pruning ({task}, the authors' protocol; {seeds})", workdir, "y"
  )


def summary(numbers: dict, judged: dict, s: Settings) -> str:
  low = judged["low"]
  q = spread(numbers, "structured", low)
  f = spread(numbers, "structured", grid.FLOAT_BITS)
  lin_q, lin_f = spread(numbers, "linear", low), spread(numbers, "linear", grid.FLOAT_BITS)
  gain = "inf" if judged["gain"] == float("inf") else f"{judged['gain']:.2f}x"
  text = (
    f"{len(numbers['models'])} models ({len(s.bits)} widths x "
    f"{common.count(len(s.seeds), 'seed')}), each "
    f"pruned greedily within {s.tolerance_points:g} point of its validation accuracy. "
    f"Structured kernel (whole modes): {_bits_text(low)} {_share_text(q)} % against fp "
    f"{_share_text(f)} % of the modes ({gain}; seed ranges "
    f"{'apart' if judged['separated'] else 'overlap'}). Linear layer: {_bits_text(low)} "
    f"{_share_text(lin_q)} % against fp {_share_text(lin_f)} %. The authors (sCIFAR): "
    "structured ~21 % at 7 bit against ~10 % in fp."
  )
  drops = {
    kind: np.mean(
      [100 * (r[kind]["test_before"] - r[kind]["test_after"]) for r in numbers["models"]]
    )
    for kind in s.kinds
  }
  val = np.mean([r[s.kinds[0]]["val_before"] for r in numbers["models"]])
  n_val = numbers.get("val_examples")
  text += (
    " Test accuracy lost on average (the passes are judged on validation): "
    + ", ".join(f"{LABELS[k]} {d:.1f} points" for k, d in drops.items())
    + f" (unpruned validation accuracy {100 * val:.1f} %"
    + (f" on {n_val} examples" if n_val else "")
    + "): each accepted candidate is a decision taken on the same few examples, so a long "
    "pass fits the validation split."
  )
  return text


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  figure(numbers, s, task, workdir)
  low = _bits_text(judged["low"])
  rule = (
    f"supported if the greedy pass removes at least {s.min_gain:g}x the share of whole "
    f"modes (structured kernel, whole model) at {low} as in fp (means over seeds) AND the "
    "seed ranges do not overlap; partly if only the first holds; else not supported."
  )
  out = {**numbers, "gain": judged["gain"], "separated": judged["separated"]}
  return common.Outcome(
    ID,
    TITLE,
    STATEMENT,
    rule,
    judged["verdict"],
    summary(numbers, judged, s),
    table(numbers, s),
    out,
    protocol=PROTOCOL,
  )

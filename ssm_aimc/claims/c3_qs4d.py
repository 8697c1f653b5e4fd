"""C3 as the QS4D authors measured it (their Fig. "NoiseSize" c and d, arXiv 2507.06079):
accuracy against relative Gaussian noise on the continuous-time A, one curve per bit width
of A, noise at test only and in training and test (configs/claims/c3_qs4d.py).

Every model is trained from scratch: float, QAT of A alone under the authors' scheme
("qs4d" series), or QAT of a_bar under this project's ("ours" series, the noise on a_bar).
Each is then evaluated at every noise level on `draws` noise streams (a fresh draw per
batch; the levels vmapped in one program, `noise_eval.at_noise_levels`); models trained with
the noise are evaluated at their own level. A model's curve is the mean over seeds of its
mean over draws, with the standard error over seeds (over draws with one seed).
"""

import dataclasses
import math
import os

import numpy as np

from ssm_aimc import errors, experiment, noise_eval, runs, train
from ssm_aimc.claims import c3_robustness, common, grid

ID, TITLE, PROTOCOL = "C3", c3_robustness.TITLE, common.AUTHORS
STATEMENT = c3_robustness.STATEMENT
NOISE_DIR = "noise"
# Series -> (what is quantized and perturbed, label).
SERIES = {
  "qs4d": ("a", "A quantized (the authors' scheme), noise on A"),
  "ours": ("a_bar", "a_bar quantized (this project's scheme), noise on a_bar"),
}
PAPER = (
  "The authors (sCIFAR, noise at test only): fp and 10 bit fall below 40 % by ~0.6-0.75 % "
  "noise, 8-9 bit by ~0.8 %, 7 bit holds to ~1.2 %, 6 bit degrades slowly (~60 % at 1.8 %)."
)


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of this claim.

  Attributes:
    bits: widths of A in the authors' series (grid.FLOAT_BITS: the float model).
    ours_bits: widths of a_bar in this project's series.
    seeds: training seeds of every model.
    test_levels: relative noise levels (sigma) evaluated at test only, from 0.
    draws: noise streams per point; draws_per_call: streams vmapped together.
    train_levels: levels the "training + test" models are trained and evaluated at.
    train_bits: widths of A of those models (the authors' series).
    drop_points: sigma_10 is the level where accuracy falls this far below clean.
    clean_within_points: QAT models compared with float: clean accuracy within this.
    min_ratio: the verdict's factor on the float model's sigma_10.
  """

  bits: tuple[int, ...]
  ours_bits: tuple[int, ...]
  seeds: tuple[int, ...]
  test_levels: tuple[float, ...]
  draws: int
  draws_per_call: int
  train_levels: tuple[float, ...]
  train_bits: tuple[int, ...]
  drop_points: float
  clean_within_points: float
  min_ratio: float

  def __post_init__(self):
    grid.check_widths(self.bits)
    levels = self.test_levels
    if (
      len(levels) < 2
      or levels[0] != 0
      or any(b <= a for a, b in zip(levels[:-1], levels[1:], strict=True))
    ):
      raise errors.ConfigError(
        f"claim.test_levels must start at 0 and increase, got {tuple(levels)}."
      )
    if any(not (math.isfinite(v) and v > 0) for v in self.train_levels):
      raise errors.ConfigError(f"claim.train_levels must be > 0, got {self.train_levels}.")
    for name in ("draws", "draws_per_call"):
      if getattr(self, name) < 1:
        raise errors.ConfigError(f"claim.{name} must be >= 1, got {getattr(self, name)}.")
    if not self.seeds:
      raise errors.ConfigError("claim.seeds must name at least one seed.")


@dataclasses.dataclass(frozen=True)
class Model:
  """One trained model of the claim: its series, width, seed and training noise level."""

  series: str
  bits: int
  seed: int
  train_level: float = 0.0

  def name(self, exp) -> str:
    """Its folder in the models directory (the size in the name: variants never collide)."""
    m = exp.model
    width = _bits_text(self.bits).replace(" ", "")
    series = "_abar" if self.series == "ours" and self.bits < grid.FLOAT_BITS else ""
    noise = f"_trained{100 * self.train_level:g}pct" if self.train_level else ""
    return f"c3_qs4d_{m.n_layers}x{m.d_model}x{m.d_state}_{width}{series}{noise}_seed{self.seed}"

  def overrides(self) -> dict:
    out = {"seed": self.seed}
    if self.bits < grid.FLOAT_BITS and self.series == "qs4d":
      out.update(grid.quantized_overrides({"A": self.bits}))
    elif self.bits < grid.FLOAT_BITS:
      out.update(
        {
          "quant.enabled": True,
          "quant.scheme": "ssm_aimc",
          "quant.mode": "tensor",
          "quant.weight_bits": grid.FLOAT_BITS,
          "quant.act_bits": grid.FLOAT_BITS,
          "quant.a_bar_bits": self.bits,
        }
      )
    if self.train_level:
      out.update(
        _noise(SERIES[self.series][0], self.train_level, train=True)
        # Its own end-of-training evaluation on two streams; the claim draws its own.
        | {"hardware.eval_seeds": 2, "hardware.seeds_per_call": 2}
      )
    return out


def _noise(target: str, level: float, train: bool) -> dict:
  """The hardware overrides of relative noise on `target` alone (the ideal device)."""
  return {
    "hardware.enabled": True,
    "hardware.train": train,
    "hardware.device": "ideal",
    "hardware.a_noise": level,
    "hardware.a_noise_on": target,
  }


def _ours(s: Settings) -> tuple[int, ...]:
  """The widths of our series: float (the same model as the authors' float) and ours_bits;
  none without ours_bits."""
  return (grid.FLOAT_BITS, *s.ours_bits) if s.ours_bits else ()


def _bits_text(bits: int) -> str:
  return "fp" if bits >= grid.FLOAT_BITS else f"{bits} bit"


def models(s: Settings) -> list[Model]:
  """Every model of the claim: the authors' series, ours (the float model again, with the
  noise on a_bar: the same trained model), then the noise-trained ones."""
  out = [Model("qs4d", b, seed) for b in s.bits for seed in s.seeds]
  out += [Model("ours", b, seed) for b in _ours(s) for seed in s.seeds]
  out += [
    Model("qs4d", b, seed, level)
    for level in s.train_levels
    for b in s.train_bits
    for seed in s.seeds
  ]
  return out


def noise_accuracies(model_exp, workdir: str, target: str, levels, s: Settings) -> dict:
  """{"digital": test accuracy, "levels", "accuracies": (levels, draws) test accuracies}
  of the best checkpoint of `workdir` with relative noise on `target` at every level."""
  eval_exp = experiment.override(model_exp, _noise(target, 0.0, train=False))
  inf = train.load_for_inference(eval_exp, workdir)
  test = inf.setup.dataset.test
  accuracies = noise_eval.at_noise_levels(
    inf.setup.model.apply,
    eval_exp.quant.spec,
    inf.params,
    test,
    eval_exp.eval_batch_size,
    eval_exp.hardware.spec,
    levels,
    s.draws,
    seed=0,
    seeds_per_call=s.draws_per_call,
    batch_stats=inf.batch_stats,
  )
  digital = float(inf.pop.evaluate(inf.params, test)["accuracy"][0])
  return {"digital": digital, "levels": list(levels), "accuracies": accuracies.tolist()}


def measure(exp, runs_, workdir: str) -> dict:
  """Every model trained, then evaluated under noise (kept in workdir/noise/<model>.json):
  {"models": rows of series, bits, seed, train_level and the `noise_accuracies`}."""
  s = common.settings(Settings, exp.claim)
  todo = models(s)
  recipes = {m.name(runs_.base): {"init_from": "", "overrides": m.overrides()} for m in todo}
  own = runs.Runs(runs_.base, runs_.root, recipes)
  rows = []
  for m in todo:
    name = m.name(runs_.base)
    results = own.train(name)
    levels = s.test_levels if not m.train_level else (0.0, m.train_level)
    target = SERIES[m.series][0]
    key = {
      "model": results["checkpoint_step"],
      "experiment": experiment.to_dict(own.experiment(name)),
      "target": target,
      "levels": levels,
      "draws": s.draws,
    }
    kept = common.kept(
      runs_,
      os.path.join(workdir, NOISE_DIR, f"{name}_noise_on_{target}.json"),
      key,
      lambda name=name, target=target, levels=levels: noise_accuracies(
        own.experiment(name), own.workdir(name), target, levels, s
      ),
      f"noise {name}",
    )
    rows.append(
      {**dataclasses.asdict(m), **{k: kept[k] for k in ("digital", "levels", "accuracies")}}
    )
  runs_.seconds.update(own.seconds)
  runs_.reused.extend(own.reused)
  return {"models": rows}


def curve(numbers: dict, series: str, bits: int, train_level: float = 0.0) -> dict:
  """{"levels", "mean", "se", "clean", "seeds"} of one (series, bits, training level):
  accuracy per level, mean over seeds of each seed's mean over draws; the standard error
  over seeds (over the draws when there is one seed)."""
  rows = [
    r
    for r in numbers["models"]
    if r["series"] == series and r["bits"] == bits and r["train_level"] == train_level
  ]
  if not rows:
    raise ValueError(f"No model of series {series!r} at {bits} bits, level {train_level}.")
  draws = np.array([r["accuracies"] for r in rows])  # (seeds, levels, draws)
  per_seed = draws.mean(axis=2)
  mean = per_seed.mean(axis=0)
  if len(rows) > 1:
    se = per_seed.std(axis=0, ddof=1) / np.sqrt(len(rows))
  else:
    se = draws[0].std(axis=1, ddof=1) / np.sqrt(draws.shape[2]) if draws.shape[2] > 1 else 0 * mean
  return {
    "levels": rows[0]["levels"],
    "mean": mean.tolist(),
    "se": se.tolist(),
    "clean": float(mean[0]),
    "seeds": len(rows),
  }


def level_at_drop(levels, accuracy, threshold: float) -> tuple[float, bool]:
  """(the level where `accuracy` first falls to `threshold`, linear between levels; whether
  it never does within the grid: then the grid's last level, a lower bound)."""
  for i in range(1, len(levels)):
    if accuracy[i] <= threshold:
      a0, a1 = accuracy[i - 1], accuracy[i]
      if a0 <= threshold:
        return float(levels[i - 1]), False
      return float(
        levels[i - 1] + (levels[i] - levels[i - 1]) * (a0 - threshold) / (a0 - a1)
      ), False
  return float(levels[-1]), True


def sigma_drop(c: dict, drop_points: float) -> dict:
  """{"mean", "low", "high", "censored"}: the level where the curve `c` falls drop_points
  below its clean accuracy, from the mean curve and from mean -/+ SE (low/high)."""
  threshold = c["clean"] - drop_points / 100
  mean, se = np.array(c["mean"]), np.array(c["se"])
  at, censored = level_at_drop(c["levels"], mean, threshold)
  low, _ = level_at_drop(c["levels"], mean - se, threshold)
  high, _ = level_at_drop(c["levels"], mean + se, threshold)
  return {"mean": at, "low": low, "high": high, "censored": censored}


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "sigma": {series: {bits: sigma_drop}}, "best": the QAT width compared,
  "ratio": its sigma_10 / float's (means), "eligible": the widths within the clean bound}."""
  sigma = {
    series: {b: sigma_drop(curve(numbers, series, b), s.drop_points) for b in widths}
    for series, widths in (("qs4d", s.bits), ("ours", _ours(s)))
  }
  fp_curve = curve(numbers, "qs4d", grid.FLOAT_BITS)
  eligible = [
    b
    for b in s.bits
    if b < grid.FLOAT_BITS
    and curve(numbers, "qs4d", b)["clean"] >= fp_curve["clean"] - s.clean_within_points / 100
  ]
  fp = sigma["qs4d"][grid.FLOAT_BITS]
  if not eligible:
    return {
      "verdict": common.NOT_SUPPORTED,
      "sigma": sigma,
      "best": None,
      "ratio": 0.0,
      "eligible": [],
    }
  best = max(eligible, key=lambda b: (sigma["qs4d"][b]["mean"], -b))
  q = sigma["qs4d"][best]
  ratio = q["mean"] / fp["mean"] if fp["mean"] > 0 else math.inf
  full = q["low"] >= s.min_ratio * fp["high"]
  part = q["mean"] >= s.min_ratio * fp["mean"]
  return {
    "verdict": common.grade(full, part),
    "sigma": sigma,
    "best": best,
    "ratio": ratio,
    "eligible": eligible,
  }


def _pct_se(mean: float, se: float) -> str:
  return f"{100 * mean:.1f} +- {100 * se:.1f}"


def _sigma_text(sd: dict) -> str:
  text = f"{'>=' if sd['censored'] else ''}{100 * sd['mean']:.2f}"
  return f"{text} ({100 * sd['low']:.2f}-{100 * sd['high']:.2f})"


def table(numbers: dict, judged: dict, s: Settings) -> str:
  levels = s.test_levels
  header = ["series", "A / a_bar", *(f"{100 * v:g} %" for v in levels), "sigma_10 (%)"]
  body = []
  for series, widths in (("qs4d", s.bits), ("ours", _ours(s))):
    for b in sorted(widths, reverse=True):
      c = curve(numbers, series, b)
      body.append(
        [
          "authors'" if series == "qs4d" else "ours",
          _bits_text(b),
          *(_pct_se(m, e) for m, e in zip(c["mean"], c["se"], strict=True)),
          _sigma_text(judged["sigma"][series][b]),
        ]
      )
  text = common.markdown_table(header, body)
  if not s.train_levels:
    return text
  header = ["A", "clean, trained without noise (%)"]
  for v in s.train_levels:
    header += [f"at {100 * v:g} %: trained without (%)", f"at {100 * v:g} %: trained with (%)"]
  body = []
  for b in sorted(s.train_bits, reverse=True):
    clean = curve(numbers, "qs4d", b)
    row = [_bits_text(b), _pct_se(clean["clean"], clean["se"][0])]
    for level in s.train_levels:
      without = _at_level(clean, level)
      row.append("" if without is None else _pct_se(*without))
      c = curve(numbers, "qs4d", b, level)
      row.append(f"{_pct_se(c['mean'][1], c['se'][1])} (clean {100 * c['clean']:.1f})")
    body.append(row)
  return (
    text + "\n\nNoise in training and test (the authors' panel d): each model trained with the "
    "noise at that level and tested with it, beside the model trained without it (the curve "
    "above).\n\n" + common.markdown_table(header, body)
  )


def _at_level(c: dict, level: float) -> tuple[float, float] | None:
  """(mean, SE) of curve `c` at `level` when it was evaluated there, else None."""
  for v, m, e in zip(c["levels"], c["mean"], c["se"], strict=True):
    if math.isclose(v, level):
      return m, e
  return None


def figure(numbers: dict, s: Settings, task: str, workdir: str) -> None:
  fig, (ax_a, ax_ours, ax_train) = common.new_figure(3, 4.6)
  for ax, series, widths in ((ax_a, "qs4d", s.bits), (ax_ours, "ours", _ours(s))):
    for b in sorted(widths, reverse=True):
      c = curve(numbers, series, b)
      x = 100 * np.array(c["levels"])
      mean, se = 100 * np.array(c["mean"]), 100 * np.array(c["se"])
      line = ax.plot(x, mean, marker="o", ms=3, label=_bits_text(b))
      ax.fill_between(x, mean - se, mean + se, color=line[0].get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("relative noise sigma (%)")
    ax.set_title(SERIES[series][1], fontsize=9)
    if widths:
      ax.legend(fontsize=7, title="A" if series == "qs4d" else "a_bar", title_fontsize=7)
    else:
      ax.text(0.5, 0.5, "not run in this variant", ha="center", transform=ax.transAxes)
  ax_a.set_ylabel("test accuracy (%)")
  for b in sorted(s.train_bits, reverse=True) if s.train_levels else ():
    clean = curve(numbers, "qs4d", b)
    xs, ys, es = [0.0], [clean["clean"]], [clean["se"][0]]
    for level in s.train_levels:
      c = curve(numbers, "qs4d", b, level)
      xs.append(100 * level)
      ys.append(c["mean"][1])
      es.append(c["se"][1])
    line = ax_train.errorbar(
      xs, 100 * np.array(ys), yerr=100 * np.array(es), marker="o", capsize=3, label=_bits_text(b)
    )
    upto = [i for i, v in enumerate(clean["levels"]) if v <= max(s.train_levels) + 1e-12]
    ax_train.plot(
      [100 * clean["levels"][i] for i in upto],
      [100 * clean["mean"][i] for i in upto],
      ls="--",
      color=line[0].get_color(),
      label=f"{_bits_text(b)}, trained without noise",
    )
  if s.train_levels:
    ax_train.legend(fontsize=7, title="A", title_fontsize=7)
  else:
    ax_train.text(0.5, 0.5, "not run in this variant", ha="center", transform=ax_train.transAxes)
  ax_train.set_xlabel("relative noise sigma in training and test (%)")
  ax_train.set_title("noise in training and test (A quantized)", fontsize=9)
  seeds = common.count(len(s.seeds), "seed")
  title = f"C3 noise on A ({task}, the authors' protocol; {seeds}, {s.draws} draws, +- SE)"
  common.finish_figure(fig, [ax_a, ax_ours, ax_train], title, workdir)


def summary(numbers: dict, judged: dict, s: Settings) -> str:
  sig = judged["sigma"]
  fp = sig["qs4d"][grid.FLOAT_BITS]
  # Our series' float model is the authors' float model, evaluated once more.
  n = sum(1 for r in numbers["models"] if r["series"] == "qs4d" or r["bits"] < grid.FLOAT_BITS)
  text = (
    f"{n} models trained ({common.count(len(s.seeds), 'seed')} each), {s.draws} noise draws "
    "per point. "
    f"sigma_10 (accuracy {s.drop_points:g} points below clean; range from mean -/+ SE): "
    f"fp {_sigma_text(fp)} %"
  )
  best = judged["best"]
  if best is None:
    text += (
      f"; no QAT model's clean accuracy is within {s.clean_within_points:g} points of fp, so "
      "none is compared."
    )
  else:
    text += (
      f"; the best QAT model within {s.clean_within_points:g} points of fp clean, A at "
      f"{best} bit, {_sigma_text(sig['qs4d'][best])} % ({judged['ratio']:.2f}x fp; the rule "
      f"asks {s.min_ratio:g}x beyond the SEs)."
    )
  others = ", ".join(
    f"{_bits_text(b)} {_sigma_text(sig['qs4d'][b])}"
    for b in sorted(s.bits, reverse=True)
    if b < grid.FLOAT_BITS
  )
  ours = ", ".join(
    f"{_bits_text(b)} {_sigma_text(sig['ours'][b])}" for b in sorted(_ours(s), reverse=True)
  )
  text += f" Every width of A: {others} %."
  if ours:
    text += f" Our series (a_bar quantized, noise on a_bar): {ours} %."
  for level in s.train_levels[-1:]:
    fp_clean = curve(numbers, "qs4d", grid.FLOAT_BITS)
    without = _at_level(fp_clean, level)
    with_noise = curve(numbers, "qs4d", grid.FLOAT_BITS, level)["mean"][1]
    if without is not None:
      text += (
        f" Training with the noise is what helps: at {100 * level:g} % the float model "
        f"scores {100 * with_noise:.1f} % trained with it against {100 * without[0]:.1f} % "
        "trained without."
      )
  text += " " + PAPER
  return text


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  figure(numbers, s, task, workdir)
  rule = (
    f"supported if the QAT model (A quantized, the authors' scheme) with the largest "
    f"sigma_10 among those within {s.clean_within_points:g} points of the float model's "
    f"clean accuracy has sigma_10 >= {s.min_ratio:g}x the float model's beyond the standard "
    f"errors (its mean - SE curve against the float's mean + SE curve); partly if only the "
    f"means satisfy it; else not supported. sigma_10: the relative noise level at which "
    f"mean test accuracy falls {s.drop_points:g} points below clean."
  )
  out = {**numbers, "sigma": judged["sigma"], "best": judged["best"], "ratio": judged["ratio"]}
  return common.Outcome(
    ID,
    TITLE,
    STATEMENT,
    rule,
    judged["verdict"],
    summary(numbers, judged, s),
    table(numbers, judged, s),
    out,
    protocol=PROTOCOL,
  )

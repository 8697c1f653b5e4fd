"""Claim configs, model reuse, the verdict rules and CLAIMS.md (ssm_aimc.claims).

The claims themselves train many models (minutes each); `make reproduce` runs them. Here:
every claim config resolves into valid experiments that agree across claims, a models
folder is reused or refused as documented, each claim's `judge` follows its rule on
hand-made numbers (and `render` draws it), and the report gathers what the runs wrote.
"""

import importlib
import os

import numpy as np
import pytest

from configs.claims import common
from ssm_aimc import claims, errors, experiment, runs
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import (
  c1_cost,
  c1_qs4d,
  c2_qs4d,
  c2_size_vs_precision,
  c3_qs4d,
  c3_robustness,
  c4_pruning,
  c4_qs4d,
  c5_deployment,
  grid,
  report,
)
from ssm_aimc.claims import common as claims_common


def _claim_config(name: str, variant: str = ""):
  module = claims.CONFIG_FILES[name].removesuffix(".py")
  return importlib.import_module(f"configs.claims.{module}").get_config(variant)


def _runs(config, workdir) -> runs.Runs:
  return report.runs_of(experiment.from_config(config), str(workdir))


def test_config_files_exist_for_every_claim():
  assert set(claims.CONFIG_FILES) == set(claims.CLAIMS)
  here = os.path.join(os.path.dirname(__file__), "..", "configs", "claims")
  for file in claims.CONFIG_FILES.values():
    assert os.path.exists(os.path.join(here, file))


@pytest.mark.parametrize("variant", common.VARIANTS)
def test_claim_models_are_valid_and_agree_across_claims(variant, tmp_path):
  seen = {}
  for name in claims.CLAIMS:
    config = _claim_config(name, variant)
    assert config.claim.name == name
    exp = experiment.from_config(config)
    claims_common.settings(claims.CLAIMS[name].Settings, exp.claim)
    zoo = report.runs_of(exp, str(tmp_path))
    for model in zoo.names():
      model_exp = zoo.experiment(model)  # Every section validated.
      assert (
        model_exp.claim is None and (model_exp.quant.spec is not None) == model_exp.quant.enabled
      )
      tree = experiment.to_dict(model_exp)
      for key in workdir_lib.NOT_TRAINING_KEYS:
        tree.pop(key)
      # The same name means the same training run in every claim (shared models folder).
      assert seen.setdefault(model, tree) == tree, model
  assert {"float", "qat_w4a8", "noise_aware_w4a8"} <= set(seen)


def test_fine_tunes_start_from_their_parent_and_variants_differ(tmp_path):
  zoo = _runs(_claim_config("c1"), tmp_path)
  assert zoo.experiment("qat_ternary_prune75").init_checkpoint == zoo.workdir("qat_ternary")
  assert zoo.experiment("qat_ternary").quant.weight_bits == 2
  assert zoo.experiment("float").init_checkpoint == ""
  paper = _claim_config("c1", "paper")
  assert (paper.data.task, paper.model.d_model, paper.model.d_state) == ("smnist", 128, 64)
  with pytest.raises(ValueError, match="variant"):
    _claim_config("c3", "bogus")


def test_overrides_apply_nested_and_reject_unknown_keys(tmp_path):
  base = _runs(_claim_config("c1"), tmp_path).base
  assert base.claim is None
  recipes = {
    "good": {"init_from": "", "overrides": {"quant": {"weight_bits": 3}, "num_epochs": 7}},
    "typo": {"init_from": "", "overrides": {"quant": {"wieght_bits": 3}}},
  }
  zoo = runs.Runs(base, str(tmp_path), recipes)
  merged = zoo.experiment("good")
  assert (merged.quant.weight_bits, merged.num_epochs, base.num_epochs) == (3, 7, 60)
  with pytest.raises(errors.ConfigError, match="quant.wieght_bits"):
    zoo.experiment("typo")


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  workdir_lib.write_json(path, obj)


def test_models_reuse_a_finished_run_and_refuse_another_config(tmp_path):
  config = _claim_config("c5", "smoke")
  config.claim.models_dir = str(tmp_path / "models")
  zoo = _runs(config, tmp_path)
  folder = zoo.workdir("float")
  stored = experiment.to_dict(zoo.experiment("float"))
  stored["progress_bar"] = not stored["progress_bar"]  # Not part of training: ignored.
  stored["deploy"]["seeds"] = 99
  _write(os.path.join(folder, "config.json"), stored)
  _write(os.path.join(folder, "results.json"), {"test_accuracy": 0.5, "wall_time_s": 12.0})
  assert zoo.train("float")["test_accuracy"] == 0.5
  assert zoo.reused == ["float"] and zoo.seconds == {"float": 12.0}

  stored["seed"] = 7
  _write(os.path.join(folder, "config.json"), stored)
  before = open(os.path.join(folder, "config.json")).read()
  with pytest.raises(errors.ConfigError, match="seed: 7 there, 0 now"):
    _runs(config, tmp_path).train("float")
  assert open(os.path.join(folder, "config.json")).read() == before
  with pytest.raises(errors.ConfigError, match="not defined"):
    zoo.experiment("qat_w2a2")


def test_run_claim_rejects_configs_without_a_known_claim_or_with_unknown_settings(tmp_path):
  config = _claim_config("c1", "smoke")
  without = config.to_dict()
  del without["claim"]
  with pytest.raises(errors.ConfigError, match="claim config"):
    claims.run_claim(without, str(tmp_path))
  config.claim.name = "c9"
  with pytest.raises(errors.ConfigError, match="c9"):
    claims.run_claim(config, str(tmp_path))
  config.claim.name = "c1"
  config.claim.max_los_points = 1.0
  with pytest.raises(errors.ConfigError, match="did you mean 'claim.max_loss_points'"):
    claims.run_claim(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # Refused before anything was trained.
  del config.claim["max_los_points"]
  del config.claim["baseline"]
  with pytest.raises(errors.ConfigError, match="needs claim.baseline"):
    claims.run_claim(config, str(tmp_path))


def test_iso_memory_pairs():
  rows = [
    {"params": 100, "weight_bits": 8, "memory_bits": 800, "test_accuracy": 0.9},
    {"params": 400, "weight_bits": 2, "memory_bits": 850, "test_accuracy": 0.95},
    {"params": 400, "weight_bits": 4, "memory_bits": 1600, "test_accuracy": 0.97},
    {"params": 200, "weight_bits": 2, "memory_bits": 400, "test_accuracy": 0.8},
  ]
  pairs = c2_size_vs_precision.iso_memory_pairs(rows, tolerance=1.5)
  assert [(b["memory_bits"], s["memory_bits"]) for b, s in pairs] == [(850, 800)]
  assert len(c2_size_vs_precision.iso_memory_pairs(rows, tolerance=2.1)) == 3


def _noise_rows(drops, stds):
  return [
    {"prog_noise_scale": s, "drop": d, "analog_accuracy_std": sd}
    for s, d, sd in zip((0.0, 1.0, 2.0), drops, stds, strict=True)
  ]


def test_compare_drops_uses_the_standard_error_over_chips():
  compare, more_robust = c3_robustness.compare_drops, c3_robustness.more_robust
  base = _noise_rows((0.0, 0.02, 0.10), (0.01, 0.01, 0.02))
  # Standard errors over 4 chips: hypot(0.01, 0.01) / 2 = 0.0071, hypot(0.02, 0.02) / 2 = 0.014.
  model = _noise_rows((0.5, 0.015, 0.05), (0.01, 0.01, 0.02))
  assert compare(model, base, chips=4) == ["same", "better"]
  assert compare(model, base, chips=400) == ["better", "better"]
  worse = _noise_rows((0.0, 0.05, 0.10), (0.01, 0.01, 0.02))
  assert compare(worse, base, chips=4) == ["worse", "same"]
  assert more_robust(["same", "better"]) and more_robust(["better"])
  assert not more_robust(["worse", "better", "better"])
  assert not more_robust(["same", "same", "better"]) and not more_robust([])


def test_largest_kept_ratio():
  rows = [{"ratio": r, "after": a} for r, a in ((0, 0.98), (0.5, 0.975), (0.75, 0.965), (0.9, 0.9))]
  assert c4_pruning.largest_kept(rows, 1.0)["ratio"] == 0.5
  assert c4_pruning.largest_kept(rows, 2.0)["ratio"] == 0.75
  assert c4_pruning.largest_kept(rows, 0.1)["ratio"] == 0


def _fake_run(folder, claim, verdict, **extra):
  os.makedirs(folder)
  with open(os.path.join(folder, claims_common.FIGURE), "wb") as f:
    f.write(b"png")
  record = {
    "claim": claim,
    "title": f"title {claim}",
    "statement": "statement",
    "rule": "rule",
    "verdict": verdict,
    "summary": f"summary of {claim}",
    "table": "| a |\n|---|\n| 1 |",
    "numbers": {},
    "figure": claims_common.FIGURE,
    "task": "digits",
    "wall_time_s": 90.0,
    "standalone_time_s": 120.0,
    "stage_seconds": {},
    "reused": ["float"],
    "platform": "cpu",
    "device": "2-core CPU",
    "date": "today",
    "command": f"python launch.py --config=configs/claims/{claim}.py --mode=claim",
    **extra,
  }
  _write(os.path.join(folder, report.CLAIM_JSON), record)


def test_write_report_gathers_sections_in_claim_order(tmp_path):
  runs_dir = tmp_path / "runs"
  with pytest.raises(errors.DataError, match="run the claims"):
    claims.write_report(str(runs_dir), str(tmp_path / "CLAIMS.md"))
  _fake_run(runs_dir / "z", "C2", claims.NOT_SUPPORTED)
  _fake_run(runs_dir / "a", "C1", claims.SUPPORTED)
  out = claims.write_report(str(runs_dir), str(tmp_path / "CLAIMS.md"), "figs")
  text = open(out).read()
  assert text.index("## C1") < text.index("## C2")
  assert "**supported**" in text and "**not supported**" in text
  assert "![C1](figs/c1.png)" in text and "summary of C2" in text
  assert "reused from earlier runs: float" in text and "2.0 min when run alone" in text
  assert open(tmp_path / "figs" / "c2.png", "rb").read() == b"png"
  # A claim measured by the authors' protocol comes before ours, each with its own figure.
  _fake_run(
    runs_dir / "b",
    "C1",
    claims.PARTLY,
    protocol=claims_common.AUTHORS,
    name="c1_x",
    standalone_time_s=None,  # A kept stage recorded no time.
  )
  text = open(claims.write_report(str(runs_dir), str(tmp_path / "CLAIMS.md"), "figs")).read()
  assert text.count("unknown when run alone") == 1
  assert "| **partly supported** | unknown | 1.5 min |" in text
  authors = text.index("## C1: title C1 (the authors' protocol) — **partly supported**")
  assert authors < text.index("## C1: title C1 (our protocol)") < text.index("## C2")
  assert "![C1](figs/c1_x.png)" in text and "![C1](figs/c1.png)" in text


# ---------------------------------------------------------------------------------------
# Each claim's verdict on hand-made numbers (what its `measure` returns), with no training
# and nothing replaced: `judge` is a pure function of the numbers and the settings, and
# `render` writes the summary, the table and the figure from them.
# ---------------------------------------------------------------------------------------


def _settings(claim, **settings):
  config = _claim_config(next(name for name, module in claims.CLAIMS.items() if module is claim))
  for key, value in settings.items():
    config.claim[key] = value
  return claims_common.settings(claim.Settings, experiment.from_config(config).claim)


def _judge(claim, numbers, **settings) -> str:
  return claim.judge(numbers, _settings(claim, **settings))["verdict"]


def _render(claim, numbers, tmp_path, **settings) -> claims_common.Outcome:
  s = _settings(claim, **settings)
  outcome = claim.render(numbers, claim.judge(numbers, s), s, "digits", str(tmp_path))
  assert os.path.getsize(tmp_path / claims_common.FIGURE) > 1000
  return outcome


def _cost(accuracy, memory_bits, weight_bits, macs=1000.0):
  return {
    "test_accuracy": accuracy,
    "memory_bits": memory_bits,
    "fp32_memory_bits": 2e6,
    "macs_per_step": macs,
    "bitops_per_step": macs * weight_bits * (32 if weight_bits == 32 else 8),
  }


def _c1_numbers(**overrides):
  results = {
    "float": _cost(0.980, 2e6, 32),
    "qat_w8a8": _cost(0.981, 5e5, 8),
    "qat_w4a8": _cost(0.975, 3e5, 4),
    "qat_w4a8_prune75": _cost(0.95, 2e5, 4, macs=900.0),
    "qat_ternary": _cost(0.960, 1.2e5, 2),
    "qat_ternary_prune75": _cost(0.955, 9e4, 2, macs=800.0),
  } | overrides
  energy = {"aimc_j": 1e-6, "digital_fp32_j": 6e-5, "digital_int8_j": 1e-5, "tiles": 10}
  return {"rows": [c1_cost.cost_row(name, r, energy) for name, r in results.items()]}


def test_cost_reduction_judges_the_best_model_within_the_loss(tmp_path):
  numbers = _c1_numbers()
  outcome = _render(c1_cost, numbers, tmp_path)
  rows = {r["model"]: r for r in outcome.numbers["rows"]}
  # Against the float model: memory 2e6 / 3e5, bit-operations 32 * 32 / (4 * 8), energy 60.
  assert rows["qat_w4a8"]["memory_x"] == pytest.approx(2e6 / 3e5)
  assert rows["qat_w4a8"]["bitops_x"] == pytest.approx(32.0)
  assert rows["qat_ternary_prune75"]["bitops_x"] == pytest.approx(1024 / 16 / 0.8)
  assert outcome.numbers["best_within_loss"]["bitops_x"] == "qat_w4a8"
  assert outcome.verdict == claims.PARTLY  # 32x bit-operations; energy (60x) is not judged.
  assert "qat_ternary_prune75, -2.50 points" in outcome.summary
  assert _judge(c1_cost, numbers, target_reduction=32.0) == claims.SUPPORTED
  assert _judge(c1_cost, numbers, target_reduction=33.0) == claims.PARTLY
  strict = _render(c1_cost, numbers, tmp_path, max_loss_points=-0.5)  # Must beat float by 0.5.
  assert strict.verdict == claims.NOT_SUPPORTED and "No quantized model" in strict.summary
  # 100x fewer memory bits within the loss: supported on memory alone.
  assert _judge(c1_cost, _c1_numbers(qat_ternary=_cost(0.975, 2e4, 2))) == claims.SUPPORTED
  # Nothing reaches 10x within the loss: not supported even though all keep accuracy.
  assert _judge(c1_cost, numbers, target_reduction=1000.0) == claims.NOT_SUPPORTED


def _metrics(accuracy, ace, kb, adc, widths=None):
  row = {"test_accuracy": accuracy, "val_accuracy": accuracy, "ace": ace, "model_size_kb": kb}
  return row | {"adc_complexity": adc} | ({} if widths is None else {"widths": widths})


def _c1_qs4d_numbers(qat_minimal_accuracy=0.972):
  return {
    "fp": _metrics(0.98, 1024e6, 100.0, 3200.0),
    "ptq": {"all": {2: 0.5, 8: 0.978, 10: 0.98}, "A": {2: 0.9, 4: 0.979}, "dt": {2: 0.1}},
    "qat": {"all": {2: 0.97, 4: 0.979, 8: 0.98}, "A": {1: 0.96, 2: 0.98}, "dt": {2: 0.2}},
    "ptq_minimal": _metrics(0.975, 1024e6 / 16, 20.0, 800.0, {"A": 4}),
    "qat_minimal": _metrics(qat_minimal_accuracy, 1024e6 / 128, 10.0, 400.0, {"A": 2}),
  }


def test_bits_per_group_judge_the_minimal_qat_models_ace(tmp_path):
  numbers = _c1_qs4d_numbers()
  outcome = _render(c1_qs4d, numbers, tmp_path)
  assert outcome.protocol == claims_common.AUTHORS
  # Fewest bits within 0.5 point of 98 %: (QAT, PTQ); a group that never gets there: None.
  assert outcome.numbers["bits_to_float"] == {"all": (4, 8), "A": (2, 4), "dt": (None, None)}
  assert outcome.numbers["reductions"]["qat"] == pytest.approx(
    {"ace": 128.0, "model_size_kb": 10.0, "adc_complexity": 8.0}
  )
  assert outcome.verdict == claims.SUPPORTED  # 128x ACE at 0.8 points.
  assert (
    "| dt | float | float |" in outcome.table
    and "-93.75 %" in outcome.table
    and "-50.00 %" in outcome.table
  )
  assert _judge(c1_qs4d, numbers, target_reduction=200.0) == claims.PARTLY
  assert _judge(c1_qs4d, numbers, target_reduction=2000.0) == claims.NOT_SUPPORTED
  assert _judge(c1_qs4d, numbers, max_loss_points=0.5) == claims.NOT_SUPPORTED
  assert _judge(c1_qs4d, _c1_qs4d_numbers(qat_minimal_accuracy=0.99)) == claims.SUPPORTED


def test_the_authors_reductions_compose_to_their_fp_to_qat_factor():
  # Their HD model: -91.15 % then -91.30 % of ACE is about 130x (the paper's figure).
  assert c1_qs4d.paper_reduction("ace", "HD") == pytest.approx(129.9, abs=0.1)
  assert c1_qs4d.paper_reduction("model_size_kb", "sCIFAR") == pytest.approx(8.64, abs=0.01)


def test_bits_per_group_minimal_widths_and_quantized_experiments():
  curves = {"all": {2: 0.97, 4: 0.98}, "A": {1: 0.975, 3: 0.98}, "C": {1: 0.1}}
  # "all" is no group of the minimal model; a group that never reaches float stays float.
  assert c1_qs4d.minimal_widths(curves, 0.98, 0.5) == {"A": 1}
  base = experiment.from_config(_claim_config("c1_qs4d", "smoke"))
  exp = grid.quantized(base, {"A": 3, "en-/decoder": 2, "state": 5})
  q = exp.quant
  assert (q.scheme, q.weight_bits, q.act_bits, q.a_bar_bits) == ("qs4d", 32, 32, 32)
  bits = dict(q.group_bits)
  assert (bits["a"], bits["encoder"], bits["decoder"], bits["state"], bits["c"]) == (3, 2, 2, 5, 0)
  assert exp.model == base.model  # The state group rounds what the model's path has.
  every = grid.quantized(base, {"all": 4}).quant
  assert (every.weight_bits, every.act_bits, every.a_bar_bits) == (4, 4, 4)
  # Later entries win: every group at 4 bits but the state.
  assert dict(grid.quantized(base, {"all": 4, "state": 32}).quant.group_bits)["state"] == 32
  with pytest.raises(errors.ConfigError, match="unknown"):
    c1_qs4d.Settings("float", ("A", "B"), (1,), (1,), 1, 2e-3, 1, 0.5, 1.0, 100.0)


def test_kept_rows_are_computed_once_timed_and_refused_for_other_experiments(tmp_path):
  base = experiment.from_config(_claim_config("c1_qs4d", "smoke"))
  exps = [grid.quantized(base, {"A": b}) for b in (2, 3)]
  calls = []

  def compute(e):
    calls.append(len(e))
    return [{"test_accuracy": 0.5 + i} for i in range(len(e))]

  first = runs.Runs(base, str(tmp_path), {})
  rows = grid.kept(str(tmp_path), "ptq", exps, compute, first)
  assert rows == [{"test_accuracy": 0.5}, {"test_accuracy": 1.5}] and calls == [2]
  assert first.seconds["ptq"] >= 0 and first.reused == []
  # A later process reuses the rows, with the time the first one took.
  later = runs.Runs(base, str(tmp_path), {})
  assert grid.kept(str(tmp_path), "ptq", exps, compute, later) == rows and calls == [2]
  assert later.reused == ["ptq"] and later.seconds["ptq"] == first.seconds["ptq"]
  assert later.standalone_seconds(1.0) == 1.0 + first.seconds["ptq"]
  with pytest.raises(errors.ConfigError, match="another config"):
    grid.kept(str(tmp_path), "ptq", exps[:1], compute)
  assert calls == [2]
  # Rows an older version kept carry no time: the standalone time is unknown, not short.
  stored = workdir_lib.read_json(tmp_path / "ptq.json")
  del stored["wall_time_s"]
  workdir_lib.write_json(str(tmp_path / "ptq.json"), stored)
  older = runs.Runs(base, str(tmp_path), {})
  assert grid.kept(str(tmp_path), "ptq", exps, compute, older) == rows
  assert older.standalone_seconds(1.0) is None


def _size_row(n, h, bits, accuracy):
  params = h * (h + n)
  weight = params * min(bits, 32)
  return {
    "d_state": n,
    "d_model": h,
    "bits": bits,
    "params": params,
    "test_accuracy": accuracy,
    "val_accuracy": accuracy,
    "ace": 8.0 * weight,
    "model_size_kb": weight / 8000,
    "adc_complexity": 1.0,
  }


def test_size_against_precision_by_the_authors_protocol(tmp_path):
  base = {"d_state": 8, "d_model": 16}
  rows = [
    _size_row(8, 16, 32, 0.90),  # The base size in float.
    _size_row(8, 16, 4, 0.85),
    _size_row(16, 16, 32, 0.93),
    _size_row(16, 16, 4, 0.896),  # Larger N at 4 bits: within 0.5 point of the base in float.
    _size_row(8, 32, 32, 0.95),
    _size_row(8, 32, 4, 0.80),
  ]
  numbers = {"rows": rows, "base": base}
  outcome = _render(c2_qs4d, numbers, tmp_path, match_points=0.5)
  assert outcome.protocol == claims_common.AUTHORS
  assert outcome.verdict == claims.SUPPORTED  # 384 params at 4 bits < 128 x 32 bits in kB.
  assert outcome.numbers["pairs"] == 1 and outcome.numbers["cheaper_pairs"] == 1
  assert "| 16 | 93.00 | 89.60 |" in outcome.table  # The N panel: N rows, one column per width.
  assert [n for n, _ in c2_qs4d.curves(numbers, "N")[4]] == [8, 16]
  assert [h for h, _ in c2_qs4d.curves(numbers, "H")[32]] == [16, 32]
  # Only within 0.3 point: no larger model matches.
  assert _judge(c2_qs4d, numbers, match_points=0.3) == claims.NOT_SUPPORTED
  # Matching but never cheaper: partly.
  costly = [dict(r, model_size_kb=1e9, ace=1e12) if r["bits"] == 4 else r for r in rows]
  assert _judge(c2_qs4d, {"rows": costly, "base": base}, match_points=0.5) == claims.PARTLY


def _sweep_row(h, bits, accuracy, pareto):
  params = 10 * h * h
  return {
    "d_model": h,
    "d_state": 8,
    "size": f"H={h}, N=8",
    "weight_bits": bits,
    "params": params,
    "memory_bits": params * bits,
    "test_accuracy": accuracy,
    "pareto": pareto,
  }


def test_size_vs_precision_judges_the_front_and_the_iso_memory_pairs(tmp_path):
  rows = [_sweep_row(16, 8, 0.90, True), _sweep_row(32, 2, 0.93, True)]
  rows.append(_sweep_row(32, 8, 0.95, True))
  outcome = _render(c2_size_vs_precision, {"rows": rows}, tmp_path)
  assert outcome.verdict == claims.SUPPORTED
  assert outcome.numbers["iso_pairs"] == outcome.numbers["iso_wins"] == 1
  assert "Largest gain: H=32, N=8 at 2 bits" in outcome.summary
  # The front mixes sizes and widths, but the bigger 2-bit model loses its iso-memory pair.
  rows[1]["test_accuracy"] = 0.89
  assert _judge(c2_size_vs_precision, {"rows": rows}) == claims.PARTLY
  rows[1]["test_accuracy"], rows[1]["pareto"] = 0.85, False  # Front: one width; no win.
  assert _judge(c2_size_vs_precision, {"rows": rows}) == claims.NOT_SUPPORTED


def test_size_vs_precision_refuses_a_sweep_of_another_config(tmp_path):
  # A sweep folder written by another config is refused, not trained over.
  config = _claim_config("c2", "smoke")
  _write(str(tmp_path / "sweep" / "config.json"), {"seed": 7})
  exp = experiment.from_config(config)
  with pytest.raises(errors.ConfigError, match="another config"):
    c2_size_vs_precision.measure(exp, report.runs_of(exp, str(tmp_path)), str(tmp_path))


def _c3_numbers(drops):
  scales = (0.0, 1.0, 2.0, 4.0)
  curves = {}
  for name, d in drops.items():
    rows = [
      {"prog_noise_scale": s, "analog_accuracy_mean": 0.98 - x, "analog_accuracy_std": 0.002}
      for s, x in zip(scales, d, strict=True)
    ]
    curves[name] = {"digital": 0.98, "rows": rows}
  return {"curves": curves}


def test_robustness_compares_drops_with_the_float_model(tmp_path):
  drops = {"float": (0.0, 0.01, 0.03, 0.08), "qat_w4a8": (0.0, 0.01, 0.03, 0.09)}
  drops["noise_aware_w4a8"] = (0.0, 0.0, 0.01, 0.03)
  outcome = _render(c3_robustness, _c3_numbers(drops), tmp_path)
  assert outcome.numbers["qat_vs_float"] == ["same", "same", "worse"]
  assert outcome.numbers["noise_aware_vs_float"] == ["better", "better", "better"]
  assert outcome.verdict == claims.PARTLY
  assert "| qat_w4a8 | 98.00 | 98.00 +- 0.20 |" in outcome.table
  drops["qat_w4a8"] = (0.0, 0.005, 0.02, 0.08)  # Better at 1x and 2x, the same at 4x.
  assert _judge(c3_robustness, _c3_numbers(drops)) == claims.SUPPORTED
  drops["qat_w4a8"] = drops["noise_aware_w4a8"] = drops["float"]
  assert _judge(c3_robustness, _c3_numbers(drops)) == claims.NOT_SUPPORTED


def _pruned(before, after, memory_bits, ratio):
  return {
    **_cost(after, memory_bits, 4),
    "test_accuracy_before_finetune": before,
    "prune": {"pruned_fraction": ratio, "ratio": ratio},
  }


def _c4_numbers(results):
  s = _settings(c4_pruning)
  return {"families": c4_pruning.families(s, list(results), results.__getitem__)}


def test_pruning_finds_the_largest_ratio_kept(tmp_path):
  results = {"float": _cost(0.98, 2e6, 32), "qat_w4a8": _cost(0.98, 3e5, 4)}
  for p, (f_after, q_after) in {50: (0.975, 0.98), 75: (0.96, 0.975), 90: (0.9, 0.95)}.items():
    results[f"float_prune{p}"] = _pruned(0.5, f_after, 2e6 * (1 - p / 200), p / 100)
    results[f"qat_w4a8_prune{p}"] = _pruned(0.5, q_after, 3e5 * (1 - p / 200), p / 100)
  outcome = _render(c4_pruning, _c4_numbers(results), tmp_path)
  assert outcome.verdict == claims.SUPPORTED  # QAT 75 % within 1 point; float only 50 %.
  assert "qat_w4a8 75 %" in outcome.summary
  results["float_prune75"] = _pruned(0.5, 0.975, 1.2e6, 0.75)
  assert _judge(c4_pruning, _c4_numbers(results)) == claims.PARTLY
  results["qat_w4a8_prune50"] = _pruned(0.5, 0.95, 2e5, 0.5)  # QAT keeps nothing pruned.
  results["qat_w4a8_prune75"] = _pruned(0.5, 0.95, 2e5, 0.75)
  assert _judge(c4_pruning, _c4_numbers(results)) == claims.NOT_SUPPORTED


def _greedy_row(bits, seed, structured, linear=0.5):
  def kind(share):
    return {
      "shares": {"total": share, "layer 0": min(1.0, 1.5 * share), "layer 1": share / 2},
      "val_before": 0.95,
      "val_after": 0.945,
      "test_before": 0.96,
      "test_after": 0.94,
      "units": 16,
      "evaluations": 20,
      "seconds": 1.0,
    }

  return {
    "name": f"m{bits}_{seed}",
    "bits": bits,
    "seed": seed,
    "linear": kind(linear),
    "unstructured": kind(0.3),
    "structured": kind(structured),
  }


def test_greedy_pruning_by_the_authors_protocol(tmp_path):
  shares = {32: (0.10, 0.12, 0.08), 10: (0.12, 0.15, 0.1), 7: (0.2, 0.22, 0.18)}
  rows = [_greedy_row(b, i, v) for b, vs in shares.items() for i, v in enumerate(vs)]
  numbers = {"models": rows, "layers": 2, "val_examples": 144}
  outcome = _render(c4_qs4d, numbers, tmp_path)
  assert outcome.protocol == claims_common.AUTHORS
  assert outcome.verdict == claims.SUPPORTED  # 0.2 / 0.1 = 2x, ranges 18-22 vs 8-12 apart.
  assert "| structured kernel | 7 bit | 30.0 (27-33) | 10.0 (9-11) | 20.0 (18-22) | ~21 |" in (
    outcome.table
  )
  assert "2.00x" in outcome.summary and "2.0 points" in outcome.summary
  assert c4_qs4d.spread(numbers, "structured", 32) == pytest.approx(
    {"mean": 0.1, "min": 0.08, "max": 0.12, "n": 3}
  )
  # A 2x mean whose seed ranges overlap: partly; below the gain: not supported.
  overlap = [dict(r) for r in rows]
  overlap[6] = _greedy_row(7, 0, 0.11)
  overlap[7] = _greedy_row(7, 1, 0.35)
  assert _judge(c4_qs4d, {**numbers, "models": overlap}) == claims.PARTLY
  assert _judge(c4_qs4d, numbers, min_gain=2.5) == claims.NOT_SUPPORTED
  # Nothing pruned in float but something at 7 bit: an infinite gain, still judged.
  zero = [
    _greedy_row(b, i, 0.0 if b == 32 else v) for b, vs in shares.items() for i, v in enumerate(vs)
  ]
  assert _judge(c4_qs4d, {**numbers, "models": zero}) == claims.SUPPORTED


def test_greedy_claim_settings_are_checked():
  with pytest.raises(errors.ConfigError, match="unknown"):
    _settings(c4_qs4d, kinds=("channels",))
  with pytest.raises(errors.ConfigError, match="float width"):
    _settings(c4_qs4d, bits=(7, 10))
  recipes = c4_qs4d.recipes(
    experiment.from_config(_claim_config("c4_qs4d", "smoke")), _settings(c4_qs4d)
  )
  assert len(recipes) == 9 and all(r["overrides"]["seed"] in (0, 1, 2) for r in recipes.values())
  seven = [r for n, r in recipes.items() if "_7bit_" in n]
  assert len(seven) == 3 and all(r["overrides"]["quant.weight_bits"] == 7 for r in seven)


LEVELS = (0.0, 0.005, 0.01, 0.02)


def _noise_row(series, bits, seed, curve, spread=0.0, train_level=0.0, draws=4):
  """A c3_qs4d model row: accuracy `curve` per level, draws spread evenly by +-spread."""
  offsets = np.linspace(-spread, spread, draws)
  levels = LEVELS if not train_level else (0.0, train_level)
  return {
    "series": series,
    "bits": bits,
    "seed": seed,
    "train_level": train_level,
    "digital": curve[0],
    "levels": list(levels),
    "accuracies": [[a + o for o in offsets] for a in curve],
  }


def _noise_numbers(fp_curve, six_curve, four_curve, seed_shift=0.01):
  rows = []
  for seed, shift in enumerate((-seed_shift, 0.0, seed_shift)):
    moved = lambda c, shift=shift: [v + shift for v in c]
    rows += [
      _noise_row("qs4d", 32, seed, moved(fp_curve)),
      _noise_row("qs4d", 6, seed, moved(six_curve)),
      _noise_row("qs4d", 4, seed, moved(four_curve)),
      _noise_row("ours", 32, seed, moved(fp_curve)),
      _noise_row("ours", 6, seed, moved(six_curve)),
      _noise_row("qs4d", 32, seed, moved([0.95, 0.9]), train_level=0.02),
      _noise_row("qs4d", 6, seed, moved([0.94, 0.92]), train_level=0.02),
    ]
  return {"models": rows}


# The c3_qs4d settings of the hand-made numbers.
SMALL_NOISE = dict(
  bits=(32, 6, 4), ours_bits=(6,), test_levels=LEVELS, train_levels=(0.02,), train_bits=(32, 6)
)


def _noise_settings(**extra):
  return _settings(c3_qs4d, **{**SMALL_NOISE, **extra})


def test_the_noise_level_of_a_given_drop_is_interpolated_between_levels():
  assert c3_qs4d.level_at_drop(LEVELS, [0.9, 0.85, 0.75, 0.5], 0.8) == (
    pytest.approx(0.0075),
    False,
  )
  assert c3_qs4d.level_at_drop(LEVELS, [0.9, 0.9, 0.9, 0.85], 0.8) == (0.02, True)
  assert c3_qs4d.level_at_drop(LEVELS, [0.9, 0.7, 0.9, 0.9], 0.8) == (
    pytest.approx(0.0025),
    False,
  )


def test_noise_on_a_by_the_authors_protocol(tmp_path):
  fp = [0.95, 0.90, 0.85, 0.40]  # 10 points down at 1 %.
  six = [0.94, 0.93, 0.91, 0.84]  # At 2 % exactly: 2x fp.
  four = [0.60, 0.60, 0.60, 0.60]  # Never drops, but starts 35 points below fp.
  numbers = _noise_numbers(fp, six, four)
  s = _noise_settings()
  judged = c3_qs4d.judge(numbers, s)
  assert judged["best"] == 6 and judged["eligible"] == [6]  # 4 bit: not within 5 points.
  assert judged["sigma"]["qs4d"][32]["mean"] == pytest.approx(0.01)
  assert judged["sigma"]["qs4d"][6]["mean"] == pytest.approx(0.02)
  assert judged["sigma"]["qs4d"][4]["censored"]
  assert judged["ratio"] == pytest.approx(2.0)
  # Seeds 1 point apart: SE 0.58 points, small against the gap.
  assert judged["verdict"] == claims.SUPPORTED
  c = c3_qs4d.curve(numbers, "qs4d", 32)
  assert c["mean"] == pytest.approx(fp) and c["se"][0] == pytest.approx(0.01 / np.sqrt(3))
  outcome = _render(
    c3_qs4d,
    numbers,
    tmp_path,
    **SMALL_NOISE,
  )
  assert outcome.protocol == claims_common.AUTHORS
  assert "| authors' | 6 bit | 94.0 +- 0.6 | 93.0 +- 0.6 | 91.0 +- 0.6 | 84.0 +- 0.6 |" in (
    outcome.table
  )
  # Trained with the noise (at 2 %) beside trained without it (the test-only curve at 2 %).
  assert "| 6 bit | 94.0 +- 0.6 | 84.0 +- 0.6 | 92.0 +- 0.6 (clean 94.0) |" in outcome.table
  assert "2.00x fp" in outcome.summary and "18 models trained" in outcome.summary
  assert "scores 90.0 % trained with it against 40.0 % trained without" in outcome.summary
  # Seeds 8 points apart: the SE bands meet, only the means satisfy the rule.
  spread = _noise_numbers(fp, six, four, seed_shift=0.08)
  assert _judge(c3_qs4d, spread, **SMALL_NOISE) == claims.PARTLY
  # The mnist5k variant's shape: no series of ours, no models trained with the noise.
  short = _render(
    c3_qs4d, numbers, tmp_path, **{**SMALL_NOISE, "ours_bits": (), "train_levels": ()}
  )
  assert "| ours |" not in short.table and "training and test" not in short.table
  # A QAT model no more robust than float: not supported; no eligible model: not supported.
  assert c3_qs4d.judge(_noise_numbers(fp, fp, four), s)["verdict"] == claims.NOT_SUPPORTED
  low = c3_qs4d.judge(_noise_numbers(fp, four, four), s)
  assert low["verdict"] == claims.NOT_SUPPORTED and low["best"] is None


def test_noise_claim_models_and_settings():
  s = _noise_settings()
  models = c3_qs4d.models(s)
  # 3 widths + 2 of ours (fp again, 6 bit) + 2 trained with noise, 3 seeds each.
  assert len(models) == 21
  exp = experiment.from_config(_claim_config("c3_qs4d", "smoke"))
  names = {m.name(exp) for m in models}
  assert len(names) == 18  # Our float model is the authors' float model.
  six = c3_qs4d.Model("qs4d", 6, 1).overrides()
  assert six["quant.group_bits.a"] == 6 and six["quant.weight_bits"] == 32 and six["seed"] == 1
  ours = c3_qs4d.Model("ours", 6, 0).overrides()
  assert ours["quant.a_bar_bits"] == 6 and ours["quant.scheme"] == "ssm_aimc"
  noisy = c3_qs4d.Model("qs4d", 32, 0, 0.05).overrides()
  assert noisy["hardware.a_noise"] == 0.05 and noisy["hardware.train"]
  assert noisy["hardware.device"] == "ideal"
  for m in models:
    experiment.override(exp, m.overrides())  # Every model a valid experiment.
  with pytest.raises(errors.ConfigError, match="start at 0"):
    _noise_settings(test_levels=(0.01, 0.02))
  with pytest.raises(errors.ConfigError, match="float width"):
    _noise_settings(bits=(8, 6))


def _deployed(pcm, rram, gain=60.0):
  chips = {
    d: {"analog_accuracy_mean": m, "analog_accuracy_std": 0.003, "noise_seeds": 20}
    for d, m in (("pcm_like", pcm), ("rram_taox", rram))
  }
  return {
    "test_accuracy": 0.99,
    "chips": chips,
    "noise_seeds": 20,
    "tiles": 275,
    "energy_vs_fp32": gain,
    "energy_per_inference_j": {"aimc": 1e-6, "digital_fp32": 6e-5, "digital_int8": 1e-5},
  }


def test_deployment_judges_the_gap_and_the_energy(tmp_path):
  numbers = {
    "models": {"float": _deployed(0.98, 0.985), "noise_aware_w4a8": _deployed(0.972, 0.985)}
  }
  outcome = _render(c5_deployment, numbers, tmp_path)
  assert outcome.numbers["gaps_points"] == pytest.approx({"pcm_like": 1.8, "rram_taox": 0.5})
  assert outcome.verdict == claims.SUPPORTED
  assert "For comparison, chip minus software: float -1.00 points on pcm_like" in outcome.summary
  assert _judge(c5_deployment, numbers, max_gap_points=1.0) == claims.PARTLY
  assert _judge(c5_deployment, numbers, min_energy_gain=100.0) == claims.PARTLY
  numbers["models"]["noise_aware_w4a8"] = _deployed(0.9, 0.985, gain=5.0)
  assert _judge(c5_deployment, numbers) == claims.NOT_SUPPORTED


def test_deployment_reports_the_recurrence_on_the_arrays_beside_the_verdict(tmp_path):
  numbers = {
    "models": {"float": _deployed(0.98, 0.985), "noise_aware_w4a8": _deployed(0.985, 0.99)},
    "arrays": _deployed(0.97, 0.988),  # 2.0 and 0.2 points below software (0.99).
  }
  outcome = _render(c5_deployment, numbers, tmp_path)
  assert outcome.verdict == claims.SUPPORTED  # The verdict is the deployed model's alone.
  gaps = outcome.numbers["arrays_gaps_points"]
  assert gaps == pytest.approx({"pcm_like": 2.0, "rram_taox": 0.2})
  label = "float, a_bar on the arrays (residual, gain trim)"
  assert f"| {label} | 99.00 | 97.00 +- 0.30 |" in outcome.table
  assert "within 2 points on every preset" in outcome.summary
  numbers["arrays"] = _deployed(0.95, 0.988)
  outcome = _render(c5_deployment, numbers, tmp_path)
  assert outcome.verdict == claims.SUPPORTED
  assert "not within 2 points on every preset" in outcome.summary
  del numbers["arrays"]  # A record from before the arrays row: rendered without it.
  assert "arrays" not in _render(c5_deployment, numbers, tmp_path).table


def test_deployment_on_the_arrays_overrides_only_the_recurrence_and_its_folder(tmp_path):
  config = _claim_config("c5")
  zoo = _runs(config, tmp_path)
  s = claims_common.settings(c5_deployment.Settings, experiment.from_config(config).claim)
  float_exp = zoo.experiment("float")
  arrays = c5_deployment.arrays_experiment(float_exp, s)
  assert (arrays.hardware.recurrence, arrays.deploy.recurrence_gain) == ("residual", "decay")
  assert arrays.deploy.folder == c5_deployment.ARRAYS_FOLDER != float_exp.deploy.folder
  before, after = experiment.to_dict(float_exp), experiment.to_dict(arrays)
  for section, key in (
    ("hardware", "recurrence"),
    ("deploy", "recurrence_gain"),
    ("deploy", "folder"),
  ):
    del before[section][key], after[section][key]
  assert before == after


def test_a_claim_folder_in_use_is_refused_before_any_work(tmp_path):
  config = importlib.import_module("configs.claims.c1_cost").get_config()
  with workdir_lib.lock(str(tmp_path)):
    with pytest.raises(errors.WorkdirError, match="another launch is using this workdir"):
      claims.run_claim(config, str(tmp_path))
  assert os.listdir(tmp_path) == []

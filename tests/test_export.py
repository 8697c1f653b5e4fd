"""Tests of the integer export: codes reload to the exact tensors and the same outputs."""

import dataclasses
import json

import chex
import jax
import numpy as np
import pytest

from ssm_aimc import blocks, export, models, quant

TINY = models.ModelConfig(d_model=4, n_layers=2, d_state=4, dropout=0.0, method="sequential")


def build_variables(name="s4d", spec=None, batch=2, **overrides):
  """(model, variables, x (batch, 9, 2), arch) of a TINY classifier: its params (calibrated
  when `spec`) and, with norm="batch", running statistics away from their initial 0 and 1."""
  cfg = dataclasses.replace(TINY, **overrides)
  model = models.get_model(name, cfg, n_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, 9, 2))
  variables = model.init(jax.random.PRNGKey(1), x, mutable=["params", models.BATCH_STATS])
  shift = lambda v: v + jax.random.uniform(jax.random.PRNGKey(2), v.shape, minval=-0.5, maxval=0.5)
  stats = jax.tree.map(shift, variables.get(models.BATCH_STATS, {}))
  params = variables["params"]
  if spec is not None:
    params = models.calibrate(model, params, spec, x, stats)
  arch = {**dataclasses.asdict(cfg), "n_classes": 3, "model_name": name}
  return model, models.variables(params, stats), x, arch


def build(name="s4d", spec=None, batch=2, **overrides):
  """(model, params, x (batch, 9, 2), arch) of a TINY classifier (calibrated when `spec`)."""
  model, variables, x, arch = build_variables(name, spec, batch, **overrides)
  return model, variables["params"], x, arch


SPECS = {
  "ternary_polar": quant.QuantSpec.uniform(2, 8, a_bar_bits=6),
  "w4_channel": quant.QuantSpec.uniform(4, 8, a_bar_bits=8, mode=quant.ScaleMode.CHANNEL),
  "w4_lsq": quant.QuantSpec.uniform(4, 6, a_bar_bits=5, mode=quant.ScaleMode.LSQ),
  "w8_cartesian": quant.QuantSpec.uniform(8, 8, a_bar_param="cartesian"),
}


@pytest.mark.parametrize(
  "name, spec_name",
  [("s4d", s) for s in sorted(SPECS)] + [("s4d_bidirectional", "ternary_polar")],
)
def test_round_trip_gives_identical_tensors_and_outputs(tmp_path, name, spec_name):
  spec = SPECS[spec_name]
  model, params, x, arch = build(name, spec)
  manifest = export.export_model(model, params, spec, x[:1], str(tmp_path), arch)
  loaded_manifest, tensors = export.load_export(str(tmp_path))
  assert loaded_manifest == json.loads(json.dumps(manifest))
  records = models.deployed_tensors(model, params, spec, x[:1])
  chex.assert_trees_all_equal(tensors, {path: rec["values"] for path, rec in records.items()})
  # Everything below the float threshold is stored as integers.
  kinds = {p: e["kind"] for p, e in manifest["tensors"].items()}
  assert kinds["block_0/glu_dense/kernel"] == "codes"
  expected_a_bar = "polar" if spec.a_bar_param == "polar" else "float"
  assert kinds["block_0/s4d/a_bar"] == expected_a_bar
  # The exported program gives the trained model's outputs.
  y_model = model.apply({"params": params}, x, spec=spec)
  y_export = export.forward(loaded_manifest, tensors, x)
  np.testing.assert_allclose(y_export, y_model, rtol=1e-6, atol=1e-6)


def test_codes_are_small_integers(tmp_path):
  spec = SPECS["ternary_polar"]
  model, params, x, arch = build("s4d", spec)
  export.export_model(model, params, spec, x[:1], str(tmp_path), arch)
  arrays = np.load(tmp_path / export.TENSORS)
  glu = arrays["block_0.glu_dense.kernel.codes"]
  assert glu.dtype == np.int8 and set(np.unique(glu)) <= {-1, 0, 1}
  levels = arrays["block_0.s4d.a_bar.levels"]
  assert levels.min() >= 1 and levels.max() <= 2**6 - 1


def test_float_model_exports_by_value(tmp_path):
  model, params, x, arch = build("s4d", None)
  manifest = export.export_model(model, params, None, x[:1], str(tmp_path), arch)
  assert {e["kind"] for e in manifest["tensors"].values()} == {"float"}
  _, tensors = export.load_export(str(tmp_path))
  np.testing.assert_allclose(
    export.forward(manifest, tensors, x), model.apply({"params": params}, x), rtol=1e-6, atol=1e-6
  )


@pytest.mark.parametrize("name", ["s4d", "s4d_bidirectional"])
def test_qs4d_round_trip_gives_identical_tensors_and_outputs(tmp_path, name):
  """The qs4d scheme's weights export as codes, its float-computed a_bar and b_bar by
  value, and the exported program quantizes activations and (sequential) the state as the
  model does."""
  spec = quant.QuantSpec.qs4d(2, 4, a_bits=3, state_bits=3)
  model, params, x, arch = build(name, spec)
  manifest = export.export_model(model, params, spec, x[:1], str(tmp_path), arch)
  loaded_manifest, tensors = export.load_export(str(tmp_path))
  assert loaded_manifest["quant"] == {"scheme": "qs4d", "state_bits": 3.0}
  records = models.deployed_tensors(model, params, spec, x[:1])
  chex.assert_trees_all_equal(tensors, {path: rec["values"] for path, rec in records.items()})
  kinds = {p: e["kind"] for p, e in manifest["tensors"].items()}
  assert kinds["block_0/glu_dense/kernel"] == kinds["block_0/s4d/c"] == "codes"
  assert kinds["block_0/s4d/a_bar"] == kinds["block_0/s4d/b_bar"] == "float"
  codes = np.load(tmp_path / export.TENSORS)["block_0.s4d.c.codes"]
  assert codes.dtype == np.int8 and np.abs(codes).max() == 2  # q = 4: codes -2..2.
  y_model = model.apply({"params": params}, x, spec=spec)
  y_export = export.forward(loaded_manifest, tensors, x)
  np.testing.assert_allclose(y_export, y_model, rtol=1e-6, atol=1e-6)
  # The state and activation quantizers are really there: without them, other outputs.
  unquantized = dict(loaded_manifest, quant=None, input_quantizers={})
  assert not np.allclose(export.forward(unquantized, tensors, x), y_model, atol=1e-3)


@pytest.mark.parametrize("spec_name", [None, "w4_channel"])
@pytest.mark.parametrize(
  "options",
  [dict(norm="batch"), dict(norm="batch", prenorm=False, residual=False, activation="relu")],
  ids=["batchnorm", "batchnorm-postnorm-noskip-relu"],
)
def test_batch_norm_exports_folded_and_reloads_to_the_models_outputs(tmp_path, spec_name, options):
  """A BatchNorm is stored as the scale and shift its running statistics fold it into
  (quantized as the model computes with them), and the exported program gives the model's
  inference outputs; the blocks' residual and activation travel in the manifest."""
  spec = SPECS.get(spec_name)
  model, variables, x, arch = build_variables(spec=spec, **options)
  params, stats = variables["params"], variables[models.BATCH_STATS]
  export.export_model(model, params, spec, x[:1], str(tmp_path), arch, stats)
  manifest, tensors = export.load_export(str(tmp_path))
  records = models.deployed_tensors(model, params, spec, x[:1], stats)
  chex.assert_trees_all_equal(tensors, {path: rec["values"] for path, rec in records.items()})
  if spec is None:
    norm, running = params["block_1"]["norm"], stats["block_1"]["norm"]
    gain, shift = blocks.fold_batch_norm(running["mean"], running["var"], **norm)
    # (To float32 rounding: the model's program is jitted, this fold is not.)
    np.testing.assert_allclose(tensors["block_1/norm/scale"], gain, rtol=1e-6)
    np.testing.assert_allclose(tensors["block_1/norm/bias"], shift, rtol=1e-6, atol=1e-7)
  y_model = model.apply(variables, x, spec=spec)
  np.testing.assert_allclose(export.forward(manifest, tensors, x), y_model, rtol=1e-6, atol=1e-6)


def test_an_export_without_the_block_options_reads_as_before(tmp_path):
  """Manifests written before norm, residual and activation existed: LayerNorm, residual,
  GLU."""
  model, params, x, arch = build("s4d", None)
  export.export_model(model, params, None, x[:1], str(tmp_path), arch)
  manifest, tensors = export.load_export(str(tmp_path))
  for key in blocks.BLOCK_DEFAULTS:
    del manifest["arch"][key]
  y_model = model.apply({"params": params}, x)
  np.testing.assert_allclose(export.forward(manifest, tensors, x), y_model, rtol=1e-6, atol=1e-6)

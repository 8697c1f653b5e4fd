"""Pruning inside training: masks hold pruned entries through optimizer steps, ratio 0 is a
no-op, and a prune run exports a smaller model with the masked model's outputs."""

import dataclasses
import os
import shutil

import chex
import jax
import numpy as np
import pytest

import ssm_aimc
from ssm_aimc import data, errors, experiment, models, prune, pruning, runner, steps, train
from ssm_aimc import workdir as workdir_lib
from tests.test_train import _latest_params, tiny_config


def _masks(pop, params, ratio, scope="channel"):
  cfg = pruning.PruneConfig(enabled=True, ratio=ratio, scope=scope)
  return pruning.masks_at(cfg, pop.setup.model, params, pop.specs, pop.setup.example, ratio)


@pytest.fixture(scope="module")
def built():
  config = tiny_config(**{"model.d_state": 8, "optimizer.weight_decay": 0.1})
  return runner.single(experiment.from_config(config))


def test_pruned_entries_stay_zero_through_optimizer_steps(built):
  exp = built
  modes, masks = _masks(exp, exp.state.params, 0.5)
  state = exp.state.replace(params=prune.apply_masks(exp.state.params, masks))
  before = state.params["block_0"]["s4d"]
  step = jax.jit(steps.train_step)
  batches = data.batches(exp.setup.dataset.train, 32, seed=0, epoch=0)
  for _ in range(3):
    x, y = next(batches)
    state, _ = step(state, x, y, jax.random.PRNGKey(0), None, None, masks)
  after = state.params["block_0"]["s4d"]
  pruned = ~np.asarray(modes["block_0/s4d"])
  assert pruned.any()
  for name in ("b", "c"):
    np.testing.assert_array_equal(np.asarray(after[name])[pruned], 0.0)
  # Pruned modes' A parameters track their channel's first kept mode (same a_bar set, so
  # the same quantization grid as the compact export).
  first = np.argmax(~pruned, axis=1)
  for name in ("log_neg_re_a", "im_a"):
    value = np.asarray(after[name])
    np.testing.assert_array_equal(
      value, np.where(pruned, value[np.arange(len(first)), first][:, None], value)
    )
  assert not np.array_equal(np.asarray(after["im_a"]), np.asarray(before["im_a"]))
  # Kept entries do train.
  assert not np.allclose(np.asarray(after["c"])[~pruned], np.asarray(before["c"])[~pruned])


def test_ratio_zero_changes_nothing(built):
  exp = built
  modes, masks = _masks(exp, exp.state.params, 0.0)
  assert all(bool(np.all(m)) for m in modes.values())
  masked = prune.apply_masks(exp.state.params, masks)
  chex.assert_trees_all_equal(masked, exp.state.params)
  x, y = next(data.batches(exp.setup.dataset.train, 32, seed=0, epoch=0))
  step = jax.jit(steps.train_step)
  with_masks, _ = step(exp.state, x, y, jax.random.PRNGKey(0), None, None, masks)
  without, _ = step(exp.state, x, y, jax.random.PRNGKey(0), None, None, None)
  chex.assert_trees_all_close(with_masks.params, without.params, rtol=1e-6, atol=1e-7)


QUANT = {
  "quant.enabled": True,
  "quant.weight_bits": 4,
  "quant.a_bar_bits": 4,
  "quant.mode": "channel",
}


@pytest.fixture(scope="module")
def trained_base(tmp_path_factory):
  """trained_base(**overrides): the workdir of tiny_config(**overrides) trained once per
  module (the prune runs below only read it: init_checkpoint). Keyed by the whole config,
  so overrides that restate a default ({"model.norm": "layer"}) share one training."""
  done = {}

  def get(**overrides) -> str:
    key = tiny_config(**overrides).to_json(sort_keys=True)
    if key not in done:
      done[key] = str(tmp_path_factory.mktemp("base"))
      train.train_and_evaluate(tiny_config(**overrides), done[key])
    return done[key]

  return get


def _prune_config(trained_base, **overrides):
  """A config pruning half the modes of a trained float d_state=8 model."""
  base = trained_base(**{"model.d_state": 8})
  prune = {"prune.enabled": True, "prune.ratio": 0.5, "init_checkpoint": base}
  return tiny_config(**{"model.d_state": 8, **prune, **overrides})


def test_prune_run_exports_a_smaller_model_with_the_masked_outputs(tmp_path, trained_base):
  """A quantized (4-bit, a_bar 4-bit per-channel polar) prune run: the exported smaller
  model reproduces the masked model, quantization grids included. (Float equality of
  masked and compact models is tested in test_prune.py.)"""
  config = _prune_config(trained_base, **QUANT)
  results = train.train_and_evaluate(config, str(tmp_path / "pruned_run"))
  assert results["prune"]["d_state_after"] == 4 and results["prune"]["pruned_fraction"] == 0.5
  assert results["pruned_model_test_accuracy"] == results["test_accuracy"]
  assert results["memory_bits"] < results["unpruned_memory_bits"]
  assert "test_accuracy_before_finetune" in results
  # The exported model is a workdir of its own, run through the same code: its logits
  # equal the masked model's.
  masked_pop = runner.single(experiment.from_config(config))
  masked, _ = workdir_lib.load_state(str(tmp_path / "pruned_run"), masked_pop.state)
  small_config = tiny_config(**{"model.d_state": 4, **QUANT})
  small_pop = runner.single(experiment.from_config(small_config))
  small, _ = workdir_lib.load_state(results["pruned_dir"], small_pop.state)
  x = masked_pop.setup.dataset.test.x[:16]
  np.testing.assert_allclose(
    small_pop.setup.model.apply({"params": small.params}, x, spec=small_pop.specs),
    masked_pop.setup.model.apply({"params": masked.params}, x, spec=masked_pop.specs),
    rtol=1e-5,
    atol=1e-5,
  )
  evaluated = train.evaluate(small_config, results["pruned_dir"])
  assert evaluated["test_accuracy"] == results["test_accuracy"]
  assert os.path.exists(os.path.join(results["pruned_dir"], "config.json"))


def test_greedy_prune_run_exports_the_modes_its_pass_chose(tmp_path, trained_base):
  """prune.method=greedy: the pass on the validation split decides the modes, the fine-tune
  holds them, and the export is the smaller model with the masked model's accuracy."""
  config = _prune_config(
    trained_base, **{"prune.method": "greedy", "prune.tolerance_points": 5.0, "num_epochs": 1}
  )
  exp = experiment.from_config(config)
  base = train.load_for_inference(
    dataclasses.replace(exp, prune=pruning.PruneConfig(), init_checkpoint=""),
    trained_base(**{"model.d_state": 8}),
  )
  setup = base.setup
  expected, info = pruning.greedy_masks(
    exp.prune,
    setup.model,
    base.params,
    None,
    setup.dataset.val,
    exp.eval_batch_size,
    setup.example,
  )
  assert info["val_accuracy_after"] >= info["val_accuracy_before"] - 0.05
  results = train.train_and_evaluate(config, str(tmp_path / "greedy_run"))
  assert results["prune"]["method"] == "greedy" and results["prune"]["pruned_fraction"] > 0
  assert results["prune"]["greedy"]["val_accuracy_after"] == info["val_accuracy_after"]
  kept = [np.asarray(m) for m in expected.values()]
  assert all(np.all(k == k[:1]) for k in kept)  # Structured: the same modes in every channel.
  assert results["prune"]["kept_modes"] == sum(int(k.sum()) for k in kept)
  assert results["prune"]["d_state_after"] == 2 * max(int(k[0].sum()) for k in kept)
  assert results["pruned_model_test_accuracy"] == results["test_accuracy"]
  # The fine-tuned params hold the pruned modes at zero: the masks read back from them.
  run = train.load_for_inference(exp, str(tmp_path / "greedy_run"))
  for path, mask in prune.nonzero_modes(run.params).items():
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(expected[path]))


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"prune.ratio": 1.0}, "prune.ratio"),
    ({"prune.scope": "row"}, "prune.scope"),
    ({"prune.score": "random"}, "prune.score"),
    ({"prune.schedule": "linear"}, "prune.schedule"),
    ({"prune.unit": "layer"}, "prune.unit"),
    ({"prune.method": "random"}, "prune.method"),
    ({"prune.method": "greedy", "prune.greedy_kind": "linear"}, "prune.greedy_kind"),
    ({"prune.method": "greedy", "prune.schedule": "gradual"}, "oneshot"),
    ({"prune.method": "greedy", "prune.unit": "channel"}, "unit='mode'"),
    ({"prune.tolerance_points": -1.0}, "tolerance_points"),
  ],
)
def test_bad_prune_settings_are_config_errors(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    experiment.from_config(tiny_config(**overrides))


def test_gradual_schedule_reaches_the_ratio_and_exports(tmp_path, trained_base):
  config = _prune_config(
    trained_base, **{"prune.schedule": "gradual", "prune.end_fraction": 0.5, "num_epochs": 2}
  )
  results = train.train_and_evaluate(config, str(tmp_path / "gradual"))
  # Nothing is pruned at step 0 (cubic schedule starts at 0), everything by the end.
  assert results["test_accuracy_before_finetune"] == results["test_accuracy_unpruned"]
  assert results["prune"]["pruned_fraction"] == 0.5 and results["prune"]["d_state_after"] == 4
  assert results["pruned_model_test_accuracy"] == results["test_accuracy"]
  # The best checkpoint is a fully pruned one (the only epoch at the final ratio).
  assert results["checkpoint_step"] == results["final_step"]


@pytest.mark.parametrize(
  "norm, quant, schedule",
  [("layer", {}, "oneshot"), ("batch", {**QUANT, "quant.mode": "tensor"}, "gradual")],
)
def test_channel_prune_run_exports_a_smaller_d_model_with_the_masked_outputs(
  tmp_path, trained_base, norm, quant, schedule
):
  """prune.unit="channel": the run fine-tunes the channel-masked model and writes the model
  with a quarter of its channels removed (d_model 16 -> 12) to workdir/pruned, whose logits
  are the masked model's (a per-tensor quantized BatchNorm model, gradual schedule, too)."""
  model = {"model.norm": norm}
  base = trained_base(**model)
  prune_keys = {
    "prune.enabled": True,
    "prune.unit": "channel",
    "prune.ratio": 0.25,
    "prune.schedule": schedule,
    "num_epochs": 2 if schedule == "gradual" else 1,
    "init_checkpoint": base,
  }
  config = tiny_config(**model, **quant, **prune_keys)
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  keys = results["prune"]
  assert (keys["d_model_before"], keys["d_model_after"], keys["kept_channels"]) == (16, 12, 12)
  assert keys["d_state_before"] == keys["d_state_after"] == 4
  assert keys["pruned_fraction"] == 0.25 and keys["unit"] == "channel"
  assert results["pruned_model_test_accuracy"] == results["test_accuracy"]
  assert results["memory_bits"] < results["unpruned_memory_bits"]
  assert "export_dir" not in results  # The export is the smaller model's.
  if quant:
    assert os.path.isdir(os.path.join(results["pruned_dir"], "export"))
  # The masked params: every entry of the 4 pruned channels is zero, in the encoder too.
  masked_pop = runner.single(experiment.from_config(config))
  masked, _ = workdir_lib.load_state(str(tmp_path / "run"), masked_pop.state)
  keep = np.any(np.asarray(masked.params["encoder"]["kernel"]) != 0.0, axis=0)
  assert keep.sum() == 12
  assert np.all(np.asarray(masked.params["block_0"]["glu_dense"]["kernel"])[~keep] == 0.0)
  small_config = tiny_config(**model, **quant, **{"model.d_model": 12})
  small_pop = runner.single(experiment.from_config(small_config))
  small, _ = workdir_lib.load_state(results["pruned_dir"], small_pop.state)
  x = masked_pop.setup.dataset.test.x[:16]
  masked_model = pruning.masked_model(masked_pop.setup.model, keep)
  np.testing.assert_allclose(
    small_pop.setup.model.apply(
      models.variables(small.params, small.batch_stats), x, spec=small_pop.specs
    ),
    masked_model.apply(
      models.variables(masked.params, masked.batch_stats), x, spec=masked_pop.specs
    ),
    rtol=1e-5,
    atol=1e-5,
  )
  evaluated = train.evaluate(small_config, results["pruned_dir"])
  assert evaluated["test_accuracy"] == results["test_accuracy"]
  # The run's own workdir holds the masked model, which only the run builds.
  with pytest.raises(errors.ConfigError, match="channel-pruned"):
    train.evaluate(config, str(tmp_path / "run"))


def test_channel_masks_at_ratio_zero_is_the_unmasked_model(built):
  exp = built
  cfg = pruning.PruneConfig(enabled=True, ratio=0.0, unit="channel")
  args = (cfg, exp.setup.model, exp.state.params, None, exp.setup.example)
  keep, masks = pruning.channel_masks_at(*args, 0.0)
  assert keep.all() and pruning.masked_model(exp.setup.model, keep) is exp.setup.model
  assert all(bool(np.all(m == 1.0)) for m in jax.tree_util.tree_leaves(masks))
  keep, masks = pruning.channel_masks_at(*args, 0.5)
  assert keep.sum() == 8
  masked = pruning.masked_model(exp.setup.model, keep)
  assert masked.channels == tuple(bool(k) for k in keep)


def test_channel_pruned_fit_in_memory_refuses_the_masked_params_for_evaluation(
  tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  prune_keys = {"prune.enabled": True, "prune.unit": "channel", "prune.ratio": 0.5}
  result = ssm_aimc.fit(tiny_config(), overrides=prune_keys)
  assert os.listdir(tmp_path) == []
  assert result.results["prune"]["d_model_after"] == 8
  assert result.pruned_params["encoder"]["kernel"].shape[-1] == 8
  assert result.pruned_params["block_0"]["glu_dense"]["kernel"].shape == (8, 16)
  with pytest.raises(errors.ConfigError, match="channel-pruned"):
    ssm_aimc.evaluate(trained=result)


def test_a_channel_pruned_run_resumes_as_an_uninterrupted_one(tmp_path, trained_base):
  """Stopped after its first epoch's checkpoint and resumed, a channel-pruned run finds its
  mask again (the pruned channels score 0) and ends with the uninterrupted run's params and
  its smaller model."""
  base = trained_base()
  config = tiny_config(
    num_epochs=2,
    keep_checkpoints=10,
    **{
      "prune.enabled": True,
      "prune.unit": "channel",
      "prune.ratio": 0.25,
      "init_checkpoint": base,
    },
  )
  full, stopped = str(tmp_path / "full"), str(tmp_path / "stopped")
  results = train.train_and_evaluate(config, full)
  shutil.copytree(full, stopped)
  ckpt_dir = os.path.join(stopped, workdir_lib.CHECKPOINT_DIR)
  steps_saved = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  assert len(steps_saved) == 2
  shutil.rmtree(os.path.join(ckpt_dir, str(steps_saved[1])))
  shutil.rmtree(os.path.join(stopped, workdir_lib.BEST_DIR))
  shutil.rmtree(os.path.join(stopped, train.PRUNED_DIR))
  resumed = train.train_and_evaluate(config, stopped)
  for a, b in zip(_latest_params(full), _latest_params(stopped), strict=True):
    chex.assert_trees_all_equal(a, b)
  assert resumed["prune"] == results["prune"]
  assert resumed["pruned_model_test_accuracy"] == results["pruned_model_test_accuracy"]

"""Population training (ssm_aimc.sweep): a vmapped population equals separate runs of
steps.train_step, the step compiles once, sweep.csv has one row per grid point, bad sweep
configs are ConfigErrors, and the population sharded over 8 host devices equals the
single-device run.

One tiny sweep (4 members: weight bits 32 (float), 4 x seeds 0, 1; evaluated on the analog
device at two noise scales, so 8 grid points) is trained once per module and inspected by
several tests; the sharded run goes on in a subprocess meanwhile.

Beyond one process: a tiny "separate" sweep (3 members) trained by 2 local processes
(jax.distributed over gloo, launched through the command line's process flags) writes the
single-process sweep.csv, and one SIGKILLed mid-way resumes to the same file without
training its finished members again.

Float tolerance holds step for step for the float members. A quantized member amplifies
float rounding: a weight on the edge of a rounding step flips to the next level when the
batched program rounds differently, and the loss jumps by ~1e-4. Its losses agree to float
precision for the first steps and to 3e-2 (about 1 %) afterwards.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default, sweep_bits
from ssm_aimc import (
  data,
  distributed,
  errors,
  experiment,
  figures,
  optim,
  population,
  runner,
  steps,
  sweep,
  train,
)
from ssm_aimc import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARDED_SCRIPT = """
import json, sys
from tests.test_sweep import tiny_sweep_config
from ssm_aimc import experiment, population, sweep
import jax
config = tiny_sweep_config()
config.hardware.enabled = False  # Evaluation only: training is the same.
config.sweep.noise_scales = ()
members = sweep.expand(experiment.from_config(config))[0]
layout = sweep.layout_of("vmap", population.mesh_over())
# 4 members in chunks of 2, each padded to the 8 devices: two calls of one compiled step.
results = sweep.train_members(members, layout, chunk_size=2)
print(json.dumps({
  "devices": jax.device_count(),
  "losses": [r.losses.tolist() for r in results],
  "test_accuracy": [r.test_accuracy for r in results],
}))
"""


def tiny_sweep_config():
  config = sweep_bits.get_config("smoke")
  config.model.d_model = 8
  config.model.n_layers = 1
  config.model.d_state = 4
  config.num_epochs = 2
  config.batch_size = 128  # 10 steps per epoch on digits.
  config.eval_batch_size = 128  # val and test batches of one shape: one compile.
  config.optimizer.learning_rate = 5e-2
  config.optimizer.warmup_epochs = 0.1
  config.progress_bar = False
  config.hardware.enabled = True
  # The ideal device compiles in seconds (a noisy one takes ~20 s on this CPU): this file
  # tests the sweep's plumbing; test_noise_eval.py tests the noisy devices.
  config.hardware.device = "ideal"
  config.hardware.eval_seeds = 2
  config.hardware.seeds_per_call = 2
  config.quant.act_bits = 32  # Off: only weights are quantized (see the module docstring).
  config.quant.a_bar_bits = 32
  config.sweep.strategy = "vmap"  # "auto" would pick "separate" on CPU.
  config.sweep.weight_bits = (32, 4)
  config.sweep.seeds = (0, 1)
  config.sweep.noise_scales = (0.0, 1.0)
  return config


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  """Runs the tiny sweep once (counting traces of steps.train_step, keeping the members,
  results and the built experiment) while the 8-device run goes on in a subprocess."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  sharded = subprocess.Popen(
    [sys.executable, "-c", SHARDED_SCRIPT],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  workdir = tmp_path_factory.mktemp("sweep")
  traces, captured, builds = [], [], []
  original_step, original_members, original_build = (
    steps.train_step,
    sweep.train_members,
    runner.build,
  )

  def counted_step(*args, **kwargs):
    traces.append(1)
    return original_step(*args, **kwargs)

  def spy_members(members, *args, **kwargs):
    results = original_members(members, *args, **kwargs)
    captured.append((members, results))
    return results

  def spy_build(exp):
    setup = original_build(exp)
    builds.append(setup)
    return setup

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(steps, "train_step", counted_step)
    mp.setattr(runner, "build", spy_build)
    mp.setattr(sweep, "train_members", spy_members)
    # Its 4 members in vmapped groups of 2, as on a CPU whose budget holds two of them
    # (sweep.cpu_vmap_group): the grouped program, checked against separate runs below
    # and against the plain vmap of the 8-device run.
    mp.setattr(sweep, "CPU_GROUP_BYTES", 2 * 4 * sweep.TEMP_WORDS_PER_ACTIVATION * 128 * 64 * 8)
    summary = sweep.run_sweep(tiny_sweep_config(), str(workdir))
  out, err = sharded.communicate(timeout=300)
  return types.SimpleNamespace(
    workdir=workdir,
    summary=summary,
    traces=len(traces),
    members=captured[0][0],
    results=captured[0][1],
    exp=builds[0],
    sharded=(sharded.returncode, out, err),
  )


def _separate_start(setup, member):
  """What train_and_evaluate starts one member's run from: its own optimizer (learning rate
  baked in), quantization spec and calibrated initial params."""
  params = runner.calibrate(setup, member.exp, runner.init_params(setup, member.exp.seed))
  return setup.optimizer(member.exp), member.exp.quant.spec, params


def _assert_same_losses(members, got, expected):
  """Float members: float tolerance at every step; quantized ones: see the module docstring."""
  for member, g, e in zip(members, got, expected, strict=True):
    if member.exp.quant.weight_bits == 32:
      np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    else:
      np.testing.assert_allclose(g[:3], e[:3], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(g, e, rtol=0, atol=3e-2)


def test_population_matches_separate_runs_and_compiles_once(swept):
  assert swept.traces == 1  # One trace of the member step for the whole population.
  setup, losses = swept.exp, []
  step = jax.jit(steps.train_step)
  tx = None
  for member in swept.members:
    config = member.exp
    assert config.optimizer.learning_rate == swept.members[0].exp.optimizer.learning_rate
    member_tx, spec, params = _separate_start(setup, member)
    tx = tx or member_tx  # Same learning rate for all: one optimizer, one compile.
    state = steps.TrainState.create(apply_fn=setup.model.apply, params=params, tx=tx)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    run = []
    for epoch in range(config.num_epochs):
      train_split = setup.dataset.train
      for x, y in data.batches(train_split, config.batch_size, seed=config.seed, epoch=epoch):
        state, metrics = step(state, x, y, key, spec)
        run.append(float(metrics["loss"]))
    losses.append(run)
  population = np.stack([r.losses for r in swept.results])
  assert population.shape == (4, 2 * setup.steps_per_epoch)
  _assert_same_losses(swept.members, population, np.array(losses))
  # The members really differ (bits and seeds), and training moved the loss.
  assert np.ptp(population[:, -1]) > 1e-3
  assert np.all(population[:, -1] < population[:, 0])


def test_sweep_csv_has_one_row_per_grid_point(swept):
  path = swept.workdir / sweep.CSV_NAME
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  assert tuple(reader.fieldnames) == sweep.COLUMNS
  assert len(rows) == 8 == swept.summary["grid_points"]  # 2 bits x 2 seeds x 2 noise scales.
  grid = {(r["weight_bits"], r["seed"], r["noise_scale"]) for r in rows}
  assert grid == {(b, s, n) for b in ("32", "4") for s in ("0", "1") for n in ("0.0", "1.0")}
  for row in rows:
    assert all(row[c] != "" for c in sweep.COLUMNS), row
    assert 0.0 <= float(row["test_accuracy"]) <= 1.0
    assert 0.0 <= float(row["analog_accuracy_mean"]) <= 1.0
    assert row["noise_seeds"] == "2"
  float_bits = [float(r["memory_bits"]) for r in rows if r["weight_bits"] == "32"]
  bits4 = [float(r["memory_bits"]) for r in rows if r["weight_bits"] == "4"]
  assert max(bits4) < min(float_bits) / 2
  assert all(float(r["compression_vs_fp32"]) > 2 for r in rows if r["weight_bits"] == "4")
  assert any(r["pareto"] == "True" for r in rows)
  # Energy on the chip of config.deploy: the same architecture maps to the same tiles.
  assert len({r["tiles"] for r in rows}) == 1
  assert all(float(r["energy_per_inference_j"]) > 0 for r in rows)
  assert all(float(r["energy_vs_fp32"]) > 1 for r in rows)
  for name in (sweep.PLOT_BITS, sweep.PLOT_NOISE, sweep.PLOT_PARETO, figures.CURVES):
    assert os.path.getsize(swept.workdir / name) > 0
    assert os.path.getsize(swept.workdir / figures.pdf_path(name)) > 0
  assert os.path.getsize(swept.workdir / "config.json") > 0
  with open(swept.workdir / sweep.JSON_NAME) as f:
    assert len(json.load(f)["rows"]) == 8


def test_sharded_run_on_8_host_devices_equals_single_device(swept):
  returncode, out, err = swept.sharded
  assert returncode == 0, err[-3000:]
  sharded = json.loads(out.strip().splitlines()[-1])
  assert sharded["devices"] == 8
  _assert_same_losses(
    swept.members, np.array(sharded["losses"]), np.stack([r.losses for r in swept.results])
  )
  for member, a, b in zip(
    swept.members, sharded["test_accuracy"], [r.test_accuracy for r in swept.results], strict=True
  ):
    assert abs(a - b) <= (1e-6 if member.exp.quant.weight_bits == 32 else 0.03)


def test_injected_learning_rate_equals_the_baked_one():
  cfg = experiment.from_config(default.get_config()).optimizer
  params = {"encoder": {"kernel": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}}
  grads = jax.tree.map(lambda p: jnp.cos(3 * p), params)
  tx = optim.injected_optimizer(cfg, 4, 12)
  for lr in (3e-2, 1e-3):
    baked, _ = optim.make_optimizer(train.dataclasses.replace(cfg, learning_rate=lr), 4, 12)
    s_baked = baked.init(params)
    s_pop = optax.tree_utils.tree_set(tx.init(params), learning_rate=jnp.float32(lr))
    for _ in range(6):
      u_baked, s_baked = baked.update(grads, s_baked, params)
      u_pop, s_pop = tx.update(grads, s_pop, params)
      np.testing.assert_allclose(
        u_pop["encoder"]["kernel"], u_baked["encoder"]["kernel"], rtol=1e-6, atol=1e-9
      )


def test_strategies_map_the_same_function():
  def fn(a, b, shared):
    return {"out": a * b["w"] + shared, "sum": jnp.sum(a)}

  a = jnp.arange(6.0).reshape(3, 2)
  b = {"w": jnp.array([1.0, -2.0, 0.5])[:, None]}
  expected = jax.vmap(fn, in_axes=(0, 0, None))(a, b, 1.0)
  # vmap in groups of 1, 2 (a remainder of 1) and 3 or more (one vmap).
  layouts = [population.Layout("vmap", group=g) for g in (0, 1, 2, 3, 5)]
  for layout in [*layouts, population.Layout("map")]:
    mapped = layout.map(fn, (True, True, False))
    jax.tree.map(np.testing.assert_allclose, jax.jit(mapped)(a, b, 1.0), expected)
  with pytest.raises(errors.ConfigError, match="group"):
    population.Layout("map", group=2)
  one = population.Layout().map(fn, (True, True, False))(a[0], {"w": b["w"][0]}, 1.0)
  np.testing.assert_allclose(one["out"], expected["out"][0])


def test_cpu_vmap_group_keeps_the_temporaries_small():
  exp = experiment.from_config(sweep_bits.get_config())
  setup = runner.build(exp)
  small = experiment.override(exp, {"batch_size": 64, "model.d_model": 16})
  large = experiment.override(small, {"model.d_model": 64})
  vmap = population.Layout("vmap")
  if jax.default_backend() != "cpu":
    assert sweep.cpu_vmap_group(vmap, setup, small, 8) is vmap
    return
  # bench/vmap_root.py's two sizes, 10 and 37 MiB of temporaries per member: groups of 2
  # and 1 of 8 members; a divisor of the members (7 is prime); all in one vmap if they fit.
  assert sweep.cpu_vmap_group(vmap, setup, small, 8).group == 2
  assert sweep.cpu_vmap_group(vmap, setup, small, 7).group == 1
  assert sweep.cpu_vmap_group(vmap, setup, small, 2).group == 0
  assert sweep.cpu_vmap_group(vmap, setup, large, 8).group == 1
  for layout in (population.Layout("map"), population.Layout("vmap", group=2)):
    assert sweep.cpu_vmap_group(layout, setup, small, 8) is layout


def test_auto_strategy_is_the_fastest_measured():
  # "separate" won on 2 CPU cores and on an H200 (BENCHMARKS.md "Population sweeps").
  assert sweep.resolve_strategy(experiment.AUTO) == "separate"
  for strategy in experiment.STRATEGIES:
    assert sweep.resolve_strategy(strategy) == strategy


@pytest.mark.parametrize(
  "field, value, match",
  [
    ("sweep.strategy", "pmap", "strategy"),
    ("sweep.chunk_size", -1, "chunk_size"),
    ("sweep.weight_bits", (8, 0), "weight_bits"),
    ("sweep.weight_bits", (4, 4), "repeats"),
    ("sweep.seeds", (-1,), "seeds"),
    ("sweep.learning_rates", (0.0,), "learning_rates"),
    ("sweep.learning_rates", ("fast",), "each item is a finite number"),
    ("sweep.d_state", (5,), "d_state"),
    ("sweep.group_bits.glu", (3, 0), "group_bits.glu"),
    ("sweep.noise_scales", (1.0,), "hardware.enabled"),
    ("quant.enabled", False, "quant.enabled"),
    ("prune.enabled", True, "prune"),
  ],
)
def test_bad_sweep_values_are_config_errors(field, value, match):
  config = sweep_bits.get_config("smoke")
  *parents, leaf = field.split(".")
  with config.unlocked():
    section = config
    for p in parents:
      section = section[p]
    section[leaf] = value
  with pytest.raises(errors.ConfigError, match=match):
    sweep.expand(experiment.from_config(config))


def test_config_without_sweep_section_or_with_unknown_field_is_a_config_error(tmp_path):
  with pytest.raises(errors.ConfigError, match="sweep_bits"):
    sweep.run_sweep(default.get_config(), str(tmp_path))
  config = sweep_bits.get_config("smoke")
  with config.unlocked():
    config.sweep.bogus = 1
  with pytest.raises(errors.ConfigError, match="bogus"):
    experiment.from_config(config)
  with pytest.raises(ValueError, match="variant"):
    sweep_bits.get_config("bogus")


def test_grid_expansion_and_pareto_front():
  config = sweep_bits.get_config("smoke")
  config.sweep.learning_rates = (1e-2, 3e-3)
  config.sweep.d_model = (8, 16)
  structures = sweep.expand(experiment.from_config(config))
  assert [len(s) for s in structures] == [4, 4]  # (2 bits x 2 lrs) per d_model.
  member = structures[1][3]
  assert member.overrides == {
    "model.d_model": 16,
    "quant.weight_bits": 2,
    "optimizer.learning_rate": 3e-3,
  }
  assert structures[0][0].exp.model.d_model == 8
  assert config.model.d_model == 16  # The base config is left as it was.
  front = sweep.pareto_front([1, 2, 3, 3], [0.5, 0.4, 0.9, 0.8])
  assert front.tolist() == [True, False, True, False]


def _records(path):
  with open(path) as f:
    records = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k not in ("run", "wall_time_s")} for r in records]


def test_a_population_of_one_is_the_single_run_bit_for_bit(tmp_path):
  config = tiny_sweep_config()
  config.sweep.strategy = "separate"
  config.sweep.weight_bits = (4,)
  config.sweep.seeds = ()
  config.sweep.noise_scales = ()
  summary = sweep.run_sweep(config, str(tmp_path / "sweep"))
  ((member,),) = sweep.expand(experiment.from_config(config))
  single = train.train_and_evaluate(member.exp, str(tmp_path / "single"))
  (row,) = summary["rows"]
  for key in ("test_accuracy", "test_loss", "val_accuracy", "analog_accuracy_mean", "memory_bits"):
    assert row[key] == single[key], key
  # Every logged loss and every epoch's validation, to the last bit.
  assert _records(tmp_path / "sweep" / "metrics.jsonl") == _records(
    tmp_path / "single" / "metrics.jsonl"
  )


def test_a_vmapped_population_of_batch_norm_members_keeps_each_ones_statistics():
  """Every member of a stacked population normalises with, updates and is evaluated on
  its own BatchNorm statistics, and its best state keeps them."""
  config = default.get_config("smoke")
  config.model.update(norm="batch", d_model=8, n_layers=1, d_state=4)
  config.update(batch_size=128, eval_batch_size=128, num_epochs=1, progress_bar=False)
  exp = experiment.from_config(config)
  members = [exp, experiment.override(exp, {"seed": 1})]
  setup = runner.build(exp)
  starts = [runner.init_variables(setup, m.seed) for m in members]
  pop = runner.Population.start(
    setup,
    members,
    population.Layout("vmap"),
    [s["params"] for s in starts],
    [s["batch_stats"] for s in starts],
  )
  x, y = next(pop.batches(0))
  pop.step(x, y, 0)
  var = pop.layout.fetch(pop.state.batch_stats)["block_0"]["norm"]["var"]
  assert var.shape == (2, 8)
  assert not np.allclose(var, 1.0, atol=1e-3, rtol=0) and not np.allclose(var[0], var[1])
  stacked = pop.evaluate(pop.state.params, setup.dataset.val, pop.state.batch_stats)
  for i, member in enumerate(members):
    params, stats = pop.layout.member((pop.state.params, pop.state.batch_stats), i)
    alone = runner.Population(
      setup, [member], population.Layout(), [runner.new_state(setup, member, params, None, stats)]
    )
    own = alone.evaluate(params, setup.dataset.val, stats)
    np.testing.assert_allclose(stacked["loss"][i], own["loss"][0], rtol=1e-5)
  fit = runner.fit(pop)
  best_var = pop.layout.fetch(fit.best_batch_stats)["block_0"]["norm"]["var"]
  best_var_now = pop.layout.fetch(pop.state.batch_stats)["block_0"]["norm"]["var"]
  np.testing.assert_array_equal(best_var, best_var_now)  # One epoch: the best is the last.


# ---------------------------------------------------------------------------------------
# Several processes, and a killed sweep resumed.
# ---------------------------------------------------------------------------------------

# configs/sweep_bits.py:smoke with these: 3 members (4-bit weights, seeds 0-2) of one
# structure, one compile of the step; "separate" so each member is the single run.
RESUMABLE = {
  "model.d_model": 8,
  "model.n_layers": 1,
  "model.d_state": 4,
  "num_epochs": 1,
  "batch_size": 128,
  "eval_batch_size": 128,
  "optimizer.learning_rate": 5e-2,
  "optimizer.warmup_epochs": 0.1,
  "progress_bar": False,
  "quant.act_bits": 32,
  "quant.a_bar_bits": 32,
  "sweep.strategy": "separate",
  "sweep.weight_bits": (4,),
  "sweep.seeds": (0, 1, 2),
  "sweep.plots": False,
}
# The killed sweep is also saved every 5 steps (10 an epoch): it resumes mid-epoch, its
# member 1 killed between its checkpoint at step 5 and the one at the end of the epoch.
MID_EPOCH = {"sweep.checkpoint_every_steps": 5}
PROCESS_TIMEOUT_S = 300


def resumable_config(extra=None):
  config = sweep_bits.get_config("smoke")
  for path, value in {**RESUMABLE, **(extra or {})}.items():
    *parents, leaf = path.split(".")
    section = config
    for p in parents:
      section = section[p]
    section[leaf] = value
  return config


def _launch(workdir, log, *flags, extra=None):
  """`python -m ssm_aimc --mode=sweep` of resumable_config(extra) in a subprocess on one
  CPU device (output to the file `log`)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  args = [f"--config.{k}={v}" for k, v in {**RESUMABLE, **(extra or {})}.items()]
  command = [sys.executable, "-m", "ssm_aimc", "--config=configs/sweep_bits.py:smoke", *args]
  command += ["--mode=sweep", f"--workdir={workdir}", *flags]
  with open(log, "w") as out:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(processes) -> None:
  for p in processes:
    if p.poll() is None:
      p.kill()
      p.wait(timeout=30)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _csv_rows(workdir):
  with open(os.path.join(workdir, sweep.CSV_NAME), newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  """resumable_config run by 2 local processes (subprocesses) while the same sweep runs
  uninterrupted in this one."""
  root = tmp_path_factory.mktemp("distributed")
  port, logs = _free_port(), [root / f"process{i}.log" for i in range(2)]
  address = f"--coordinator_address=127.0.0.1:{port}"
  processes = [
    _launch(root / "two", logs[i], address, "--num_processes=2", f"--process_id={i}")
    for i in range(2)
  ]
  try:
    start = time.time()
    summary = sweep.run_sweep(resumable_config(), str(root / "one"))
    codes = [p.wait(timeout=max(1, PROCESS_TIMEOUT_S - (time.time() - start))) for p in processes]
  finally:
    _stop(processes)
  return types.SimpleNamespace(
    root=root, one=summary, codes=codes, logs=[log.read_text() for log in logs]
  )


def test_two_processes_write_the_sweep_of_one(two_processes):
  run = two_processes
  assert run.codes == [0, 0], run.logs[0][-3000:] + run.logs[1][-3000:]
  one, two = _csv_rows(run.root / "one"), _csv_rows(run.root / "two")
  assert len(two) == len(one) == 3
  accuracies = ("test_accuracy", "val_accuracy", "test_loss", "train_loss")
  for a, b in zip(one, two, strict=True):
    assert {k: v for k, v in a.items() if k not in accuracies} == {
      k: v for k, v in b.items() if k not in accuracies
    }
    for key in accuracies:  # The quantized members' tolerance of the population test.
      assert abs(float(a[key]) - float(b[key])) <= 0.03, key
  with open(run.root / "two" / sweep.JSON_NAME) as f:
    assert json.load(f)["processes"] == 2
  # Process 1 trained member 1 (round 1) and a thrown-away copy of member 2 (round 2).
  assert "member 2/3: epoch 1/1" in run.logs[1] and "member 2/3" not in run.logs[0]
  assert "member 3/3: epoch 1/1" in run.logs[0]
  assert "padding, a copy of member 3/3: epoch 1/1" in run.logs[1]
  assert sorted(os.listdir(run.root / "two" / sweep.MEMBERS_DIR)) == ["0.json", "1.json", "2.json"]
  records = workdir_lib.read_metrics(run.root / "two", "metrics.process1.jsonl")
  assert {r["run"] for r in records} == {"member 2/3"}
  assert not os.listdir(run.root / "two" / workdir_lib.CHECKPOINT_DIR)  # Rounds cleaned up.


def test_a_killed_sweep_resumes_and_ends_as_if_never_stopped(two_processes, tmp_path):
  workdir, log = tmp_path / "killed", tmp_path / "killed.log"
  member_1 = workdir / workdir_lib.CHECKPOINT_DIR / "1-1_1x1"
  first_save = member_1 / "5"  # Member 1 at step 5, in the middle of its epoch.
  process = _launch(workdir, log, extra=MID_EPOCH)
  try:
    deadline = time.time() + PROCESS_TIMEOUT_S
    while not (first_save.is_dir() and (workdir / sweep.MEMBERS_DIR / "0.json").exists()):
      assert process.poll() is None, log.read_text()[-3000:]
      assert time.time() < deadline, "the sweep did not reach member 1's first checkpoint"
      time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
  finally:
    _stop([process])
  finished = sorted(os.listdir(workdir / sweep.MEMBERS_DIR))
  # A checkpointed workdir of another config is refused before anything is written.
  other = resumable_config(MID_EPOCH)
  other.sweep.seeds = (0, 1)
  with pytest.raises(errors.ConfigError, match="another config"):
    sweep.run_sweep(other, str(workdir))
  trained, restored = [], []
  original_chunk, original_restore = sweep._train_chunk, sweep.RoundCheckpoint.restore

  def spy_chunk(setup, chunk, *args, **kwargs):
    trained.append([m.exp.seed for m in chunk])
    return original_chunk(setup, chunk, *args, **kwargs)

  def spy_restore(self, pop):
    resumed = original_restore(self, pop)
    restored.append((os.path.basename(self.directory), resumed and resumed[2]))
    return resumed

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(sweep, "_train_chunk", spy_chunk)
    mp.setattr(sweep.RoundCheckpoint, "restore", spy_restore)
    summary = sweep.run_sweep(resumable_config(MID_EPOCH), str(workdir))
  assert summary["members_reused"] == len(finished) >= 1
  assert [0] not in trained  # Member 0 finished before the kill: read back, not trained.
  if "1.json" not in finished:  # Killed within member 1: it went on from its checkpoint.
    ((name, step),) = [r for r in restored if r[0] == "1-1_1x1"]
    assert step in (5, 10)
  assert _csv_rows(workdir) == _csv_rows(two_processes.root / "one")  # Bit for bit.
  records = workdir_lib.read_metrics(workdir)
  for run in {r["run"] for r in records}:  # Every step logged once, in order.
    steps = [r["step"] for r in records if r["run"] == run and "epoch" in r]
    assert steps == [10], run
  assert not os.listdir(workdir / workdir_lib.CHECKPOINT_DIR)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"process_id": 1}, "need --num_processes"),
    ({"num_processes": 2, "process_id": 2}, "out of range"),
    ({"num_processes": 2, "process_id": -1}, "out of range"),
    ({"num_processes": 0}, ">= 1"),
    ({"num_processes": 2, "process_id": 0}, "needs --coordinator_address"),
    ({"num_processes": 2, "coordinator_address": "localhost"}, "needs --process_id"),
    (
      {"num_processes": 2, "process_id": 0, "coordinator_address": "localhost"},
      "not host:port",
    ),
  ],
)
def test_bad_process_flags_are_config_errors(kwargs, match):
  with pytest.raises(errors.ConfigError, match=match):
    distributed.initialize(**kwargs)


def test_one_process_needs_no_runtime():
  assert not distributed.initialize()
  assert not distributed.initialize(num_processes=1)
  assert distributed.gather({"a": 1}, "one") == [{"a": 1}]

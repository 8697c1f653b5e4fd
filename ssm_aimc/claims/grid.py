"""Many models of a claim measured together, as the QS4D authors' protocol needs them.

quantized(exp, {group: bits})   an experiment under the authors' quantization scheme
                                with their groups (GROUPS) at those widths, others float;
evaluated(exps, workdir)        post-training quantization of one checkpoint under each
                                experiment, one vmapped program per structure;
trained(exps, writer)           each experiment trained and tested as a sweep member,
                                one compiled step per structure;
kept(workdir, name, exps, fn)   fn(exps)'s rows kept in workdir/<name>.json with the
                                experiments that made them and the time they took
                                (reused, or refused when another config wrote the file).
"""

import os

from ssm_aimc import errors, experiment, sweep, train
from ssm_aimc import population as population_lib
from ssm_aimc import workdir as workdir_lib

FLOAT_BITS = 32  # A width that is float under either scheme (quant.is_off).
# What a model's row keeps: accuracy and the authors' three hardware metrics (ssm_aimc.cost).
ROW_KEYS = ("test_accuracy", "val_accuracy", "ace", "model_size_kb", "adc_complexity")

# The authors' groups (their panel names) -> the fields of config.quant each one sets.
GROUPS = {
  "all": ("weight_bits", "act_bits", "a_bar_bits"),
  "A": ("group_bits.a",),
  "C": ("group_bits.c",),
  "state": ("group_bits.state",),
  "activations": ("group_bits.activations",),
  "mixing": ("group_bits.glu",),
  "en-/decoder": ("group_bits.encoder", "group_bits.decoder"),
  "dt": ("group_bits.log_dt",),
}


def check_widths(bits) -> None:
  """ConfigError unless `bits` (a claim's widths) holds FLOAT_BITS and another width: the
  claims by the authors' protocol compare every width with the float model."""
  if FLOAT_BITS not in bits or len(bits) < 2:
    raise errors.ConfigError(f"claim.bits must hold the float width {FLOAT_BITS} and another one.")


def quantized(exp: experiment.Experiment, widths: dict) -> experiment.Experiment:
  """`exp` under the qs4d scheme: {group: bits} of `widths` (GROUPS' names, applied in
  order, so {"all": 4, "state": 32} is every group but the state), every other group
  float. The model's recurrence method is kept: on the convolution paths (a CPU's "auto")
  the state group rounds the kernel, as the authors' FFT path does, on the sequential path
  the recurrent state (`layers.state_quantizer`)."""
  return experiment.override(exp, quantized_overrides(widths))


def quantized_overrides(widths: dict) -> dict:
  """The config overrides of `quantized` ({"quant.<field>": value})."""
  overrides = {"quant.enabled": True, "quant.scheme": "qs4d", "quant.mode": "tensor"}
  overrides.update({f"quant.{field}": FLOAT_BITS for field in GROUPS["all"]})
  for group, bits in widths.items():
    overrides.update({f"quant.{field}": bits for field in GROUPS[group]})
  return overrides


def by_structure(exps: list) -> list[list[int]]:
  """Indices of `exps` grouped by model (one structure, one compiled program each)."""
  groups: dict = {}
  for i, exp in enumerate(exps):
    groups.setdefault(exp.model, []).append(i)
  return list(groups.values())


def evaluated(exps: list, workdir: str, keys=ROW_KEYS) -> list[dict]:
  """Post-training: the best checkpoint of `workdir` under each experiment (`keys` of
  `train.evaluate_many`'s rows)."""
  rows = [{}] * len(exps)
  for idx in by_structure(exps):
    # The sequential recurrence keeps every step's state of every member and example:
    # one member at a time keeps that within memory (a few GB at the default size).
    chunk = 1 if exps[idx[0]].model.method == "sequential" else 16
    evaluations = train.evaluate_many([exps[i] for i in idx], workdir, chunk_size=chunk)
    for i, r in zip(idx, evaluations, strict=True):
      rows[i] = {k: r[k] for k in keys}
  return rows


def trained(exps: list, writer, keys=ROW_KEYS) -> list[dict]:
  """Each experiment trained (from its init_checkpoint, if any) and evaluated as a sweep
  member is (`sweep.train_members`, one compiled step per structure): `keys` of the test
  and validation accuracy and the cost report."""
  rows = [{}] * len(exps)
  for idx in by_structure(exps):
    members = [sweep.Member({}, exps[i], ((None, None),)) for i in idx]
    results = sweep.train_members(members, population_lib.Layout(), writer=writer)
    for i, r in zip(idx, results, strict=True):
      row = {"test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy, **r.cost}
      rows[i] = {k: row[k] for k in keys}
  return rows


def kept(workdir: str, name: str, exps: list, compute, runs=None) -> list[dict]:
  """compute(exps)'s rows, kept in workdir/<name>.json with the experiments that made them;
  the time they took goes into `runs` (a runs.Runs) as stage `name`, reused or not, so that
  a claim's standalone time counts work an earlier process did."""
  key = [experiment.to_dict(e) for e in exps]
  path = os.path.join(workdir, f"{name}.json")
  reused = os.path.exists(path)
  result = workdir_lib.cached_json(path, key, lambda: {"rows": compute(exps)})
  if runs is not None:
    runs.seconds[name] = result.get("wall_time_s")  # None: kept by an older version.
    if reused and name not in runs.reused:
      runs.reused.append(name)
  return result["rows"]

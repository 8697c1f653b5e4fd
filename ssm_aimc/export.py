"""Integer export of a trained (quantized) model, and the forward pass that runs from it.

`export_model` writes what a chip-programming tool reads:
  tensors.npz     per stored tensor either integer codes (+ their FP32 steps) or, for the
                  groups left in float, the float values; the polar a_bar as decay levels
                  and angle codes with their two steps; a BatchNorm folded by its running
                  statistics into the per-channel scale and shift of its norm;
  manifest.json   the architecture, the quantization scheme (and the state's width), and
                  per tensor its group bits, shape, storage kind and the input quantizer
                  (bits, and the step under the ssm_aimc scheme; the qs4d scheme's steps
                  are each example's absmax) of every matrix product.
`load_export` turns the files back into the exact tensors the model computed with, and
`forward` runs the classifier from those tensors alone (no Flax, no training parameters):
the reloaded model gives the same outputs as the trained one (tests/test_export.py).
`export_arrays` and `tensors_of` are the same two steps in memory, without the files (the
Python API's deploy of a model trained in memory).
"""

from __future__ import annotations

import functools
import json
import os

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import blocks, layers, models, quant, ssm

MANIFEST = "manifest.json"
TENSORS = "tensors.npz"
FORMAT_VERSION = 1


def _smallest_int(codes: np.ndarray) -> np.ndarray:
  """Stores codes in int8 when they fit (bits <= 8), else int16."""
  return codes.astype(np.int8 if np.abs(codes).max(initial=0) <= 127 else np.int16)


def export_model(
  model: nn.Module,
  params,
  spec: quant.QuantSpec | None,
  x_example: jax.Array,
  directory: str,
  arch: dict,
  batch_stats=None,
) -> dict:
  """Writes `directory`/tensors.npz and manifest.json (`export_arrays`); returns the
  manifest."""
  manifest, arrays = export_arrays(model, params, spec, x_example, arch, batch_stats)
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{TENSORS}.tmp.npz")
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, os.path.join(directory, TENSORS))
  tmp = os.path.join(directory, f".{MANIFEST}.tmp")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(directory, MANIFEST))
  return manifest


def export_arrays(
  model: nn.Module,
  params,
  spec: quant.QuantSpec | None,
  x_example: jax.Array,
  arch: dict,
  batch_stats=None,
) -> tuple[dict, dict]:
  """(manifest, {name: numpy array}): what `export_model` writes to manifest.json and
  tensors.npz.

  Args:
    model: the Flax classifier; params: its parameters; spec: its quantization (None for
      a float model, exported by value).
    x_example: (1, L, d_input) input fixing shapes.
    arch: JSON-able architecture (model config fields, n_classes, model name) stored in
      the manifest for `forward`.
    batch_stats: the BatchNorm running statistics of a model with BatchNorm; each norm is
      stored folded by them into its per-channel scale and shift (block_i/norm/scale, bias).
  """
  records = models.deployed_tensors(model, params, spec, x_example, batch_stats)
  inputs = _input_quantizers(model, models.variables(params, batch_stats), spec, x_example)
  arrays, entries = {}, {}
  for path, rec in records.items():
    key = path.replace("/", ".")
    entry = {
      "bits": float(rec["bits"]),
      "shape": list(np.shape(rec["values"])),
      "complex": bool(np.iscomplexobj(rec["values"])),
    }
    if "levels" in rec:
      entry["kind"] = "polar"
      arrays[f"{key}.levels"] = np.asarray(rec["levels"]).astype(np.int16)
      arrays[f"{key}.angle_codes"] = _smallest_int(np.asarray(rec["angle_codes"]))
      arrays[f"{key}.step"] = np.asarray(rec["step"], np.float32)
      arrays[f"{key}.angle_scale"] = np.asarray(rec["angle_scale"], np.float32)
    elif "codes" in rec and not quant.is_off(rec["bits"]):
      entry["kind"] = "codes"
      arrays[f"{key}.codes"] = _smallest_int(np.asarray(rec["codes"]))
      arrays[f"{key}.scale"] = np.asarray(rec["scale"], np.float32)
    else:
      entry["kind"] = "float"
      arrays[f"{key}.values"] = np.asarray(rec["values"])
    entries[path] = entry
  manifest = {
    "format_version": FORMAT_VERSION,
    "arch": arch,
    "quant": None
    if spec is None
    else {"scheme": spec.scheme, "state_bits": float(spec.state.bits)},
    "tensors": entries,
    "input_quantizers": {k: {n: float(v) for n, v in q.items()} for k, q in inputs.items()},
  }
  return manifest, arrays


def _input_quantizers(model, variables, spec, x) -> dict:
  """{module path: {bits[, scale]}} of every activation quantizer (empty for float)."""
  if spec is None:
    return {}
  collect = jax.jit(lambda v, x, s: model.apply(v, x, spec=s, mutable=["input_quant"])[1])
  state = collect(variables, x, spec)
  flat = flax.traverse_util.flatten_dict(
    state["input_quant"], sep="/", is_leaf=lambda _, v: isinstance(v, tuple)
  )
  return {path.rsplit("/", 1)[0]: rec[0] for path, rec in flat.items()}


def load_export(directory: str) -> tuple[dict, dict]:
  """(manifest, {path: tensor}) with every tensor dequantized exactly as the model used it."""
  with open(os.path.join(directory, MANIFEST)) as f:
    manifest = json.load(f)
  return manifest, tensors_of(manifest, np.load(os.path.join(directory, TENSORS)))


def tensors_of(manifest: dict, arrays) -> dict:
  """{path: tensor} dequantized from the arrays of an export (`export_arrays`, or
  tensors.npz) exactly as the model used them."""
  tensors = {}
  for path, entry in manifest["tensors"].items():
    key = path.replace("/", ".")
    if entry["kind"] == "polar":
      tensors[path] = quant.a_bar_from_polar_codes(
        jnp.asarray(arrays[f"{key}.levels"]),
        jnp.asarray(arrays[f"{key}.angle_codes"]),
        jnp.asarray(arrays[f"{key}.step"]),
        jnp.asarray(arrays[f"{key}.angle_scale"]),
      )
    elif entry["kind"] == "codes":
      value = quant.from_integer_codes(
        jnp.asarray(arrays[f"{key}.codes"]).astype(jnp.int32), jnp.asarray(arrays[f"{key}.scale"])
      )
      tensors[path] = jax.lax.complex(value[..., 0], value[..., 1]) if entry["complex"] else value
    else:
      tensors[path] = jnp.asarray(arrays[f"{key}.values"])
  return tensors


def forward(manifest: dict, tensors: dict, x: jax.Array) -> jax.Array:
  """Logits (B, n_classes) of the exported classifier on x (B, L, d_input)."""
  arch = manifest["arch"]
  inputs = manifest["input_quantizers"]
  # Exports of float models, and those written before the scheme was recorded, have none.
  info = manifest.get("quant") or {"scheme": None, "state_bits": quant.OFF_BITS}
  scheme, hooks = info["scheme"], {}
  with jax.ensure_compile_time_eval():  # A host number: decided once, also under jit.
    state_on = not quant.is_off(info["state_bits"])
  if state_on:
    hooks = layers.state_quantizer(scheme, arch["method"], x.shape[1], info["state_bits"])

  def act(path, h):
    if path not in inputs:
      return h
    if scheme == "qs4d":
      return layers.qs4d_activations(h, inputs[path]["bits"])
    return quant.fake_quant(h, inputs[path]["bits"], jnp.float32(inputs[path]["scale"]))

  def dense(path, h):
    return layers.matmul(act(path, h), tensors[f"{path}/kernel"]) + tensors[f"{path}/bias"]

  def s4d(path, u):
    p = {k: tensors.get(f"{path}/{k}") for k in ("a_bar", "b_bar", "c", "d", "c_reverse")}
    apply = functools.partial(
      ssm.apply_ssm,
      p["a_bar"],
      p["b_bar"],
      p["c"],
      p["d"],
      method=arch["method"],
      c_reverse=p["c_reverse"],
      **hooks,
    )
    return jax.vmap(apply)(act(path, u)).astype(u.dtype)

  norm_kind, options = blocks.block_options(arch)

  def block(i):
    path = f"block_{i}"
    norm = blocks.stored_norm(
      norm_kind, tensors[f"{path}/norm/scale"], tensors[f"{path}/norm/bias"]
    )
    return lambda h: blocks.residual_block(
      h,
      norm=norm,
      sequence_layer=functools.partial(s4d, f"{path}/s4d"),
      glu_dense=functools.partial(dense, f"{path}/glu_dense"),
      **options,
    )

  residual = [block(i) for i in range(arch["n_layers"])]
  encoder, decoder = functools.partial(dense, "encoder"), functools.partial(dense, "decoder")
  return blocks.classifier(x, encoder, residual, arch["pooling"], decoder)

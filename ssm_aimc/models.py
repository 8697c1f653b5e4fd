"""Sequence models: linear encoder -> S4D blocks -> pooling -> linear decoder; a registry.

`ModelConfig` is the typed description of a model (the ml_collections config stops in
train.py); `MODELS` maps registry names to constructors and `get_model` builds one.
`calibrate` sets the quantizer parameters from data, and `deployed_tensors` lists every
tensor as it would be stored on hardware. A model with BatchNorm (`norm="batch"`) has
running statistics besides its params: every function that runs the model takes them as
`batch_stats` (None or {} for a model without), and `variables` joins the two.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp

from ssm_aimc import blocks, errors, layers, quant, ssm

POOLINGS = blocks.POOLINGS
BATCH_STATS = layers.BATCH_STATS


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of an S4D sequence classifier.

  Attributes:
    d_model: H, channels of every block.
    n_layers: number of S4D blocks.
    d_state: N, real state size per channel (N/2 complex modes).
    dropout: dropout rate inside the blocks.
    pooling: "mean" over time or "last" step before the decoder.
    prenorm: the norm before (True) or after (False) each block's SSM.
    norm: "layer" (LayerNorm) or "batch" (BatchNorm over batch and time, with running
      statistics in the "batch_stats" collection).
    residual: each block adds its input to its output (False: the QS4D authors' blocks).
    activation: each block's output activation, "glu" or "relu".
    a_init: "lin", "inv" or "lin_quarter" (S4D-Lin at pi/4 n) initialisation of A.
    discretization: "zoh" or "bilinear".
    method: SSM evaluation path ("auto", "fft", "associative", "sequential").
    step_min, step_max: initial step size range.
    train_b: learn the SSM input vector b.
  """

  d_model: int = 64
  n_layers: int = 4
  d_state: int = 32
  dropout: float = 0.1
  pooling: str = "mean"
  prenorm: bool = True
  norm: str = "layer"
  residual: bool = True
  activation: str = "glu"
  a_init: str = "lin"
  discretization: str = "zoh"
  method: str = "auto"
  step_min: float = 1e-3
  step_max: float = 1e-1
  train_b: bool = True

  def __post_init__(self):
    for name in ("d_model", "n_layers", "d_state"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise errors.ConfigError(f"model.{name} must be a positive integer, got {value!r}.")
    if self.d_state % 2:
      raise errors.ConfigError(f"model.d_state must be even, got {self.d_state}.")
    if not 0.0 <= self.dropout < 1.0:
      raise errors.ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}.")
    if not 0 < self.step_min <= self.step_max:
      raise errors.ConfigError(
        f"model.step_min/step_max must satisfy 0 < step_min <= step_max, got "
        f"{self.step_min}, {self.step_max}."
      )
    if not isinstance(self.residual, bool):
      raise errors.ConfigError(f"model.residual must be True or False, got {self.residual!r}.")
    for name, valid in (
      ("pooling", POOLINGS),
      ("norm", blocks.NORMS),
      ("activation", tuple(blocks.ACTIVATIONS)),
      ("a_init", ssm.A_INITS),
      ("discretization", ssm.DISCRETIZATIONS),
      ("method", ssm.METHODS + ("auto",)),
    ):
      if getattr(self, name) not in valid:
        raise errors.ConfigError(f"Unknown model.{name} {getattr(self, name)!r}; valid: {valid}.")


# ModelConfig fields that are `layers.S4D` attributes of the same name.
S4D_FIELDS = ("d_state", "a_init", "discretization", "method", "step_min", "step_max", "train_b")


class S4DClassifier(nn.Module):
  """Encoder -> n_layers x S4DBlock -> pooling -> decoder, for one label per sequence.

  Attributes:
    config: the architecture.
    n_classes: width of the decoder's output (logits).
    bidirectional: use bidirectional S4D layers (sees the whole sequence; not streamable).
    channels: None (every channel), or a channel-pruned model's keep flags, one bool per
      channel of d_model: the encoder's and every block's output are 0 on the pruned
      channels and every LayerNorm normalises over the kept ones (`blocks.residual_block`),
      so the model computes exactly what the model with only the kept channels computes
      (`prune.compact_channels`). A tuple, not an array: it is part of the model's
      structure, so a new mask is a new model (and a new compile).
  """

  config: ModelConfig
  n_classes: int
  bidirectional: bool = False
  channels: tuple[bool, ...] | None = None

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    train: bool = False,
    spec: layers.Quant = None,
    analog: layers.Analog = None,
    start: int = 0,
    stop: int | None = None,
  ) -> jax.Array:
    """x: (B, L, d_input) -> logits (B, n_classes).

    `spec` quantizes (None: float); `analog` runs every weight group on the simulated
    analog substrate and needs the PRNG streams "program" and "read" (None: digital).
    `start` / `stop` run a segment of blocks (`blocks.classifier`): x is then the (B, L, H)
    stream entering block `start`, and with `stop` the stream after block stop - 1 comes
    out instead of logits.
    """
    cfg = self.config
    blocks.check_pooling(cfg.pooling)
    keep = None
    if self.channels is not None:
      if len(self.channels) != cfg.d_model or not any(self.channels):
        raise errors.ConfigError(
          f"channels must hold d_model={cfg.d_model} keep flags with at least one True, got "
          f"{len(self.channels)} flags, {sum(map(bool, self.channels))} True."
        )
      keep = jnp.asarray(self.channels, jnp.float32)
    s4d = functools.partial(
      layers.S4D, bidirectional=self.bidirectional, **{f: getattr(cfg, f) for f in S4D_FIELDS}
    )

    # Each module is made where the skeleton first calls it, so modules are created in the
    # order of the maths (encoder, blocks, decoder).
    block = functools.partial(
      layers.S4DBlock,
      ssm=s4d,
      dropout=cfg.dropout,
      prenorm=cfg.prenorm,
      norm=layers.NORMS[cfg.norm],
      residual=cfg.residual,
      activation=cfg.activation,
    )
    residual = [
      lambda h, name=f"block_{i}": block(name=name)(h, train, spec, analog, keep)
      for i in range(cfg.n_layers)
    ]
    encoder = lambda v: blocks.mask_channels(
      layers.QDense(cfg.d_model, group="encoder", name="encoder")(v, spec, analog), keep
    )
    decoder = lambda h: layers.QDense(
      self.n_classes, group="decoder", per_sequence=True, name="decoder"
    )(h, spec, analog)
    return blocks.classifier(x, encoder, residual, cfg.pooling, decoder, start, stop)


MODELS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
  "s4d": lambda config, n_classes: S4DClassifier(config, n_classes),
  "s4d_bidirectional": lambda config, n_classes: S4DClassifier(
    config, n_classes, bidirectional=True
  ),
}


def get_model(name: str, config: ModelConfig, n_classes: int) -> nn.Module:
  """Builds registry entry `name`; the error for an unknown name lists the valid ones."""
  if name not in MODELS:
    raise errors.ConfigError(f"Unknown model {name!r}; valid models: {sorted(MODELS)}.")
  return MODELS[name](config, n_classes)


# Parameters that belong to quantizers, not to the model's function: excluded from
# parameter counts and from weight decay.
QUANTIZER_PARAMS = ("input_range", "kernel_scale")


def is_quantizer_param(path: str) -> bool:
  """True for a '/'-joined parameter path that names a quantizer parameter."""
  return path.rsplit("/", 1)[-1] in QUANTIZER_PARAMS


def variables(params, batch_stats=None) -> dict:
  """The Flax variables of a classifier: {"params": params}, and its BatchNorm running
  statistics under "batch_stats" when it has any (None or {}: none)."""
  return {"params": params, BATCH_STATS: batch_stats} if batch_stats else {"params": params}


def calibrate(model: nn.Module, params, spec: quant.QuantSpec, x: jax.Array, batch_stats=None):
  """Quantizer parameters set from one batch x: activation clip ranges and LSQ steps.

  Activation ranges are the 99.99th percentile of |input| of each quantizer, measured with
  weights quantized as `spec` says but activations in float (standard post-training
  calibration), in inference mode (BatchNorm on `batch_stats`); LSQ weight steps take
  LSQ's initial value 2 mean|w| / sqrt(q_max).

  Returns:
    a copy of params with every `input_range` and `kernel_scale` replaced.
  """
  float_acts = dataclasses.replace(spec, activations=quant.TensorQuant.off())
  state = _collector(model, "calibration")(variables(params, batch_stats), x, float_acts)
  stats = flax.traverse_util.flatten_dict(state["calibration"], sep="/")
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  for path, values in stats.items():
    if path not in flat:
      raise KeyError(f"Calibration statistic {path} has no parameter to set.")
    flat[path] = jnp.asarray(values[0], flat[path].dtype).reshape(flat[path].shape)
  return flax.traverse_util.unflatten_dict(flat, sep="/")


def deployed_tensors(
  model: nn.Module, params, spec: quant.QuantSpec | None, x: jax.Array, batch_stats=None
):
  """Every stored tensor as hardware would hold it: {path: record}.

  Each record has `values` (quantized; complex for SSM tensors), `bits` (storage width;
  32 for float), `macs_per_element` (MACs per stored real number and time step) and, for
  matrix products, `act_bits` and `per_sequence`. A BatchNorm is stored folded by its
  running statistics `batch_stats` into a per-channel scale and shift. x only fixes shapes
  (one example suffices).
  """
  state = _collector(model, "deployed")(variables(params, batch_stats), x, spec)
  flat = flax.traverse_util.flatten_dict(state["deployed"], sep="/", is_leaf=_is_record)
  return {path: record[0] for path, record in flat.items()}


@functools.lru_cache(maxsize=64)
def _collector(model: nn.Module, collection: str) -> Callable:
  """Jitted forward pass of the model's variables returning the mutable `collection`, one
  per (model, collection).

  Cached so that the spec, a traced argument, can change without a new compile: a sweep
  calibrates and costs every member of a population with one program per architecture.
  """
  return jax.jit(lambda v, x, s: model.apply(v, x, spec=s, mutable=[collection])[1])


def _is_record(_, value) -> bool:
  return isinstance(value, tuple)

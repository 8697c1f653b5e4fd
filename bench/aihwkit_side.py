r"""The IBM aihwkit half of bench/bench_aihwkit.py: 64 sequential forwards of one PCM analog layer.

Runs with the python of a separate aihwkit venv (never the project venv; aihwkit is a
benchmark-only dependency, see BENCHMARKS.md "Chip simulation" for how to make that venv):

  /work/aihwkit-venv/bin/python bench/aihwkit_side.py --repeats=7
  /work/aihwkit-venv/bin/python bench/aihwkit_side.py --inputs=/tmp/x.npz   # what the driver does

Workload: AnalogLinear(in=64, out=128, bias=False) with a TorchInferenceRPUConfig tile on
PCMLikeNoiseModel devices (programming noise frozen once by `program_analog_weights`, drift
and accumulated 1/f noise to `--t_inference` by `drift_analog_weights`, global drift
compensation), 8-bit DAC (inp_res 1/254 over [-1, 1]) and 8-bit ADC (out_res 1/254 over
[-out_bound, out_bound] in units of full-scale input x max|w|), output noise `--out_noise`
drawn fresh at every forward. The step-mode sequence feeds every output back:
  x_{k+1} = tanh(y_k[:, :in]),  k = 0 .. steps - 1,
under torch.no_grad() in eval mode, so each forward waits for the previous one.

Variants (each timed the same way):
  aihwkit_matched     static periphery like ours: noise_management NONE (fixed DAC range
                      [-1, 1]), bound_management NONE (the ADC clips, no re-run);
  aihwkit_default_io  aihwkit's default periphery: ABS_MAX noise management (per-row input
                      rescaling) and ITERATIVE bound management (re-runs a clipped forward);
  torch_linear        a plain torch nn.Linear with the same weights (the float reference).

`--device=cuda` runs the layers on the GPU (the timing then waits for the device after
each repeat). Prints one JSON object: versions, settings and, per variant, the per-repeat
seconds for one sequence (each repeat the mean over `--seqs_per_repeat` sequences, after a
warm-up) and the relative error of the first step's output against the float product.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import aihwkit
import numpy as np
import torch
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType


def _parse():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--inputs", default="", help=".npz with w (in, out) and x0 (batch, in).")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--in_size", type=int, default=64)
  p.add_argument("--out_size", type=int, default=128)
  p.add_argument("--steps", type=int, default=64, help="Sequential forwards per sequence.")
  p.add_argument("--repeats", type=int, default=7, help="Timed repeats (median reported).")
  p.add_argument("--seqs_per_repeat", type=int, default=5, help="Sequences per repeat.")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
  p.add_argument("--t_inference", type=float, default=3600.0, help="aihwkit s after t0.")
  p.add_argument("--bits", type=int, default=8, help="DAC and ADC bits.")
  p.add_argument("--out_bound", type=float, default=12.0)
  p.add_argument("--out_noise", type=float, default=0.06, help="Per-forward output noise.")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--device", default="cpu", help='torch device: "cpu" or "cuda".')
  return p.parse_args()


def _rpu_config(args, default_io: bool) -> TorchInferenceRPUConfig:
  config = TorchInferenceRPUConfig()
  config.noise_model = PCMLikeNoiseModel()  # g_max 25 uS, Joshi et al. 2020 statistics
  config.drift_compensation = GlobalDriftCompensation()
  # Weights normalised to max|w| = 1 per tensor (the scale is applied digitally), so the
  # ADC bound is in units of full-scale input x max|w|, as our adc_bound is.
  config.mapping.weight_scaling_omega = 1.0
  config.mapping.weight_scaling_columnwise = False
  config.forward.inp_bound = 1.0
  config.forward.inp_res = 1.0 / (2**args.bits - 2)
  config.forward.out_bound = args.out_bound
  config.forward.out_res = 1.0 / (2**args.bits - 2)
  config.forward.out_noise = args.out_noise
  if not default_io:
    config.forward.noise_management = NoiseManagementType.NONE
    config.forward.bound_management = BoundManagementType.NONE
  return config


def _analog_layer(args, w: np.ndarray, default_io: bool) -> AnalogLinear:
  layer = AnalogLinear(
    args.in_size, args.out_size, bias=False, rpu_config=_rpu_config(args, default_io)
  )
  layer.set_weights(torch.from_numpy(w.T.copy()))
  layer = layer.to(args.device)
  layer.eval()
  layer.program_analog_weights()  # programming noise, frozen from here on
  layer.drift_analog_weights(args.t_inference)  # drift + 1/f noise + compensation, once
  return layer


def _sequence(layer, x0: torch.Tensor, steps: int, in_size: int) -> torch.Tensor:
  x = x0
  for _ in range(steps):
    y = layer(x)
    x = torch.tanh(y[:, :in_size])
  return y


def _sync(device: str) -> None:
  if device.startswith("cuda"):
    torch.cuda.synchronize()


def _time(layer, x0, args) -> list[float]:
  with torch.no_grad():
    _sequence(layer, x0, args.steps, args.in_size)  # warm-up
    _sync(args.device)
    out = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      for _ in range(args.seqs_per_repeat):
        _sequence(layer, x0, args.steps, args.in_size)
      _sync(args.device)
      out.append((time.perf_counter() - start) / args.seqs_per_repeat)
  return out


def main():
  args = _parse()
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  if args.inputs:
    data = np.load(args.inputs)
    w, x0 = data["w"].astype(np.float32), data["x0"].astype(np.float32)
    args.in_size, args.out_size = w.shape
    args.batch = x0.shape[0]
  else:
    rng = np.random.default_rng(args.seed)
    bound = 1.0 / np.sqrt(args.in_size)
    w = rng.uniform(-bound, bound, (args.in_size, args.out_size)).astype(np.float32)
    x0 = rng.uniform(-1.0, 1.0, (args.batch, args.in_size)).astype(np.float32)
  x0_t = torch.from_numpy(x0).to(args.device)
  y_ideal = x0 @ w

  linear = torch.nn.Linear(args.in_size, args.out_size, bias=False)
  with torch.no_grad():
    linear.weight.copy_(torch.from_numpy(w.T.copy()))
  linear = linear.to(args.device)
  layers = {
    "aihwkit_matched": _analog_layer(args, w, default_io=False),
    "aihwkit_default_io": _analog_layer(args, w, default_io=True),
    "torch_linear": linear.eval(),
  }
  results = {}
  for name, layer in layers.items():
    with torch.no_grad():
      y1 = layer(x0_t).cpu().numpy()
    rel_err = float(np.linalg.norm(y1 - y_ideal) / np.linalg.norm(y_ideal))
    seconds = _time(layer, x0_t, args)
    results[name] = {
      "seconds_per_sequence": seconds,
      "median_s": statistics.median(seconds),
      "step1_rel_err": rel_err,
    }
  print(
    json.dumps(
      {
        "versions": {
          "aihwkit": aihwkit.__version__,
          "torch": torch.__version__,
          "numpy": np.__version__,
          "python": platform.python_version(),
          "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        },
        "settings": {
          k: getattr(args, k)
          for k in (
            "batch",
            "in_size",
            "out_size",
            "steps",
            "repeats",
            "seqs_per_repeat",
            "threads",
            "t_inference",
            "bits",
            "out_bound",
            "out_noise",
            "device",
          )
        },
        "torch_threads": torch.get_num_threads(),
        "results": results,
      }
    )
  )


if __name__ == "__main__":
  main()

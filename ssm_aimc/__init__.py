"""ssm-aimc: S4D state-space models made small and robust for analog in-memory computing.

The Python API (ssm_aimc.api, documented there):

  ssm_aimc.fit(config, workdir=None, *, overrides=None) -> FitResult
  ssm_aimc.evaluate(config=None, workdir=None, *, trained=None, overrides=None) -> dict
  ssm_aimc.deploy(config=None, workdir=None, *, trained=None, overrides=None) -> dict
  ssm_aimc.sweep(config, workdir=None, *, overrides=None) -> dict

and any Flax linen model on simulated analog tiles (ssm_aimc.analog_context):

  with ssm_aimc.on_analog_hardware(spec, weight_bits=None, input_range=None):
    model.apply(variables, x, rngs={"program": k1, "read": k2})

Its names are imported on first use (PEP 562): `import ssm_aimc` itself imports no JAX, so
`ssm_aimc.__version__`, `import ssm_aimc.errors` and launch.py's --help stay instant
(importing JAX, Flax and orbax takes seconds). `deploy` and `sweep` are also the
submodules of those names, made callable (`ssm_aimc.deploy(...)` calls `api.deploy`), so
`from ssm_aimc import deploy` keeps giving the module.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
  "FitResult",
  "deploy",
  "evaluate",
  "fit",
  "on_analog_hardware",
  "sweep",
  "__version__",
]

_FROM_API = ("fit", "evaluate", "FitResult")
_CALLABLE_MODULES = ("deploy", "sweep")


def __getattr__(name: str):
  if name in _FROM_API:
    return getattr(importlib.import_module("ssm_aimc.api"), name)
  if name == "on_analog_hardware":
    return importlib.import_module("ssm_aimc.analog_context").on_analog_hardware
  if name in _CALLABLE_MODULES:
    return importlib.import_module(f"ssm_aimc.{name}")
  raise AttributeError(f"module 'ssm_aimc' has no attribute {name!r}")

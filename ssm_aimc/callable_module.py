"""A module that is also a function of the Python API: `ssm_aimc.deploy(...)` and
`ssm_aimc.sweep(...)` call `api.deploy` / `api.sweep`, while `from ssm_aimc import deploy`
keeps giving the module (importing a submodule binds its name on the package, so the
module and the API function must be one object)."""

import sys
import types


def make_callable(module_name: str, api_function: str) -> None:
  """Makes the module `module_name` callable as `ssm_aimc.api.<api_function>`."""

  class CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
      from ssm_aimc import api  # noqa: PLC0415  (api imports the module made callable)

      return getattr(api, api_function)(*args, **kwargs)

  CallableModule.__doc__ = f"This module, also callable as ssm_aimc.api.{api_function}."
  sys.modules[module_name].__class__ = CallableModule

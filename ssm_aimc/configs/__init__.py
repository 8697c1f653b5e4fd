"""The experiment configs, shipped inside the package (one source: the top-level configs/ of
a clone holds thin shims that re-export these modules).

Import one as a module (`from ssm_aimc.configs import default; default.get_config("smoke")`)
or name one on the command line from any directory: `--config=default:smoke`,
`--config=default.py` and `--config=claims/c1_cost:smoke` are the packaged files when no file
of that name exists (a path that exists as a file wins); `path(name)` gives the file itself.
"""

import os

from ssm_aimc import errors

HERE = os.path.dirname(os.path.abspath(__file__))
_NOT_CONFIGS = ("__init__.py", "common.py")  # Modules here that hold no get_config.


def names() -> list[str]:
  """Every packaged config, as `path` takes it ("default", "claims/c1_cost", ...), sorted."""
  found = []
  for folder, _, files in os.walk(HERE):
    rel = os.path.relpath(folder, HERE)
    for file in files:
      if file.endswith(".py") and file not in _NOT_CONFIGS:
        name = file.removesuffix(".py")
        found.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
  return sorted(found)


def path(name: str) -> str:
  """The file of the packaged config `name` ("default", "default.py", "claims/c1_cost";
  a leading "configs/" is accepted). A name that is not a packaged config is a ConfigError
  listing the valid ones."""
  clean = name.replace(os.sep, "/").removeprefix("configs/").removesuffix(".py")
  if clean in names():
    return os.path.join(HERE, *clean.split("/")) + ".py"
  raise errors.ConfigError(
    f"No config file {name!r} and no packaged config of that name; packaged configs: "
    f"{', '.join(names())}."
  )


def resolve(spec: str) -> str:
  """A --config value `file[:variant]` with `file` made a path: the file itself when it
  exists, else the packaged config of that name (ConfigError when neither)."""
  file, sep, variant = spec.partition(":")
  if os.path.isfile(file):
    return spec
  return path(file) + sep + variant

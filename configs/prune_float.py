"""Shim of ssm_aimc/configs/prune_float.py, the one source of this config."""

from ssm_aimc.configs.prune_float import *  # noqa: F403
from ssm_aimc.configs.prune_float import get_config  # noqa: F401

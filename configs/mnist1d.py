"""Shim of ssm_aimc/configs/mnist1d.py, the one source of this config."""

from ssm_aimc.configs.mnist1d import *  # noqa: F403
from ssm_aimc.configs.mnist1d import get_config  # noqa: F401

"""Shim of ssm_aimc/configs/mnist5k.py, the one source of this config."""

from ssm_aimc.configs.mnist5k import *  # noqa: F403
from ssm_aimc.configs.mnist5k import get_config  # noqa: F401

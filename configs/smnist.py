"""Shim of ssm_aimc/configs/smnist.py, the one source of this config."""

from ssm_aimc.configs.smnist import *  # noqa: F403
from ssm_aimc.configs.smnist import get_config  # noqa: F401

"""Shim of ssm_aimc/configs/noise_aware.py, the one source of this config."""

from ssm_aimc.configs.noise_aware import *  # noqa: F403
from ssm_aimc.configs.noise_aware import get_config  # noqa: F401

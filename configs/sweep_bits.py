"""Shim of ssm_aimc/configs/sweep_bits.py, the one source of this config."""

from ssm_aimc.configs.sweep_bits import *  # noqa: F403
from ssm_aimc.configs.sweep_bits import get_config  # noqa: F401

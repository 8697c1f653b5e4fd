"""Shim of ssm_aimc/configs/claims/c2_size_vs_precision.py, the one source of this config."""

from ssm_aimc.configs.claims.c2_size_vs_precision import *  # noqa: F403
from ssm_aimc.configs.claims.c2_size_vs_precision import get_config  # noqa: F401

"""Shim of ssm_aimc/configs/claims/c1_cost.py, the one source of this config."""

from ssm_aimc.configs.claims.c1_cost import *  # noqa: F403
from ssm_aimc.configs.claims.c1_cost import get_config  # noqa: F401

"""Shim of ssm_aimc/configs/claims/c4_pruning.py, the one source of this config."""

from ssm_aimc.configs.claims.c4_pruning import *  # noqa: F403
from ssm_aimc.configs.claims.c4_pruning import get_config  # noqa: F401

"""Shim of ssm_aimc/configs/claims/common.py, the one source of this module."""

from ssm_aimc.configs.claims.common import *  # noqa: F403

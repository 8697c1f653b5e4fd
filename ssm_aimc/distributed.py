"""Several processes, one run: JAX's distributed runtime for multi-process sweeps.

  distributed.initialize("10.0.0.1:8476", num_processes=4, process_id=2)  # explicit
  distributed.initialize(auto=True)        # SLURM, TPU pods, ...: JAX reads the cluster
  distributed.gather(obj) -> [obj of process 0, obj of process 1, ...]

`initialize` calls `jax.distributed.initialize` once per process, before anything touches
a device (the command line's --coordinator_address, --num_processes, --process_id and
--distributed flags come here). This module imports nothing of ssm_aimc that does:
import it and initialize before the rest (ssm_aimc.experiment builds arrays on import).
On CPU the processes talk through JAX's CPU collectives (gloo), so several processes on
one machine form a cluster too: a test and a laptop can run what a SLURM allocation runs.
Its checks turn bad flags into ConfigErrors before any process waits for the others.

`gather` brings one JSON-able object from every process to every process: a barrier
through the runtime's key-value store (`orbax.checkpoint.multihost.sync_global_processes`,
with a timeout long enough for the slowest process to finish its share of a sweep), then
the objects' bytes in one `multihost_utils.process_allgather`. With one process it is
`[obj]` and touches no runtime.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import logging

from ssm_aimc import errors

# How long `gather` waits for the slowest process (seconds): a whole share of a sweep.
GATHER_TIMEOUT_S = 7 * 24 * 3600


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  auto: bool = False,
) -> bool:
  """Joins this process to a cluster of `num_processes` (JAX's distributed runtime);
  returns whether it did.

  Nothing given (and `auto` off): a single process, nothing done. `auto`: JAX detects
  the cluster from its environment (SLURM, TPU pods, Open MPI, ...), the three values
  optional. Otherwise `num_processes` > 1 needs `coordinator_address` (host:port of
  process 0) and `process_id` in [0, num_processes); `num_processes` 1 is a single process.
  A ConfigError names what is missing or out of range.
  """
  given = coordinator_address is not None or process_id is not None
  if not auto and num_processes is None:
    if given:
      raise errors.ConfigError(
        "--coordinator_address and --process_id need --num_processes (how many processes "
        "the run has), or --distributed to read them from the cluster (SLURM)."
      )
    return False
  if num_processes is not None and num_processes < 1:
    raise errors.ConfigError(f"--num_processes must be >= 1, got {num_processes}.")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise errors.ConfigError(
      f"--process_id {process_id} is out of range for --num_processes {num_processes} "
      f"(0 to {num_processes - 1})."
    )
  if not auto:
    if num_processes == 1:
      return False
    flags = (("--coordinator_address", coordinator_address), ("--process_id", process_id))
    missing = [name for name, value in flags if value is None]
    if missing:
      raise errors.ConfigError(
        f"--num_processes {num_processes} needs {' and '.join(missing)} (process 0's "
        "host:port, and this process's id from 0), or --distributed on a cluster JAX detects "
        "(SLURM, TPU pods)."
      )
  if coordinator_address is not None and ":" not in coordinator_address:
    raise errors.ConfigError(
      f"--coordinator_address {coordinator_address!r} is not host:port (e.g. 127.0.0.1:8476)."
    )
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    # Collectives between CPU processes (gathering a sweep's results) go through gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )
  logging.info(
    "Process %d of %d; %d local and %d global device(s).",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return True


def is_main() -> bool:
  """Whether this is process 0, the one that writes a run's shared files."""
  return jax.process_index() == 0


def gather(obj, name: str, timeout_s: float = GATHER_TIMEOUT_S) -> list:
  """`obj` (JSON-able) of every process, in process order, on every process (module
  docstring); `name` labels the barrier (unique per call in a run)."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils  # noqa: PLC0415

  barrier(name, timeout_s)
  payload = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([payload.size]))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[: payload.size] = payload
  everyone = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(bytes(everyone[p, : sizes[p]])) for p in range(len(sizes))]


def barrier(name: str, timeout_s: float = GATHER_TIMEOUT_S) -> None:
  """Waits until every process reached the barrier `name` (unique per call in a run); a
  no-op with one process."""
  if jax.process_count() == 1:
    return
  from orbax.checkpoint import multihost  # noqa: PLC0415

  multihost.sync_global_processes(f"ssm_aimc_{name}", timeout=int(timeout_s))

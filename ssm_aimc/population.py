"""How the P members of a population are held and run: one member unstacked, or P members
stacked on a leading axis and mapped inside one program, sharded over devices.

A `Layout` is the one place that knows the difference:

  "single"  one member, arrays without a population axis, the plain jitted programs: a
            single run (--mode=train) and each member of a "separate" sweep, which is
            therefore the single run bit for bit;
  "vmap"    P members batched by `jax.vmap` in one program, or with `group` = k > 0 (and
            k < P) in vmapped groups of k members, the groups one after another by
            `jax.lax.map` (its `batch_size`) in one program: a k-member footprint (k = 1
            is the "map" layout's program);
  "map"     P members one after another by `jax.lax.map` inside one program.

Why groups: a vmapped step holds every member's temporaries at once, P times one
member's (80 MiB for 8 members of the digits benchmark model against 10 MiB). On the CPU,
XLA allocates a program's temporaries at every call, and glibc serves an allocation that
large from fresh pages (mmap/munmap each call: one page fault per 4 KiB), and the
working set leaves the cache; that, not the batching, made the vmapped step the slowest
strategy on CPU (BENCHMARKS.md "Why vmap was slower"). `ssm_aimc.sweep` picks the group.

With a mesh (several devices) a stacked population is sharded along its axis
("population"): every array placed with `NamedSharding(mesh, P("population"))` and the
mapped function wrapped in `jax.shard_map`, so each device runs its own slice of members
with no communication. Arrays are built from identical host data with
`jax.make_array_from_callback` (each process fills only its own shards) and gathered with
`multihost_utils.process_allgather` when the mesh spans several processes. `mesh_over`'s
default is this process's own devices: a multi-process sweep (ssm_aimc.sweep) gives each
process members of its own, sharded over its local devices, and never steps one program
across processes. CPU testing of the sharded path:
`XLA_FLAGS=--xla_force_host_platform_device_count=8` set before JAX is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssm_aimc import errors

SINGLE = "single"
STACKED = ("vmap", "map")
AXIS = "population"


def mesh_over(devices=None) -> jax.sharding.Mesh | None:
  """A one-axis ("population") mesh over `devices` (default: this process's, all of them
  with one process), or None for one device."""
  devices = jax.local_devices() if devices is None else list(devices)
  if len(devices) < 2:
    return None
  return jax.sharding.Mesh(np.array(devices), (AXIS,))


def _over_population(fn: Callable, strategy: str, mapped: tuple[bool, ...], group: int = 0):
  def batched(*args):
    xs = tuple(a for a, m in zip(args, mapped, strict=True) if m)
    leaves = jax.tree.leaves(xs)
    size = leaves[0].shape[0] if leaves else 0
    if strategy == "vmap" and (group == 0 or group >= size):
      return jax.vmap(fn, in_axes=tuple(0 if m else None for m in mapped))(*args)

    def body(member_args):
      it = iter(member_args)
      return fn(*(next(it) if m else a for a, m in zip(args, mapped, strict=True)))

    # vmap in groups: lax.map over groups of `group` members, each group vmapped; groups
    # of one are plain lax.map (no population axis of size 1 in every op).
    return jax.lax.map(body, xs, batch_size=group if strategy == "vmap" and group > 1 else None)

  return batched


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a population's arrays are held: `strategy` (module docstring), an optional mesh
  (stacked strategies only) and, for "vmap", `group`: members per vmapped group (0: all
  in one vmap)."""

  strategy: str = SINGLE
  mesh: jax.sharding.Mesh | None = None
  group: int = 0

  def __post_init__(self):
    if self.strategy not in (SINGLE, *STACKED):
      raise errors.ConfigError(f"Unknown layout {self.strategy!r}; valid: {(SINGLE, *STACKED)}.")
    if self.strategy == SINGLE and self.mesh is not None:
      raise errors.ConfigError("A single-member layout is not sharded.")
    if self.group < 0 or (self.group and self.strategy != "vmap"):
      raise errors.ConfigError(f"group={self.group}: a vmap layout's group is 0 or more.")

  @property
  def stacked(self) -> bool:
    return self.strategy != SINGLE

  @property
  def devices(self) -> int:
    return 1 if self.mesh is None else self.mesh.size

  @property
  def multi_process(self) -> bool:
    """Whether the mesh spans devices of several processes (fetch gathers them)."""
    me = jax.process_index()
    return self.mesh is not None and any(d.process_index != me for d in self.mesh.devices.flat)

  def map(self, fn: Callable, mapped: tuple[bool, ...]) -> Callable:
    """`fn` of one member -> the same function of the population: arguments flagged in
    `mapped` carry the population axis, the others are shared; outputs gain the axis.
    The single layout returns `fn` itself."""
    if not self.stacked:
      return fn
    batched = _over_population(fn, self.strategy, mapped, self.group)
    if self.mesh is None:
      return batched
    in_specs = tuple(P(AXIS) if m else P() for m in mapped)
    return jax.shard_map(
      batched, mesh=self.mesh, in_specs=in_specs, out_specs=P(AXIS), check_vma=False
    )

  def _put(self, tree, spec):
    if self.mesh is None:
      return _committed(tree)
    sharding = NamedSharding(self.mesh, spec)

    def put(a):
      a = np.asarray(a)
      return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(put, tree)

  def stack(self, trees: list):
    """Members' trees as the population's: the one tree (single) or stacked on axis 0."""
    if not self.stacked:
      (tree,) = trees
      return _committed(tree)
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
    return self._put(stacked, P(AXIS))

  def shared(self, tree):
    """A tree every member reads (a batch of the shared data), replicated over the mesh."""
    return self._put(tree, P()) if self.stacked else tree

  def fetch(self, tree):
    """Device arrays -> numpy on this host with a leading population axis (of 1 for the
    single layout); gathered from every host when there are several."""
    if not self.stacked:
      return jax.tree.map(lambda a: np.asarray(a)[None], jax.device_get(tree))
    if self.multi_process:
      return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, jax.device_get(tree))

  def place(self, tree):
    """The inverse of `fetch`: host arrays with a leading population axis (of 1 for the
    single layout) -> the population's arrays as this layout holds them."""
    if not self.stacked:
      return _committed(jax.tree.map(lambda a: np.asarray(a)[0], tree))
    return self._put(tree, P(AXIS))

  def member(self, tree, i: int):
    """Member i's tree (on the host for a stacked population)."""
    if not self.stacked:
      return tree
    return jax.tree.map(lambda a: a[i], self.fetch(tree))

  def select(self, improved: np.ndarray, best, params):
    """Per member: params where `improved` (P,) is True, else best (None: nothing yet).
    Always new buffers, so the caller may donate `params` afterwards."""
    if not self.stacked:
      return jax.tree.map(jnp.copy, params) if improved[0] else best
    return _select(self._put(improved, P(AXIS)), params if best is None else best, params)


@jax.jit
def _select(improved, best, params):
  def pick(b, p):
    return jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b)

  return jax.tree.map(pick, best, params)


def _committed(tree):
  """`tree`'s leaves as arrays committed to this process's first device.

  Committed like the outputs of the steps they go into: jit compiles a program per
  placement of its arguments, so a state whose leaves were uncommitted (a TrainState's
  Python int step, numpy stacks) compiled the training step a second time at its second
  call, when the first step's committed outputs came back in (about 35 s of the demo's
  noise-aware stage). Values and dtypes, weak types included, are unchanged.
  """
  return jax.device_put(tree, jax.local_devices()[0])


def chunks(n: int, chunk_size: int, layout: Layout) -> tuple[int, int]:
  """(members per chunk, padded chunk size) of a population of n: a stacked chunk is
  padded to a multiple of the devices (with copies of its last member)."""
  if not layout.stacked:
    return 1, 1
  size = n if chunk_size == 0 else min(chunk_size, n)
  return size, -(-size // layout.devices) * layout.devices

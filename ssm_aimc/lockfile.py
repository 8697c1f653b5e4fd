"""One process at a time: a lock file that names its holder.

`held(path)` holds the lock file `path` for a `with` block and removes it on the way out,
an exception included. A second process fails at once with a WorkdirError naming the
holder's pid and host (written in the file); nothing waits.

Exclusion is an flock on the open file, taken atomically by the kernel and dropped by it
when the holder dies, however it dies (SIGKILL, OOM, power loss): two processes that both
find a stale file cannot both take it, which an "O_EXCL create, else delete the stale file
and create again" scheme cannot promise. The file left by a dead holder is taken over
with a warning, and only when the pid it names is gone on this host; a file naming a
live pid (a reused pid, or a filesystem without flock) or another host is refused, the
message saying which file to remove.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket

from absl import logging

from ssm_aimc import errors


def _holder(fd: int) -> tuple[int, str] | None:
  """(pid, host) written in the open lock file, None when empty or unreadable."""
  os.lseek(fd, 0, os.SEEK_SET)
  words = os.read(fd, 4096).decode(errors="replace").split()
  if len(words) != 2 or not words[0].isdigit():
    return None
  return int(words[0]), words[1]


def _alive(pid: int) -> bool:
  """Whether process `pid` runs on this host (a zombie, dead but not yet reaped, does not)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def _describe(holder: tuple[int, str] | None) -> str:
  if holder is None:
    return "another process"
  pid, host = holder
  return f"pid {pid} on {host}" + (" (this process)" if pid == os.getpid() else "")


def acquire(path: str) -> int:
  """Takes the lock file `path`: its open descriptor; a WorkdirError when it is held."""
  host = socket.gethostname()
  for _ in range(8):  # Only repeated while holders come and go under us.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      os.close(fd)
      raise errors.WorkdirError(
        f"{path} is held by {_describe(holder)}: another launch is using this workdir. Wait "
        "for it to finish or pass another --workdir."
      ) from None
    try:
      same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same = False
    if not same:  # Its holder removed it between our open and flock: start again.
      os.close(fd)
      continue
    holder = _holder(fd)
    if holder is not None and holder != (os.getpid(), host):
      pid, where = holder
      if where != host or _alive(pid):
        os.close(fd)
        raise errors.WorkdirError(
          f"{path} names {_describe(holder)}, which may still be running: another launch "
          "may be using this workdir. If none is, remove the file."
        )
      logging.warning("Took over %s, left by pid %d on %s (no longer running).", path, pid, host)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()} {host}\n".encode())
    return fd
  raise errors.WorkdirError(f"{path} kept changing while this launch tried to take it.")


def release(path: str, fd: int) -> None:
  """Removes the lock file `path` taken by `acquire` and lets it go."""
  try:
    if os.path.samestat(os.fstat(fd), os.stat(path)):
      os.unlink(path)
  except FileNotFoundError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def held(path: str):
  """The lock file `path` held for the block (module docstring)."""
  fd = acquire(path)
  try:
    yield
  finally:
    release(path, fd)

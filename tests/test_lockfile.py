"""The lock file: one holder at a time, released on exit and on error, a dead holder's file
taken over, a live or foreign one refused."""

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from ssm_aimc import errors, lockfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _content(path) -> str:
  with open(path) as f:
    return f.read()


def test_held_names_its_holder_and_is_removed_on_exit_and_on_error(tmp_path):
  path = str(tmp_path / "launch.lock")
  with lockfile.held(path):
    assert _content(path) == f"{os.getpid()} {socket.gethostname()}\n"
    with pytest.raises(errors.WorkdirError, match=rf"held by pid {os.getpid()} .*this process"):
      lockfile.acquire(path)  # A second holder fails at once, even in this process.
  assert not os.path.exists(path)
  with pytest.raises(RuntimeError), lockfile.held(path):
    raise RuntimeError("boom")
  assert not os.path.exists(path)
  with lockfile.held(path):  # Free again.
    pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
  path = str(tmp_path / "launch.lock")
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time; from ssm_aimc import lockfile; lockfile.acquire(sys.argv[1]); "
      "print('held', flush=True); time.sleep(60)",
      path,
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(errors.WorkdirError, match=f"held by pid {holder.pid} "):
      lockfile.acquire(path)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert _content(path).split()[0] == str(holder.pid)  # Left behind by the SIGKILL.
  with caplog.at_level("WARNING"), lockfile.held(path):
    assert _content(path).split()[0] == str(os.getpid())
  assert f"left by pid {holder.pid}" in caplog.text
  assert not os.path.exists(path)


def test_a_lock_file_naming_a_live_pid_or_another_host_is_refused(tmp_path):
  """Without its flock (a reused pid, a filesystem without flock) such a file may still
  be in use: refused, never taken over, and left as it was."""
  path = tmp_path / "launch.lock"
  for content in (f"{os.getppid()} {socket.gethostname()}\n", "1234 elsewhere.example\n"):
    path.write_text(content)
    with pytest.raises(errors.WorkdirError, match="may still be running.*remove the file"):
      lockfile.acquire(str(path))
    assert path.read_text() == content


def test_one_of_several_takers_of_a_stale_lock_wins(tmp_path):
  path = str(tmp_path / "launch.lock")
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with open(path, "w") as f:
    f.write(f"{dead.pid} {socket.gethostname()}\n")
  start, won, lost = threading.Barrier(6), [], []

  def take():
    start.wait()
    try:
      won.append(lockfile.acquire(path))
    except errors.WorkdirError:
      lost.append(1)

  threads = [threading.Thread(target=take) for _ in range(6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert (len(won), len(lost)) == (1, 5)
  lockfile.release(path, won[0])
  assert not os.path.exists(path)

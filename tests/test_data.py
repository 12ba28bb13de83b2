"""Data loading: .npz/.npy/image and WAV folders, deterministic split, shape and dtype checks."""

import wave

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import EdgekitError


def test_npz_with_splits_keeps_them(digits, tmp_path):
    x_train, y_train, x_test, y_test = digits
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load_dataset(path, input_shape=(8, 8, 1))
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_train, y_train)
    assert data.x_train.dtype == np.float32


def test_single_array_is_split_deterministically_and_channel_axis_fitted(digits, tmp_path):
    x = digits[0][..., 0]  # (N, 8, 8): the model wants (8, 8, 1)
    path = tmp_path / "x.npy"
    np.save(path, x)
    a, b = load_dataset(path, input_shape=(8, 8, 1)), load_dataset(path, input_shape=(8, 8, 1))
    assert a.y_test is None and a.x_train.shape[1:] == (8, 8, 1)
    assert len(a.x_train) + len(a.x_test) == len(x) and abs(len(a.x_test) - 0.2 * len(x)) <= 1
    np.testing.assert_array_equal(a.x_test, b.x_test)
    # the split is a partition: no held-out sample is also a training sample
    train = {s.tobytes() for s in a.x_train}
    assert sum(s.tobytes() in train for s in a.x_test) <= _duplicates(x)


def _duplicates(x):
    return len(x) - len({s.tobytes() for s in x})


def test_npz_with_x_and_one_hot_y(tmp_path):
    x = np.random.default_rng(0).random((50, 4), dtype=np.float32)
    labels = np.arange(50) % 3
    np.savez(tmp_path / "d.npz", x=x, y=np.eye(3)[labels])
    data = load_dataset(tmp_path / "d.npz", input_shape=(4,))
    assert data.has_labels and set(np.unique(data.y_test)) <= {0, 1, 2}
    assert data.y_train.dtype == np.int64


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(tmp_path, input_shape=(10, 12, 1))
    assert data.class_names == ["cat", "dog"]
    assert data.x_train.shape[1:] == (10, 12, 1) and 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert sorted(np.concatenate([data.y_train, data.y_test]).tolist()) == [0] * 6 + [1] * 6


def test_wav_folder(tmp_path):
    tone = (np.sin(np.arange(1000) / 5) * 20000).astype("<i2")
    for i in range(5):
        with wave.open(str(tmp_path / f"{i}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(16000)
            f.writeframes(tone.tobytes())
    data = load_dataset(tmp_path, input_shape=(1200, 1))
    assert data.x_train.shape[1:] == (1200, 1)
    np.testing.assert_allclose(data.x_train[0, :1000, 0], tone / 32768, atol=1e-6)
    assert np.all(data.x_train[0, 1000:] == 0)  # padded to the model's input length


def test_shape_mismatch_names_both_shapes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 5, 5), np.float32))
    with pytest.raises(EdgekitError, match=r"\(5, 5\).*\(8, 8, 1\)"):
        load_dataset(tmp_path / "x.npy", input_shape=(8, 8, 1))


def test_wrong_dtype_and_bad_files(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"]] * 4))
    with pytest.raises(EdgekitError, match="dtype <U1"):
        load_dataset(tmp_path / "s.npy")
    np.savez(tmp_path / "k.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(EdgekitError, match="expected x"):
        load_dataset(tmp_path / "k.npz")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(EdgekitError, match="cannot read"):
        load_dataset(tmp_path / "junk.npy")
    with pytest.raises(EdgekitError, match="not found"):
        load_dataset(tmp_path / "absent.npz")


def test_all_samples_pairs_every_sample_with_its_label_once(digits):
    """Evaluation without calibration uses train and test together, labels still aligned; tiny sets once."""
    from edgekit.data import from_arrays

    x, y = digits[0][:60], digits[1][:60]
    data = from_arrays(x, y)
    every_x, every_y = data.all_samples()
    assert len(every_x) == len(x) == len(every_y)
    order = np.lexsort(every_x.reshape(len(every_x), -1).T)
    expected = np.lexsort(x.reshape(len(x), -1).T)
    np.testing.assert_array_equal(every_x[order], x[expected])
    np.testing.assert_array_equal(every_y[order], y[expected])
    tiny_x, tiny_y = from_arrays(x[:3], y[:3]).all_samples()  # under 5 samples: train and test are the same
    assert len(tiny_x) == 3 and list(tiny_y) == list(y[:3])

"""Calibration and evaluation data: `.npz`, `.npy`, or a folder of images or WAV files.

Quantization needs representative inputs (calibration) and held-out inputs to measure what int8 cost; both come
from one user file. A single array is split deterministically so that two runs report the same numbers.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav"}
TEST_FRACTION = 0.2


@dataclass
class Dataset:
    """x arrays are float32 with the batch first; y are int labels (or None when the data has none)."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    source: str = "data"
    class_names: list[str] | None = None

    @property
    def has_labels(self) -> bool:
        return self.y_test is not None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def all_samples(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Train and test together (once if a tiny set uses the same samples for both): for evaluation only."""
        if self.x_train is self.x_test:
            return self.x_test, self.y_test
        y = None if self.y_test is None else np.concatenate([self.y_train, self.y_test])
        return np.concatenate([self.x_train, self.x_test]), y


def load_dataset(path, input_shape=None) -> Dataset:
    """Read a data file or folder; with `input_shape` (one sample, no batch), check and fit the data to it."""
    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"data not found: {path}")
    class_names = None
    if path.is_dir():
        x, y, class_names = _load_folder(path, input_shape)
        arrays = {"x": x, "y": y}
    elif path.suffix.lower() == ".npz":
        arrays = _load_npz(path)
    elif path.suffix.lower() == ".npy":
        arrays = {"x": _np_load(path), "y": None}
    else:
        raise EdgekitError(f"{path} is not a data file; expected .npz, .npy or a folder of images or .wav files")

    if "x_train" in arrays:
        x_train, y_train = _checked(arrays["x_train"], arrays.get("y_train"), input_shape, f"{path.name}: x_train")
        x_test, y_test = _checked(arrays["x_test"], arrays.get("y_test"), input_shape, f"{path.name}: x_test")
        if (y_train is None) != (y_test is None):
            y_train = y_test = None  # labels on one side only cannot be used for a float/int8 comparison
    else:
        x, y = _checked(arrays["x"], arrays.get("y"), input_shape, path.name)
        x_train, y_train, x_test, y_test = split(x, y)
    return Dataset(x_train, y_train, x_test, y_test, source=str(path), class_names=class_names)


def from_arrays(x, y=None, input_shape=None, *, x_test=None, y_test=None, source: str = "arrays") -> Dataset:
    """A Dataset from arrays in memory (split like a single-array file unless x_test is given)."""
    x, y = _checked(x, y, input_shape, source)
    if x_test is None:
        return Dataset(*split(x, y), source=source)
    x_test, y_test = _checked(x_test, y_test, input_shape, source)
    return Dataset(x, y, x_test, y_test, source=source)


def split(x, y=None, test_fraction: float = TEST_FRACTION, seed: int = 0):
    """A fixed shuffled split: (x_train, y_train, x_test, y_test). Tiny sets are used whole for both."""
    n = len(x)
    if n < 5:
        return x, y, x, y
    order = np.random.default_rng(seed).permutation(n)
    cut = n - max(1, int(round(n * test_fraction)))
    train, test = order[:cut], order[cut:]
    return x[train], None if y is None else y[train], x[test], None if y is None else y[test]


def _np_load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:
        raise EdgekitError(f"cannot read {path} as numpy data ({type(error).__name__}); "
                           "expected a file written by numpy.save/savez") from None


def _load_npz(path: Path) -> dict:
    archive = _np_load(path)
    if not hasattr(archive, "files"):
        raise EdgekitError(f"{path} is not an .npz archive; expected arrays x (and y) or x_train/y_train/x_test/y_test")
    keys = set(archive.files)
    if {"x_train", "x_test"} <= keys:
        return {k: archive[k] if k in keys else None for k in ("x_train", "y_train", "x_test", "y_test")}
    if "x" in keys:
        return {"x": archive["x"], "y": archive["y"] if "y" in keys else None}
    if len(keys) == 1:
        return {"x": archive[next(iter(keys))], "y": None}
    raise EdgekitError(f"{path} holds arrays {sorted(keys)}; expected x (and optionally y) or "
                       "x_train/y_train/x_test/y_test")


def _checked(x, y, input_shape, what: str):
    """Validate dtype and shape, fit a missing/extra channel axis of size 1, and return float32 x and int y."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise EdgekitError(f"{what} has dtype {x.dtype}; expected numbers (float32, or integers such as uint8)")
    if x.ndim < 1 or len(x) == 0:
        raise EdgekitError(f"{what} is empty; expected at least one sample")
    x = x.astype(np.float32, copy=False)
    if input_shape is not None:
        want = tuple(int(d) for d in input_shape)
        got = tuple(x.shape[1:])
        if got != want:
            if int(np.prod(got)) == int(np.prod(want)) and _squeezed(got) == _squeezed(want):
                x = x.reshape((len(x), *want))  # e.g. (N, 8, 8) data for an (8, 8, 1) input
            else:
                raise EdgekitError(f"{what} has samples of shape {got} but the model expects input of shape {want}")
    if not np.isfinite(x).all():
        raise EdgekitError(f"{what} contains NaN or infinite values; expected finite numbers")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise EdgekitError(f"{what}: {len(x)} samples but {len(y)} labels; expected one label per sample")
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(axis=1)  # one-hot labels
        y = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise EdgekitError(f"{what}: labels have dtype {y.dtype}; expected integer class labels")
        y = y.astype(np.int64)
    return x, y


def _squeezed(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


def _load_folder(path: Path, input_shape):
    """Files directly in the folder (no labels) or in one sub-folder per class (labels = sorted folder names)."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | AUDIO_SUFFIXES)
    if not files:
        raise EdgekitError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or .wav files")
    kinds = {p.suffix.lower() in AUDIO_SUFFIXES for p in files}
    if len(kinds) > 1:
        raise EdgekitError(f"{path} mixes images and .wav files; expected one kind of sample")
    audio = kinds.pop()
    classes = sorted({p.parent.relative_to(path).parts[0] for p in files if p.parent != path})
    labelled = bool(classes) and all(p.parent != path for p in files)
    read = _read_wav if audio else _read_image
    samples = [read(p, input_shape) for p in files]
    shapes = {s.shape for s in samples}
    if len(shapes) > 1:
        raise EdgekitError(f"{path}: samples have different shapes {sorted(shapes)[:3]}; expected one shape "
                           "(give the model's input shape so that they can be resized)")
    x = np.stack(samples)
    y = np.array([classes.index(p.relative_to(path).parts[0]) for p in files]) if labelled else None
    return x, y, classes if labelled else None


def _read_image(path: Path, input_shape):
    try:
        from PIL import Image
    except ImportError:
        raise EdgekitError("reading images needs Pillow; install it with `pip install pillow`") from None
    try:
        image = Image.open(path)
        channels = input_shape[-1] if input_shape is not None and len(input_shape) == 3 else None
        image = image.convert("L" if channels == 1 else "RGB")
        if input_shape is not None and len(input_shape) >= 2:
            height, width = int(input_shape[0]), int(input_shape[1])
            if image.size != (width, height):
                image = image.resize((width, height), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
    except Exception as error:
        raise EdgekitError(f"cannot read the image {path}: {type(error).__name__}") from None
    if array.ndim == 2:
        array = array[..., None]
    return array


def _read_wav(path: Path, input_shape):
    """PCM WAV as float32 in [-1, 1], mono, padded or trimmed to the model's input size when known."""
    try:
        with wave.open(str(path), "rb") as f:
            width, channels, frames = f.getsampwidth(), f.getnchannels(), f.readframes(f.getnframes())
    except (wave.Error, EOFError, OSError) as error:
        raise EdgekitError(f"cannot read the WAV file {path}: {error}") from None
    if width == 1:
        pcm = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        pcm = np.frombuffer(frames, "<i2").astype(np.float32) / 32768
    elif width == 4:
        pcm = np.frombuffer(frames, "<i4").astype(np.float32) / 2**31
    else:
        raise EdgekitError(f"{path} has {8 * width}-bit samples; expected 8, 16 or 32-bit PCM")
    pcm = pcm.reshape(-1, channels).mean(axis=1)
    if input_shape is not None:
        size = int(np.prod(input_shape))
        pcm = np.pad(pcm[:size], (0, max(0, size - len(pcm))))
        return pcm.reshape(tuple(input_shape))
    return pcm

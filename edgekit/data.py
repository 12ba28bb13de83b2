"""Calibration and evaluation data: `.npz`, `.npy`, or a folder of images or WAV files.

Quantization needs representative inputs (calibration) and held-out inputs to measure what int8 cost; both come
from one user file. A single array is split deterministically so that two runs report the same numbers.
"""

from __future__ import annotations

import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.fileio import MAX_DATA_BYTES, check_input_file, io_error, size_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav"}
TEST_FRACTION = 0.2


@dataclass
class Dataset:
    """x arrays are float32 with the batch first (int8 when asked to keep them); y are int labels or None.

    split_given: the file had its own x_train/x_test split (else one array was split here).
    """

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    source: str = "data"
    class_names: list[str] | None = None
    split_given: bool = False
    task: str | None = None  # what the labels were read as (edgekit.tasks); None without labels
    preprocessing: str | None = None  # how a folder's files became numbers, said in reports

    @property
    def has_labels(self) -> bool:
        return self.y_test is not None

    @property
    def sample_shape(self):
        """One sample's shape; a list of them for a multi-input model (x arrays are then lists, one per input)."""
        if isinstance(self.x_train, list):
            return [tuple(x.shape[1:]) for x in self.x_train]
        return tuple(self.x_train.shape[1:])

    def all_samples(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Train and test together (once if a tiny set uses the same samples for both): for evaluation only."""
        if self.x_train is self.x_test:
            return self.x_test, self.y_test
        y = None if self.y_test is None else np.concatenate([self.y_train, self.y_test])
        if isinstance(self.x_train, list):
            return [np.concatenate([a, b]) for a, b in zip(self.x_train, self.x_test)], y
        return np.concatenate([self.x_train, self.x_test]), y

    def evaluation_samples(self) -> tuple[np.ndarray, np.ndarray | None]:
        """What a command that only evaluates should run: the file's test split if it has one, else everything."""
        return (self.x_test, self.y_test) if self.split_given else self.all_samples()


def load_dataset(path, input_shape=None, *, output_shape=None, keep_int8: bool = False, task: str | None = None,
                 last_activation: str | None = None, input_range=None) -> Dataset:
    """Read a data file or folder, refusing anything malformed in one line.

    input_shape (one sample, no batch): check and fit the samples to it. output_shape (one sample of the model's
    output): check that the labels are classes of that output (range, one-hot width), or targets of its shape
    for a regression model. task (edgekit.tasks; None: detected from the model's output, its last activation and
    the labels) says how labels are read. keep_int8: int8 samples are already quantized (profile): kept as int8
    instead of turned into float32. input_range (low, high): what a folder's pixels 0..255 map to (default 0, 1).
    """
    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"data not found: {path}")
    class_names = None
    preprocessing = None
    if path.is_dir():
        low, high = input_range if input_range is not None else DEFAULT_INPUT_RANGE
        x, y, class_names, preprocessing = _load_folder(path, input_shape, (low, high))
        arrays = {"x": x, "y": y}
    else:
        size = check_input_file(path, "data file", MAX_DATA_BYTES)
        if path.suffix.lower() == ".npz":
            arrays = _load_npz(path, size)
        elif path.suffix.lower() == ".npy":
            arrays = {"x": _load_npy(path, size), "y": None}
        else:
            raise EdgekitError(f"{path} is not a data file; expected .npz, .npy or a folder of images or .wav files")

    if task is None and any(arrays.get(k) is not None for k in ("y", "y_train", "y_test")):
        from edgekit.tasks import detect_task

        labels = next(arrays[k] for k in ("y", "y_test", "y_train") if arrays.get(k) is not None)
        task = detect_task(input_shape, output_shape, np.asarray(labels), last_activation)

    def checked(x, y, what):
        return _checked(x, y, input_shape, what, output_shape=output_shape, keep_int8=keep_int8, task=task)

    if "x_train" in arrays:
        x_train, y_train = checked(arrays["x_train"], arrays.get("y_train"), f"{path.name}: x_train")
        x_test, y_test = checked(arrays["x_test"], arrays.get("y_test"), f"{path.name}: x_test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise EdgekitError(f"{path.name}: x_train has samples of shape {x_train.shape[1:]} and x_test "
                               f"{x_test.shape[1:]}; expected one sample shape")
        if (y_train is None) != (y_test is None):
            y_train = y_test = None  # labels on one side only cannot be used for a float/int8 comparison
        return Dataset(x_train, y_train, x_test, y_test, source=str(path), split_given=True,
                       task=task if y_test is not None else None)
    x, y = checked(arrays["x"], arrays.get("y"), path.name)
    x_train, y_train, x_test, y_test = split(x, y)
    return Dataset(x_train, y_train, x_test, y_test, source=str(path), class_names=class_names,
                   task=task if y is not None else None, preprocessing=preprocessing)


def load_multi_input(path, input_names, input_shapes, *, output_shape=None, task=None,
                     last_activation=None) -> Dataset:
    """An .npz for a model of several inputs: one array per input, keyed by the input's name or x0, x1, ...
    (in the model's input order), all with the same number of samples; labels y (or y0: the first output's).

    The samples are split once, with the same shuffle for every input, so that sample i of each input stays
    together. Every missing or inconsistent array is a one-line error naming the key expected.
    """
    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"data not found: {path}")
    if path.is_dir() or path.suffix.lower() != ".npz":
        raise EdgekitError(f"{path}: a model with {len(input_names)} inputs needs an .npz with one array per "
                           f"input (keys {', '.join(repr(n) for n in input_names)} or "
                           f"{', '.join(f'x{i}' for i in range(len(input_names)))})")
    size = check_input_file(path, "data file", MAX_DATA_BYTES)
    arrays = _load_npz(path, size, every=True)
    xs = []
    for i, (name, shape) in enumerate(zip(input_names, input_shapes)):
        key = name if name in arrays else f"x{i}" if f"x{i}" in arrays else None
        if key is None:
            raise EdgekitError(f"{path.name} has no array for input {i} '{name}'; expected a key {name!r} or "
                               f"'x{i}' (it holds {sorted(arrays)})")
        xs.append((key, arrays[key], shape))
    counts = {key: len(x) if np.ndim(x) else 0 for key, x, _ in xs}
    if len(set(counts.values())) > 1:
        raise EdgekitError(f"{path.name}: the inputs have different numbers of samples ({counts}); expected one "
                           "sample of every input per row")
    y = arrays.get("y", arrays.get("y0"))
    if y is not None and task is None:
        from edgekit.tasks import detect_task

        task = detect_task(None, output_shape, np.asarray(y), last_activation)
    checked = []
    for index, (key, x, shape) in enumerate(xs):
        x, labels = _checked(x, y if index == 0 else None, shape, f"{path.name}: {key}", output_shape=output_shape,
                             task=task)
        checked.append(x)
        if index == 0:
            y = labels
    n = len(checked[0])
    order = np.arange(n)
    if n >= 5:
        order = np.random.default_rng(0).permutation(n)
        cut = n - max(1, int(round(n * TEST_FRACTION)))
        train, test = order[:cut], order[cut:]
    else:
        train = test = order
    return Dataset([x[train] for x in checked], None if y is None else y[train], [x[test] for x in checked],
                   None if y is None else y[test], source=str(path), task=task if y is not None else None)


def from_arrays(x, y=None, input_shape=None, *, x_test=None, y_test=None, source: str = "arrays",
                output_shape=None) -> Dataset:
    """A Dataset from arrays in memory (split like a single-array file unless x_test is given)."""
    x, y = _checked(x, y, input_shape, source, output_shape=output_shape)
    if x_test is None:
        return Dataset(*split(x, y), source=source)
    x_test, y_test = _checked(x_test, y_test, input_shape, source, output_shape=output_shape)
    return Dataset(x, y, x_test, y_test, source=source, split_given=True)


def check_labels(dataset: Dataset, output_shape, what: str | None = None) -> None:
    """Refuse labels that cannot be classes of a model output of `output_shape` (one sample, no batch)."""
    classes = _classes(output_shape)
    if classes is None:
        return
    for y in (dataset.y_train, dataset.y_test):
        if y is not None and len(y):
            _check_class_range(y, classes, output_shape, what or Path(dataset.source).name)


def split(x, y=None, test_fraction: float = TEST_FRACTION, seed: int = 0):
    """A fixed shuffled split: (x_train, y_train, x_test, y_test). Tiny sets are used whole for both."""
    n = len(x)
    if n < 5:
        return x, y, x, y
    order = np.random.default_rng(seed).permutation(n)
    cut = n - max(1, int(round(n * test_fraction)))
    train, test = order[:cut], order[cut:]
    return x[train], None if y is None else y[train], x[test], None if y is None else y[test]


# -- .npy and .npz, read defensively -----------------------------------------------------------------------------
# numpy trusts the header: a header announcing petabytes makes np.load allocate them, an object array needs
# pickle. So every header is read and checked against the bytes really there before any array is allocated.

_DEFLATE_MAX_RATIO = 1100  # deflate cannot expand more than ~1032:1, so a member claiming more is lying


def _read_header(fp, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a .npy header; one line for anything that is not a numeric .npy array."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"version {version}")
    except Exception as error:
        raise EdgekitError(f"cannot read {where} as numpy data ({_reason(error)}); expected a file written by "
                           "numpy.save/savez") from None
    if dtype.hasobject:
        raise EdgekitError(f"{where} holds Python objects (dtype object), which edgekit does not unpickle; "
                           "expected numeric arrays")
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise EdgekitError(f"{where} has dtype {dtype}; expected numbers (float32, or integers such as uint8)")
    return tuple(int(d) for d in shape), dtype


def _check_extent(shape, dtype, available: int, where: str) -> None:
    """The header's shape * itemsize must fit in the bytes really there, and under the data cap."""
    needed = dtype.itemsize
    for d in shape:
        needed *= d
    if needed > MAX_DATA_BYTES:
        raise EdgekitError(f"{where} announces an array of shape {shape} ({size_text(needed)}); expected at most "
                           f"{size_text(MAX_DATA_BYTES)} of data")
    if needed > available:
        raise EdgekitError(f"{where} is truncated: its header announces shape {shape} {dtype} ({needed:,} bytes) "
                           f"but only {max(available, 0):,} bytes follow")


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())[:120]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _load_npy(path: Path, size: int) -> np.ndarray:
    try:
        with open(path, "rb") as fp:
            shape, dtype = _read_header(fp, str(path))
            _check_extent(shape, dtype, size - fp.tell(), str(path))
            fp.seek(0)
            return np.lib.format.read_array(fp, allow_pickle=False)
    except EdgekitError:
        raise
    except OSError as error:
        raise io_error(path, error) from None
    except Exception as error:
        raise EdgekitError(f"cannot read {path} as numpy data ({_reason(error)}); expected a file written by "
                           "numpy.save") from None


def _load_npz(path: Path, size: int, every: bool = False) -> dict:
    """The arrays edgekit uses from an .npz (x[, y] or x_train/y_train/x_test/y_test), each checked first;
    `every`: all its arrays under their own names (a multi-input model's x0, x1, ... or input names)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise EdgekitError(f"{path} is not an .npz archive ({_reason(error)}); expected a file written by "
                           "numpy.savez") from None
    except OSError as error:
        raise io_error(path, error) from None
    with archive:
        members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        keys = set(members)
        if every:
            wanted = sorted(keys)
            if not wanted:
                raise EdgekitError(f"{path} holds no arrays; expected one per input (x0, x1, ...)")
        elif {"x_train", "x_test"} <= keys:
            wanted = [k for k in ("x_train", "y_train", "x_test", "y_test") if k in keys]
        elif "x" in keys:
            wanted = [k for k in ("x", "y") if k in keys]
        elif len(keys) == 1:
            wanted = list(keys)
        else:
            raise EdgekitError(f"{path} holds arrays {sorted(keys)}; expected x (and optionally y) or "
                               "x_train/y_train/x_test/y_test")
        total = 0
        arrays = {}
        for key in wanted:
            info = members[key]
            where = f"array {key!r} in {path}"
            stored = info.compress_type == zipfile.ZIP_STORED
            if info.compress_size > size or (stored and info.file_size != info.compress_size) or (
                    info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 1024):
                raise EdgekitError(f"{where}: the archive's directory is inconsistent (claims {info.file_size:,} "
                                   f"bytes from {info.compress_size:,}); expected a file written by numpy.savez")
            try:
                with archive.open(info) as fp:
                    shape, dtype = _read_header(fp, where)
                    _check_extent(shape, dtype, info.file_size - fp.tell(), where)
                    total += dtype.itemsize * int(np.prod(shape, dtype=object))
                    if total > MAX_DATA_BYTES:
                        raise EdgekitError(f"{path} holds {size_text(total)} of arrays; expected at most "
                                           f"{size_text(MAX_DATA_BYTES)}")
                with archive.open(info) as fp:
                    arrays[key] = np.lib.format.read_array(fp, allow_pickle=False)
            except EdgekitError:
                raise
            except Exception as error:  # zipfile/zlib/numpy raise BadZipFile, zlib.error, ValueError, EOFError...
                raise EdgekitError(f"{where} is truncated or corrupted ({_reason(error)}); expected a complete "
                                   "file written by numpy.savez") from None
    if every:
        return arrays
    if {"x_train", "x_test"} <= set(arrays):
        return {k: arrays.get(k) for k in ("x_train", "y_train", "x_test", "y_test")}
    if "x" in arrays:
        return {"x": arrays["x"], "y": arrays.get("y")}
    return {"x": next(iter(arrays.values())), "y": None}  # a single array, whatever its name


# -- samples and labels ------------------------------------------------------------------------------------------


def _checked(x, y, input_shape, what: str, *, output_shape=None, keep_int8: bool = False, task=None):
    """Validate dtype and shape, fit a missing/extra channel axis of size 1, and return float32 x and int y."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub" or x.dtype.fields is not None:
        raise EdgekitError(f"{what} has dtype {x.dtype}; expected numbers (float32, or integers such as uint8)")
    if x.ndim < 1 or len(x) == 0:
        raise EdgekitError(f"{what} is empty; expected at least one sample")
    if x.ndim < 2 and input_shape is not None and tuple(input_shape) not in ((), (1,)):
        raise EdgekitError(f"{what} has shape {x.shape}: one number per sample, but the model expects input of "
                           f"shape {tuple(int(d) for d in input_shape)}; expected samples along the first axis")
    if x.size == 0:
        raise EdgekitError(f"{what} has samples of shape {x.shape[1:]} (no values); expected non-empty samples")
    if not (keep_int8 and x.dtype == np.int8):
        x = x.astype(np.float32, copy=False)
    if input_shape is not None:
        want = tuple(int(d) for d in input_shape)
        got = tuple(x.shape[1:])
        if got != want:
            if int(np.prod(got)) == int(np.prod(want)) and _squeezed(got) == _squeezed(want):
                x = x.reshape((len(x), *want))  # e.g. (N, 8, 8) data for an (8, 8, 1) input
            else:
                raise EdgekitError(f"{what} has samples of shape {got} but the model expects input of shape {want}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise EdgekitError(f"{what} contains NaN or infinite values; expected finite numbers")
    if y is not None:
        if task in ("regression", "reconstruction", "multilabel"):
            from edgekit.tasks import prepare_targets

            y = prepare_targets(task, y, len(x), output_shape, what)
        else:
            y = _labels(y, len(x), what, output_shape)
    return x, y


def _classes(output_shape) -> int | None:
    """How many classes a model output of this shape scores (one sigmoid unit: 2); None when unknown."""
    if output_shape is None or any(d is None for d in output_shape):
        return None
    size = int(np.prod([int(d) for d in output_shape]))
    return 2 if size == 1 else size


def _labels(y, count: int, what: str, output_shape) -> np.ndarray:
    """Class labels as int64 [N], from class indices or one-hot rows; anything else is refused in one line.

    Float labels that are not classes (values of the output's shape) are refused rather than misread as classes:
    a regression model reads them as targets (edgekit.tasks), detected or stated with --task regression.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf" or y.dtype.fields is not None:
        raise EdgekitError(f"{what}: labels have dtype {y.dtype}; expected integer class labels")
    if y.ndim == 0 or len(y) != count:
        raise EdgekitError(f"{what}: {count} samples but {y.size if y.ndim == 0 else len(y)} labels; expected "
                           "one label per sample")
    classes = _classes(output_shape)
    expected = f"(N,) class indices or (N, {classes}) one-hot rows" if classes else "(N,) class indices or "                                                                                      "(N, classes) one-hot rows"
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise EdgekitError(f"{what}: labels contain NaN or infinite values; expected {expected}")
    per_sample = _squeezed(y.shape[1:])
    if len(per_sample) > 1:
        raise EdgekitError(f"{what}: labels have shape {tuple(y.shape[1:])} per sample; expected {expected}")
    if per_sample:  # one row per sample
        rows = y.reshape(count, per_sample[0]).astype(np.float64)
        one_hot = bool(np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))
        if not one_hot:
            raise EdgekitError(f"{what}: labels of shape {tuple(y.shape[1:])} per sample are not one-hot rows (each "
                               "non-negative, summing to 1) and the model is a classifier; expected {expected}, or no "
                               "labels (--task regression reads them as targets)")
        if classes is not None and per_sample[0] != classes:
            raise EdgekitError(f"{what}: one-hot labels of width {per_sample[0]}, but the model's output has "
                               f"{classes} classes; expected {expected}")
        return rows.argmax(axis=1).astype(np.int64)
    y = y.reshape(count)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        example = y[np.argmax(y != np.round(y))]
        raise EdgekitError(f"{what}: labels are not whole numbers (e.g. {example:g}) and the model is a "
                           f"classifier; expected {expected}, or no labels (--task regression reads them as "
                           "targets)")
    if y.dtype.kind == "f" and np.abs(y).max() >= 2 ** 53:
        raise EdgekitError(f"{what}: labels up to {np.abs(y).max():g}; expected {expected}")
    _check_class_range(y, classes, output_shape, what)
    return y.astype(np.int64)


def _check_class_range(y, classes, output_shape, what: str) -> None:
    low, high = y.min(), y.max()
    if low < 0 or (classes is not None and high >= classes):
        if classes is None:
            raise EdgekitError(f"{what}: labels range from {low} to {high}; expected class indices from 0")
        outputs = "one output (sigmoid)" if classes == 2 and int(np.prod(output_shape)) == 1 else \
            f"{classes} outputs"
        raise EdgekitError(f"{what}: labels range from {low} to {high}; expected class indices 0 to {classes - 1} "
                           f"for the model's {outputs}")


def _squeezed(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


DEFAULT_INPUT_RANGE = (0.0, 1.0)


def parse_input_range(text) -> tuple[float, float] | None:
    """"-1,1" -> (-1.0, 1.0): what image pixels 0..255 become (audio is always PCM in [-1, 1])."""
    if text is None:
        return None
    parts = str(text).split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise EdgekitError(f"--input-range is {text!r}; expected two numbers LOW,HIGH such as 0,1 or -1,1",
                           kind="usage") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise EdgekitError(f"--input-range is {text!r}; expected finite LOW < HIGH such as 0,1 or -1,1",
                           kind="usage")
    return low, high


def _load_folder(path: Path, input_shape, input_range=DEFAULT_INPUT_RANGE):
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
    low, high = input_range
    samples = []
    for p in files:
        check_input_file(p, "data file", MAX_DATA_BYTES)
        if audio:
            samples.append(_read_wav(p, input_shape))
        else:
            samples.append(low + (high - low) * _read_image(p, input_shape))
    preprocessing = ("WAV PCM scaled to [-1, 1], mono, padded or trimmed to the input size" if audio else
                     f"images resized to the input (bilinear), pixels 0..255 scaled to [{low:g}, {high:g}]")
    shapes = {s.shape for s in samples}
    if len(shapes) > 1:
        raise EdgekitError(f"{path}: samples have different shapes {sorted(shapes)[:3]}; expected one shape "
                           "(give the model's input shape so that they can be resized)")
    x = np.stack(samples)
    y = np.array([classes.index(p.relative_to(path).parts[0]) for p in files]) if labelled else None
    return x, y, classes if labelled else None, preprocessing


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

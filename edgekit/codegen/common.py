"""What every code generator shares: the Jinja environment, safe C names, C arrays (atomic output folders come from edgekit.fileio).

Generated files must be stable (same input, byte-identical output) and nothing that comes from a model file or
the user may inject text into them: names go through `c_identifier`, free text through `c_comment`/`c_string`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from edgekit.errors import EdgekitError
from edgekit.fileio import atomic_output_dir, atomic_write_bytes  # noqa: F401  (re-exported for generators)
from edgekit.resources import templates_dir

C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Bool _Complex _Imaginary bool true false NULL main asm class new delete namespace template this operator "
    "private public protected virtual friend try catch throw typename using".split()
)


def c_identifier(text: str, prefix: str = "m") -> str:
    """A valid, non-reserved C identifier from any text: unicode folded to ASCII, the rest replaced by '_'."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^0-9A-Za-z_]", "_", ascii_text)
    name = re.sub(r"_+", "_", name).strip("_")
    if not name:
        name = prefix
    if name[0].isdigit():
        name = f"{prefix}_{name}"
    if name in C_KEYWORDS or name.startswith("__"):
        name = f"{prefix}_{name}"
    return name[:63].rstrip("_")  # no trailing '_' after the cut: c_identifier(c_identifier(x)) == c_identifier(x)


def device_model_name(text: str) -> str:
    """The model name the firmware reports (`ek-info`) and the manifest records: one sanitized string, so that
    `profile` can compare them whatever the file was called (`?`, non-ASCII, a newline, 200 characters)."""
    return c_identifier(text, prefix="model")


def safe_file_stem(text: str) -> str:
    """A portable file name stem (no path separators, no leading dot)."""
    return c_identifier(text, prefix="model").lower()


def c_string(text: str) -> str:
    """A C string literal whose content is printable ASCII, with quotes and backslashes escaped."""
    out = []
    for ch in str(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127 and ch != "?":  # '?' avoided: trigraphs
            out.append(ch)
        else:
            out.append("_")
    return '"' + "".join(out) + '"'


def c_float(value) -> str:
    """A float32 constant that C and C++ read back bit for bit, always with a decimal point ("1.0f", never
    "1f", which C++ parses as a user-defined literal)."""
    import numpy as np

    value = np.float32(value)
    if not np.isfinite(value):
        raise EdgekitError("a quantization scale is not a finite number; expected a valid int8 model")
    return repr(float(value)) + "f"


def c_comment(text: str) -> str:
    """Text safe inside a /* */ or // comment: one line, printable ASCII, no comment terminators."""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in str(text))
    # backslashes first: turned into "/" after the terminator check they could complete a "*/"
    return cleaned.replace("\\", "/").replace("*/", "*_/").replace("/*", "/_*")


def c_bytes(data: bytes, per_line: int = 16, indent: str = "  ") -> str:
    """Bytes as the body of a C array initializer: hex, `per_line` to a line."""
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start:start + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


def c_ints(values, per_line: int = 16, indent: str = "  ") -> str:
    """Integers as the body of a C array initializer."""
    values = [int(v) for v in values]
    lines = []
    for start in range(0, len(values), per_line):
        lines.append(indent + ", ".join(str(v) for v in values[start:start + per_line]) + ",")
    return "\n".join(lines)


@cache
def jinja_env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string in C
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(c_identifier=c_identifier, c_string=c_string, c_comment=c_comment, c_bytes=c_bytes,
                       c_ints=c_ints)
    return env


def render(template: str, **context) -> str:
    """Render templates/<template> with StrictUndefined."""
    return jinja_env().get_template(template).render(**context)


def project_name(graph) -> str:
    """The generated project's name (CMake project, sketch, ESP-IDF app): edgekit_<model stem>."""
    return "edgekit_" + safe_file_stem(graph.name)[:40]


_EK_TYPES = {"int8": "EK_TYPE_INT8", "uint8": "EK_TYPE_UINT8", "int16": "EK_TYPE_INT16", "int32": "EK_TYPE_INT32",
             "float32": "EK_TYPE_FLOAT32"}


def tensor_context(t) -> dict:
    """A model input or output as the generated sources describe it (type, shape, quantization)."""
    if t.dtype not in _EK_TYPES:
        raise EdgekitError(f"tensor '{c_comment(t.name)}' is {t.dtype}; expected int8, uint8, int16, int32 or float32")
    scale = float(t.scale[0]) if t.scale.size else 0.0
    zero_point = int(t.zero_point[0]) if t.zero_point.size else 0
    return {"name_comment": c_comment(t.name), "shape": list(t.shape), "dtype": t.dtype, "ek_type": _EK_TYPES[t.dtype],
            "bytes": t.nbytes, "elements": t.size, "scale": c_float(scale), "zero_point": zero_point,
            "shape_text": "x".join(str(d) for d in t.shape) or "scalar"}

"""Pictures of reports: the memory plan over time and per-layer bars (MACs, time...).

matplotlib is a dependency of edgekit, imported only here, inside functions, with the Agg backend (no display
needed), so commands stay fast and work on headless CI. Figures are written atomically like every other output.
"""

from __future__ import annotations

import io
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.fileio import atomic_write_bytes

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error saying how to get it."""
    require()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def require() -> None:
    """Fail in one line, before any work, when matplotlib (a dependency of edgekit) is missing from this Python."""
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        raise EdgekitError("--plot needs matplotlib, a dependency of edgekit that is missing from this Python; "
                           "reinstall edgekit (pip install edgekit, or pip install matplotlib)")


def check_path(path) -> Path:
    """Fail before any work when the picture could not be written as asked (or matplotlib is missing)."""
    require()
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise EdgekitError(f"cannot write a picture to {path.name}; expected a file ending in "
                           f"{', '.join(FORMATS)}")
    if path.is_dir():
        raise EdgekitError(f"{path} is a folder; expected a picture file name")
    from edgekit.fileio import check_output_file

    return check_output_file(path)


def save(figure, path) -> Path:
    """Render to memory, then write atomically (no half-written picture), and free the figure."""
    path = check_path(path)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=FORMATS[path.suffix.lower()], dpi=120, bbox_inches="tight",
                       metadata={"Software": "edgekit"} if path.suffix.lower() == ".png" else None)
    finally:
        pyplot().close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def draw_memory_plan(ax, buffers: list[dict], num_operators: int, peak_bytes: int, *, names=None,
                     title: str = "Activation memory plan") -> None:
    """Tensors as rectangles: x spans the operators during which the tensor is alive, y its bytes in the arena.

    `buffers` are dicts with tensor, offset, size, first_op, last_op (MemoryPlan.to_dict()["buffers"]);
    first_op -1 is a graph input (alive before the first operator), last_op == num_operators a graph output.
    """
    from matplotlib.patches import Rectangle

    cmap = pyplot().get_cmap("tab20")
    largest = sorted(buffers, key=lambda b: -b["size"])[:12]
    for i, b in enumerate(sorted(buffers, key=lambda b: b["tensor"])):
        x0, x1 = b["first_op"] - 0.45, b["last_op"] + 0.45
        ax.add_patch(Rectangle((x0, b["offset"] / 1024), x1 - x0, b["size"] / 1024, facecolor=cmap(i % 20),
                               edgecolor="black", linewidth=0.5, alpha=0.85))
        if b in largest and b["size"] >= peak_bytes * 0.08:
            label = names.get(b["tensor"], f"t{b['tensor']}") if names else f"t{b['tensor']}"
            label += f"\n{_kib(b['size'])}"
            ax.text((x0 + x1) / 2, (b["offset"] + b["size"] / 2) / 1024, label, ha="center", va="center",
                    fontsize=7, clip_on=True)
    ax.axhline(peak_bytes / 1024, color="crimson", linestyle="--", linewidth=1)
    ax.text(num_operators + 0.4, peak_bytes / 1024, f" peak {_kib(peak_bytes)}", color="crimson", va="bottom",
            ha="right", fontsize=8)
    ax.set_xlim(-1.6, num_operators + 0.6)
    ax.set_ylim(0, max(peak_bytes, 1) / 1024 * 1.08)
    ax.set_xlabel("operator index (tensor lifetime; -1 = graph input)")
    ax.set_ylabel("arena offset (KiB)")
    ax.set_title(title, loc="left")
    ax.grid(axis="y", alpha=0.3)


def draw_layer_bars(ax, labels: list[str], series: dict[str, list[float]], *, ylabel: str, title: str,
                    log: bool = False, stacked: bool = False) -> None:
    """Bars per layer, one colour per series (side by side, or stacked), layers labelled 'index op' along x."""
    n = len(labels)
    width = 0.8 if stacked else 0.8 / max(len(series), 1)
    bottom = [0.0] * n
    for k, (name, values) in enumerate(series.items()):
        xs = list(range(n)) if stacked else [i - 0.4 + width * (k + 0.5) for i in range(n)]
        ax.bar(xs, values, width=width, label=name, bottom=bottom if stacked else None)
        if stacked:
            bottom = [b + v for b, v in zip(bottom, values)]
    step = max(1, -(-n // 60))  # at most 60 labels along the axis: every step-th layer past that
    ax.set_xticks(range(0, n, step))
    ax.set_xticklabels([_short_label(t, 28) for t in labels[::step]], rotation=90, fontsize=7 if n <= 40 else 6)
    ax.set_xlim(-0.8, n - 0.2)
    highest = max((max(v, default=0) for v in series.values()), default=0) if not stacked else max(bottom, default=0)
    if log:
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(0, max(highest, 1) * 3)
    else:
        ax.set_ylim(0, max(highest, 1) * 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)


def analysis_figure(report: dict, path) -> Path:
    """The picture of `edgekit analyze --plot`: memory plan on top, per-layer MACs and other ops below."""
    plt = pyplot()
    layers = report["layers"]
    n = len(layers)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, min(0.32 * n + 3, 14.0)), 9),
                                         gridspec_kw={"height_ratios": [3, 2]})
    plan = report["memory_plan"]
    draw_memory_plan(top, plan["buffers"], n, plan["peak_bytes"],
                     title=f"{report['model']}: activation memory plan (TFLite Micro arena "
                           f"{_kib(report['tflm_arena_bytes']) if report['tflm_arena_bytes'] else 'n/a'})")
    top.set_xticks(range(-1, n + 1) if n <= 40 else range(0, n + 1, 5 if n <= 120 else 10))
    from edgekit.layer_names import label

    draw_layer_bars(bottom, [label(r["index"], r["op"], r.get("layer")) for r in layers],
                    {"MACs": [r["macs"] for r in layers], "other ops": [r["other_ops"] for r in layers]},
                    ylabel="operations (log scale)", log=True, stacked=True,
                    title=f"per-layer work: {report['macs']:,} MACs, {report['other_ops']:,} other ops")
    bottom.set_xlim(top.get_xlim())  # layer i sits under operator i of the plan
    if report.get("board"):
        verdict = "fits" if report["fits"] else "does NOT fit"
        needed = {key: report[key]["needed_bytes"] for key in ("ram", "flash")}
        budgets = ", ".join(f"{key.replace('ram', 'RAM')} {'?' if needed[key] is None else _kib(needed[key])} of "
                            f"{_kib(report[key]['available_bytes'])}" for key in ("ram", "flash"))
        figure.suptitle(f"{verdict} on {report['board']['name']} ({report['backend']}): {budgets}", x=0.01,
                        ha="left", fontsize=11, color="darkgreen" if report["fits"] else "crimson")
    figure.tight_layout()
    return save(figure, path)


LAYERS_PER_COLUMN = 40  # horizontal bars per column: names stay legible at 100+ layers
MAX_COLUMNS = 4  # beyond 160 layers, consecutive layers are grouped into one bar each


def group_layers(labels: list[str], values: list[float], limit: int = LAYERS_PER_COLUMN * MAX_COLUMNS):
    """At most `limit` bars: consecutive layers summed into groups named 'first .. last (n layers)' when there
    are more."""
    if len(labels) <= limit:
        return list(labels), list(values)
    size = -(-len(labels) // limit)
    grouped_labels, grouped_values = [], []
    for start in range(0, len(labels), size):
        chunk = labels[start:start + size]
        grouped_labels.append(chunk[0] if len(chunk) == 1 else f"{chunk[0]} .. {chunk[-1].split(' ')[0]} "
                                                               f"({len(chunk)} layers)")
        grouped_values.append(float(sum(values[start:start + size])))
    return grouped_labels, grouped_values


def layer_chart(labels: list[str], values: list[float], path, *, xlabel: str, title: str) -> Path:
    """Per-layer horizontal bars, in columns of LAYERS_PER_COLUMN layers (read down, then right), so a model of
    100+ layers is a picture of a few columns, not a 2,800-pixel strip."""
    plt = pyplot()
    labels, values = group_layers(labels, values)
    n = len(labels)
    columns = max(1, -(-n // LAYERS_PER_COLUMN))
    rows = min(n, LAYERS_PER_COLUMN) or 1
    figure, axes = plt.subplots(1, columns, figsize=(4.6 * columns + 0.6, 0.2 * rows + 1.6), squeeze=False,
                                sharex=True)
    highest = max((abs(v) for v in values), default=1) or 1
    for c, ax in enumerate(axes[0]):
        part = range(c * LAYERS_PER_COLUMN, min(n, (c + 1) * LAYERS_PER_COLUMN))
        ax.barh([i - part.start for i in part], [values[i] for i in part], color="#3b75af")
        ax.set_yticks([i - part.start for i in part], [_short_label(labels[i]) for i in part], fontsize=7)
        ax.set_ylim(rows - 0.4, -0.6)
        ax.set_xlim(min(0, min(values, default=0)) * 1.05, highest * 1.05)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    figure.suptitle(title, x=0.01, ha="left", fontsize=10)
    figure.tight_layout()
    return save(figure, path)


def _short_label(text: str, width: int = 42) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."

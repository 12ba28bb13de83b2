"""`edgekit report DIR`: one self-contained HTML page for a build folder.

Everything the folder holds, on one page that needs no network to view (inline CSS, a few lines of inline
JavaScript, charts as inline SVG): the fit verdict, the memory plan over time (which tensor lives where in the
arena, operator by operator), per-layer MACs and measured time under Keras layer names, accuracy and validation,
the optimize steps, and, when their files are there, the Pareto front of `edgekit tune` (tune.json) and the
backend comparison of `edgekit compare` (compare.json).

What it reads (all optional but the manifest): edgekit-build.json (the manifest), edgekit-report.json (written
by `build`: analysis, quantize and optimize reports), edgekit-profile.json (written by `profile`),
edgekit-validate.json (written by `profile --validate-layers`), tune.json and compare.json (in DIR, or in its
parent for a backend folder of `edgekit compare`). A build folder without edgekit-report.json gets its analysis
computed from its model. Long models stay readable: tables scroll inside their box, charts group layers by op
type, and the memory-plan chart is as wide as the page whatever the number of operators.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from edgekit.errors import EdgekitError

REPORT_FILE = "report.html"
REPORT_DATA = "edgekit-report.json"
PROFILE_FILE = "edgekit-profile.json"
VALIDATE_FILE = "edgekit-validate.json"
SECTIONS = ("summary", "memory-plan", "layers", "accuracy", "validation", "optimize", "pareto", "compare")
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")


def write_report(build_dir, output=None) -> Path:
    """Render DIR's report to DIR/report.html (or `output`), atomically; returns the path."""
    from edgekit.fileio import atomic_write_bytes, check_output_file

    folder = Path(build_dir)
    path = Path(output) if output else folder / REPORT_FILE
    if path.suffix.lower() not in (".html", ".htm"):
        raise EdgekitError(f"cannot write the report to {path.name}; expected a file ending in .html")
    check_output_file(path)
    page = render_report(folder)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def _read_json(path: Path, what: str):
    from edgekit.fileio import MAX_TEXT_BYTES, read_input_file

    if not path.is_file():
        return None
    try:
        return json.loads(read_input_file(path, what, MAX_TEXT_BYTES).decode("utf-8"))
    except (ValueError, RecursionError):
        raise EdgekitError(f"{path} is not valid JSON; expected the {what} edgekit wrote (run it again)") from None


def gather(folder: Path) -> dict:
    """Everything the report shows, read from the build folder (analysis computed when not recorded)."""
    from edgekit.build_folder import load_build

    build = load_build(folder)
    data = _read_json(folder / REPORT_DATA, "report data") or {}
    analysis = data.get("analysis")
    graph = None
    if build.model_path and build.model_path.is_file():
        from edgekit.tflite_model import load_tflite

        graph = load_tflite(build.model_path)
    if analysis is None:
        if graph is None:
            raise EdgekitError(f"{folder} has neither {REPORT_DATA} nor its model; rebuild with edgekit build")
        from edgekit.analyze import analyze

        analysis = analyze(graph, build.board, build.manifest.get("backend") or "tflm")
    names = build.layer_names() if graph is not None else [row.get("layer") for row in analysis["layers"]]
    for row, name in zip(analysis["layers"], names):
        row["layer"] = name or row.get("layer")
    tensors = {}
    if graph is not None:
        producer = {o: op.index for op in graph.operators for o in op.outputs}
        for b in analysis["memory_plan"]["buffers"]:
            t = graph.tensors[b["tensor"]]
            op = producer.get(b["tensor"])
            tensors[b["tensor"]] = {"name": t.name.split(";")[0], "shape": list(t.shape),
                                    "layer": names[op] if op is not None and op < len(names) else "input"}
    compare = _read_json(folder / "compare.json", "compare.json") or _read_json(folder.parent / "compare.json",
                                                                              "compare.json")
    return {"folder": str(folder), "manifest": build.manifest, "board": build.board, "analysis": analysis,
            "quantize": data.get("quantize"), "optimize": data.get("optimize"), "stages": data.get("stages") or [],
            "profile": _read_json(folder / PROFILE_FILE, "profile report"),
            "validate": _read_json(folder / VALIDATE_FILE, "per-layer validation"),
            # tune.json beside the build (`edgekit build --recipe TUNE_DIR/edgekit.toml` builds into TUNE_DIR/build)
            "tune": _read_json(folder / "tune.json", "tune.json") or _read_json(folder.parent / "tune.json",
                                                                                "tune.json"), "compare": compare, "tensors": tensors}


# -- HTML helpers ---------------------------------------------------------------------------------------------


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"
    return _e(value)


def _kib(value) -> str:
    return "-" if value is None else f"{value / 1024:,.1f} KiB"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _table(columns: list[str], rows: list[list], *, cls: str = "", numeric_from: int = 1) -> str:
    """A table in a scrolling box; cells are HTML already (escape with _e / format with _num)."""
    head = "".join(f"<th{' class=n' if i >= numeric_from else ''}>{_e(c)}</th>" for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i >= numeric_from else ''}>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll {cls}"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _bar(value, highest, color="#4e79a7") -> str:
    width = 0 if not highest or value is None else max(0.0, min(100.0, 100.0 * value / highest))
    return (f'<span class="track"><span class="bar" style="width:{width:.0f}px;background:{color}"></span>'
            '</span>')


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>'


# -- sections -------------------------------------------------------------------------------------------------


def _summary(d: dict) -> str:
    m, a, p = d["manifest"], d["analysis"], d["profile"]
    fits = a.get("fits")
    verdict = ("fits" if fits else "does NOT fit") if fits is not None else "no board checked"
    cls = "ok" if fits else "bad" if fits is False else ""
    rows = []
    for what, key in (("RAM", "ram"), ("flash", "flash")):
        b = a.get(key) or {}
        rows.append([what, _kib(b.get("needed_bytes")), _kib(b.get("available_bytes")),
                     "-" if b.get("margin_bytes") is None else
                     f"{b['margin_bytes'] / 1024:+,.1f} KiB ({b.get('margin_percent', 0):+.1f}%)", _num(b.get("fits"))])
    facts = [["model", _e(m.get("model"))], ["board", _e(m.get("board"))], ["backend", _e(m.get("backend"))],
             ["operators", _num(a.get("num_layers"))], ["MACs", _num(a.get("macs"))],
             ["parameters", _num(a.get("params"))], ["arena (build)", _num(m.get("arena_bytes"))],
             ["firmware", _e(m.get("firmware") or "not compiled")]]
    sizes = m.get("sizes") or {}
    if sizes:
        facts.append(["flash / static RAM (ELF)", f"{_num(sizes.get('flash_bytes'))} / "
                                                  f"{_num(sizes.get('ram_static_bytes'))} B"])
    if p:
        ins = p.get("instructions")
        latency = (f"{_num(ins['median'])} instructions (QEMU, emulated)" if ins else
                   f"{_num((p.get('latency_us') or {}).get('median'))} µs" if p.get("latency_us") else "-")
        facts += [["latency (median)", latency], ["arena used on the device", _num(p.get("arena_bytes"))],
                  ["peak stack", _num(p.get("stack_bytes"))]]
    tips = "".join(f"<li>{_e(t)}</li>" for t in a.get("suggestions") or [])
    board = (a.get("board") or {}).get("name") or m.get("board")
    return _section("summary", "Fit verdict", (
        f'<p class="verdict {cls}">{_e(m.get("model_name") or a.get("model"))} {verdict} on {_e(board)} with the '
        f'{_e(a.get("backend"))} backend</p>'
        + _table(["", "needed", "available", "margin", "fits"], rows)
        + (f"<p>What would help:</p><ul>{tips}</ul>" if tips else "")
        + _table(["", "value"], facts, cls="short")))


def _memory_plan(d: dict) -> str:
    plan = d["analysis"]["memory_plan"]
    buffers, peak = plan["buffers"], max(plan["peak_bytes"], 1)
    n = len(d["analysis"]["layers"])
    width, height, left, bottom = 1100, 360, 60, 30
    sx = (width - left - 10) / (n + 1.2)
    sy = (height - bottom - 10) / (peak * 1.05)
    tensors = d["tensors"]
    shapes = []
    for i, b in enumerate(sorted(buffers, key=lambda b: b["tensor"])):
        x0 = left + (b["first_op"] + 1 - 0.45 + 0.6) * sx
        x1 = left + (b["last_op"] + 1 + 0.45 + 0.6) * sx
        y1 = height - bottom - b["offset"] * sy
        y0 = y1 - b["size"] * sy
        info = tensors.get(b["tensor"], {})
        tip = (f"tensor {b['tensor']} {info.get('name', '')} ({info.get('layer') or '-'}) {b['size']:,} B at offset "
               f"{b['offset']:,}, alive operators {b['first_op']}..{b['last_op']}")
        shapes.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0, 1):.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                      f'fill="{PALETTE[i % len(PALETTE)]}" stroke="#333" stroke-width="0.4"><title>{_e(tip)}</title></rect>')
    peak_y = height - bottom - plan["peak_bytes"] * sy
    step = max(1, n // 20)
    ticks = "".join(f'<text x="{left + (k + 1.6) * sx:.1f}" y="{height - bottom + 14}" class="tick">{k}</text>'
                    for k in range(0, n, step))
    svg = (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="memory plan">'
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#333"/>'
           f'<line x1="{left}" y1="10" x2="{left}" y2="{height - bottom}" stroke="#333"/>{"".join(shapes)}'
           f'<line x1="{left}" y1="{peak_y:.1f}" x2="{width - 10}" y2="{peak_y:.1f}" stroke="crimson" '
           f'stroke-dasharray="5,3"/><text x="{width - 12}" y="{peak_y - 4:.1f}" class="tick" text-anchor="end" '
           f'fill="crimson">peak {_kib(plan["peak_bytes"])}</text>{ticks}'
           f'<text x="{left}" y="{height - 2}" class="tick">operator (tensor lifetimes; graph input before 0)</text>'
           f'<text x="12" y="{height / 2}" class="tick" transform="rotate(-90 12 {height / 2})">arena offset</text>'
           f'</svg>')
    rows = [[_num(b["tensor"]), _e(tensors.get(b["tensor"], {}).get("layer") or "-"),
             _e(tensors.get(b["tensor"], {}).get("name", "")), _e("x".join(map(str, tensors.get(b["tensor"], {}).get(
                 "shape", [])))), _num(b["offset"]), _num(b["size"]), f"{b['first_op']}..{b['last_op']}"]
            for b in sorted(buffers, key=lambda b: (b["first_op"], b["offset"]))]
    return _section("memory-plan", f"Memory plan over time: peak {_kib(plan['peak_bytes'])}", (
        "<p>Each rectangle is one activation tensor: across the operators during which it is alive, at its offset "
        "in the arena (hover for its name). Tensors that overlap in time never overlap in memory.</p>" + svg
        + _table(["tensor", "Keras layer", "name", "shape", "offset", "bytes", "alive (operators)"], rows,
                 numeric_from=4)))


def _device_rows(d: dict) -> dict:
    """operator index -> the profile's per-layer row."""
    profile = d["profile"] or {}
    return {row.get("operator", row["index"]): row for row in profile.get("layers") or []}


def _layers(d: dict) -> str:
    a = d["analysis"]
    measured = _device_rows(d)
    emulated = bool((d["profile"] or {}).get("emulated"))
    unit = "instructions" if emulated else "µs"
    time_of = (lambda r: r.get("instructions")) if emulated else (lambda r: r.get("us"))
    total_time = sum(time_of(r) or 0 for r in measured.values()) or None
    top_macs = max((r["macs"] for r in a["layers"]), default=0)
    top_time = max((time_of(r) or 0 for r in measured.values()), default=0)
    rows = []
    for r in a["layers"]:
        m = measured.get(r["index"])
        t = time_of(m) if m else None
        rows.append([_num(r["index"]), _e(r.get("layer") or "-"), _e(r["op"]), _e("x".join(map(str, r["output_shape"]))),
                     _num(r["params"]), _num(r["macs"]) + _bar(r["macs"], top_macs),
                     ("-" if t is None else _num(t) + _bar(t, top_time, "#f28e2b")),
                     "-" if t is None or not total_time else f"{100 * t / total_time:.1f}%"])
    by_op: dict[str, dict] = {}
    for r in a["layers"]:
        entry = by_op.setdefault(r["op"], {"layers": 0, "macs": 0, "time": 0.0})
        entry["layers"] += 1
        entry["macs"] += r["macs"]
        m = measured.get(r["index"])
        entry["time"] += (time_of(m) or 0) if m else 0
    groups = sorted(by_op.items(), key=lambda kv: -(kv[1]["time"] or kv[1]["macs"]))
    chart = _group_chart(groups, bool(measured), unit)
    note = "" if measured else "<p>No device measurements yet: run <code>edgekit profile DIR</code>.</p>"
    return _section("layers", f"Layers: {len(a['layers'])} operators, {a['macs']:,} MACs", (
        note + chart + _table(["#", "Keras layer", "op", "output", "params", "MACs", f"measured {unit}", "share"],
                              rows, cls="tall", numeric_from=4)))


def _group_chart(groups, measured: bool, unit: str) -> str:
    """Horizontal bars per op type (MACs, and measured time): a chart of a few bars whatever the layer count."""
    width, row, left = 1100, 26, 190
    height = row * len(groups) + 30
    top_macs = max((g["macs"] for _, g in groups), default=0) or 1
    top_time = max((g["time"] for _, g in groups), default=0) or 1
    half = (width - left - 20) / (2 if measured else 1)
    bars = []
    for i, (op, g) in enumerate(groups):
        y = 20 + i * row
        bars.append(f'<text x="{left - 6}" y="{y + 14}" class="tick" text-anchor="end">{_e(op)} ({g["layers"]})</text>')
        w = half * 0.85 * g["macs"] / top_macs
        bars.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="#4e79a7"><title>'
                    f'{_e(op)}: {g["macs"]:,} MACs</title></rect><text x="{left + w + 4:.1f}" y="{y + 14}" '
                    f'class="tick">{g["macs"]:,}</text>')
        if measured:
            x = left + half
            w = half * 0.85 * g["time"] / top_time
            bars.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="#f28e2b"><title>'
                        f'{_e(op)}: {g["time"]:,.0f} {unit}</title></rect><text x="{x + w + 4:.1f}" y="{y + 14}" '
                        f'class="tick">{g["time"]:,.0f}</text>')
    heads = f'<text x="{left}" y="12" class="tick">MACs per op type (layers)</text>'
    if measured:
        heads += f'<text x="{left + half:.1f}" y="12" class="tick">measured {unit} per op type</text>'
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="work per op type">'
            f'{heads}{"".join(bars)}</svg>')


def _accuracy(d: dict) -> str:
    q = d["quantize"]
    p = d["profile"] or {}
    parts = []
    if q:
        rows = [["accuracy", _pct(q.get("float_accuracy")), _pct(q.get("int8_accuracy"))],
                ["top-1 agreement (int8 vs float)", "", _pct(q.get("top1_agreement"))],
                ["cosine of outputs", "", _num(q.get("cosine_similarity"))],
                ["model bytes", _num(q.get("float_bytes")), _num(q.get("int8_bytes"))]]
        parts.append(f"<p>Quantization ({_e(q.get('method'))}), on {_num(q.get('eval_samples'))} held-out samples, "
                     f"{_num(q.get('calibration_samples'))} for calibration:</p>"
                     + _table(["", "float", "int8"], rows, cls="short"))
        layers = [l for l in q.get("layers") or [] if l.get("sqnr_db") is not None]
        if layers:
            top = max(l["sqnr_db"] for l in layers) or 1
            rows = [[_num(l["index"]), _e(l.get("layer") or "-"), _e(l["op"]), _num(l["sqnr_db"], 2)
                     + _bar(l["sqnr_db"], top, "#59a14f"), _num(l.get("rmse_steps"), 3)] for l in layers]
            parts.append(f"<p>Per-layer int8 error ({_e(q.get('layer_error'))}; SQNR, higher is better):</p>"
                         + _table(["#", "Keras layer", "op", "SQNR dB", "RMSE (int8 steps)"], rows, numeric_from=3))
    if p.get("accuracy") is not None:
        parts.append(_table(["on the device", "accuracy"], [["device", _pct(p.get("accuracy"))],
                                                            ["TFLite Micro (host)", _pct(p.get("reference_accuracy"))]],
                            cls="short"))
    if not parts:
        parts.append("<p>No accuracy figures: the build started from an int8 .tflite and was not profiled with "
                     "labelled data.</p>")
    return _section("accuracy", "Accuracy", "".join(parts))


def _validation(d: dict) -> str:
    p, v = d["profile"], d["validate"]
    parts = []
    if p:
        rows = [[k, _num(p.get(key))] for k, key in (
            ("max |diff| (int8 steps)", "max_abs_diff"), ("mismatched values", "mismatched_values"),
            ("cosine", "cosine"), ("rmse", "rmse"), ("mae", "mae"), ("l2r", "l2r"),
            ("top-1 agreement", "top1_agreement"), ("deterministic", "deterministic"))]
        parts.append(f"<p>The device's outputs against TFLite Micro's host interpreter, {_num(p.get('runs'))} runs on "
                     f"{_e(p.get('data'))}:</p>" + _table(["", "value"], rows, cls="short"))
    if v:
        first = v.get("first_divergent")
        parts.append(f'<p class="verdict {"bad" if first else "ok"}">'
                     + (f"first layer that diverges: {_e(first['label'])}" if first else
                        "every layer agrees with the reference") + "</p>")
        columns = ["#", "Keras layer", "op"]
        baselines = [b for b in ("reference", "float") if any(b in row for row in v["layers"])]
        for b in baselines:
            columns += [f"{b} cos", f"{b} rmse", f"{b} max |diff|"]
        rows = []
        for row in v["layers"]:
            cells = [_num(row["index"]), _e(row.get("layer") or "-"), _e(row["op"])]
            for b in baselines:
                figures = row.get(b) or {}
                cells += [_num(figures.get("cos"), 5), _num(figures.get("rmse"), 4), _num(figures.get("max_abs_diff"))]
            rows.append(cells)
        parts.append(_table(columns, rows, cls="tall", numeric_from=3))
    if not parts:
        parts.append("<p>Not profiled yet: run <code>edgekit profile DIR</code> (and <code>--validate-layers</code> "
                     "for per-layer figures).</p>")
    return _section("validation", "Validation", "".join(parts))


def _optimize(d: dict) -> str:
    o = d["optimize"]
    if not o:
        return _section("optimize", "Optimize steps", "<p>No optimize steps ran in this build.</p>")
    rows = []
    for step in o["steps"]:
        b, a = step.get("before") or {}, step.get("after") or {}
        rows.append([_num(step.get("step")), _e(step.get("technique")), f"{_num(b.get('macs'))} → {_num(a.get('macs'))}",
                     f"{_num(b.get('params'))} → {_num(a.get('params'))}",
                     f"{_num(b.get('value'), 4)} → {_num(a.get('value'), 4)} ({_e(a.get('metric'))})"])
    return _section("optimize", "Optimize steps", _table(["step", "technique", "MACs", "parameters", "quality"],
                                                         rows, numeric_from=2))


def _scalar_columns(entries: list[dict]) -> list[str]:
    keys = []
    for e in entries:
        for k, v in e.items():
            if k not in keys and (isinstance(v, (int, float, str, bool)) or v is None):
                keys.append(k)
    return keys[:10]


def _pareto(d: dict) -> str | None:
    t = d["tune"]
    if not t:
        return None
    entries = next((t[k] for k in ("front", "pareto", "pareto_front", "candidates", "points", "trials")
                    if isinstance(t.get(k), list)), [])
    entries = [e for e in entries if isinstance(e, dict)]
    numeric = [k for k in _scalar_columns(entries) if all(isinstance(e.get(k), (int, float)) and
                                                          not isinstance(e.get(k), bool) for e in entries)]
    x_key = next((k for k in ("instructions", "latency_ms", "latency_us", "macs", "ram_bytes", "flash_bytes")
                  if k in numeric),
                 numeric[0] if numeric else None)
    y_key = next((k for k in ("accuracy", "int8_accuracy", "score", "top1_agreement") if k in numeric),
                 numeric[1] if len(numeric) > 1 else None)
    chart = ""
    if x_key and y_key and entries:
        chart = _scatter(entries, x_key, y_key)
    rows = [[_e(e.get(k)) if not isinstance(e.get(k), (int, float)) else _num(e.get(k)) for k in
             _scalar_columns(entries)] for e in entries]
    best = t.get("best") if isinstance(t.get("best"), dict) else None
    head = (f"<p>{len(entries)} trials on the front of {_num(t.get('trials_complete'))} completed "
            f"({_e(t.get('metric'))}; latency in {_e(t.get('latency_unit'))}). "
            + (f"Best meeting the budget: trial {_e(_trial_number(best))}, {_e(_settings(best, entries))}." if best
               else "No trial meets the budget.") + "</p>")
    return _section("pareto", "Pareto front (edgekit tune)", head + chart + _table(
        _scalar_columns(entries) or ["-"], rows, numeric_from=1))


def _trial_number(row: dict):
    return row.get("trial", row.get("number"))


def _settings(row: dict, front: list[dict]) -> str:
    """A trial's settings in words: its own, or its front row's (tune.json's `best` is a full trial row)."""
    if row.get("settings"):
        return str(row["settings"])
    number = _trial_number(row)
    return next((str(e.get("settings")) for e in front if _trial_number(e) == number and e.get("settings")),
                json.dumps(row.get("params") or {}))


def _scatter(entries: list[dict], x_key: str, y_key: str) -> str:
    width, height, pad = 700, 360, 50
    xs, ys = [float(e[x_key]) for e in entries], [float(e[y_key]) for e in entries]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    points = sorted(zip(xs, ys))
    path = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{pad + (x - x0) * sx:.1f}" cy="{height - pad - (y - y0) * sy:.1f}" r="4" '
                   f'fill="#e15759"><title>{x_key} {x:,.4g}, {y_key} {y:,.4g}</title></circle>' for x, y in points)
    return (f'<svg class="chart narrow" viewBox="0 0 {width} {height}" role="img" aria-label="pareto front">'
            f'<polyline points="{path}" fill="none" stroke="#999"/>{dots}'
            f'<text x="{width / 2}" y="{height - 10}" class="tick" text-anchor="middle">{_e(x_key)} '
            f'({x0:,.4g} .. {x1:,.4g})</text><text x="14" y="{height / 2}" class="tick" '
            f'transform="rotate(-90 14 {height / 2})" text-anchor="middle">{_e(y_key)} ({y0:,.4g} .. {y1:,.4g})'
            f'</text></svg>')


def _compare(d: dict) -> str | None:
    c = d["compare"]
    if not c:
        return None
    metric = c.get("metric") or "instructions"
    backends = [b for b in c.get("backends") or [] if isinstance(b, dict)]
    top = max((b.get(metric) or 0 for b in backends), default=0)
    rows = [[_e(b.get("backend")), _e(b.get("status")), ("-" if b.get(metric) is None else
                                                           _num(b.get(metric)) + _bar(b.get(metric), top)),
             _num(b.get("arena_bytes")), _num(b.get("stack_bytes")), _num(b.get("code_bytes")),
             _num(b.get("rodata_bytes")), _num(b.get("max_abs_diff_reference")), _e(b.get("reason") or "")]
            for b in backends]
    parts = [f"<p>{_e(c.get('model'))} on {_e(c.get('board'))}, {_e(c.get('runs'))} runs each ({_e(metric)}):</p>",
             _table(["backend", "status", metric, "arena", "stack", "code", "rodata", "max |diff| vs reference",
                     "reason"], rows, numeric_from=2)]
    by_op = [e for e in c.get("by_op") or [] if isinstance(e, dict)]
    if by_op:
        names = [b.get("backend") for b in backends]
        key = "instructions" if metric == "instructions" else "us"
        rows = [[_e(e.get("op"))] + [_num((e.get(key) or {}).get(n)) for n in names] for e in by_op]
        parts.append(_table(["op"] + [f"{n} {key}" for n in names], rows))
    return _section("compare", "Backends compared (edgekit compare)", "".join(parts))


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1160px;padding:16px;
color:#222;background:#fff}h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;border-bottom:1px solid #ddd;
padding-bottom:4px;margin-top:28px}nav a{margin-right:12px}.verdict{font-size:17px;font-weight:600}
.ok{color:#1a7f37}.bad{color:#c62828}.scroll{max-height:420px;overflow:auto;border:1px solid #ddd;margin:8px 0}
.scroll.tall{max-height:560px}.scroll.short{max-height:none;display:inline-block}table{border-collapse:collapse;
width:100%}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{position:sticky;top:0;background:#f6f8fa;cursor:pointer}td.n,th.n{text-align:right}
.track{display:inline-block;width:100px;margin-left:6px;text-align:left;vertical-align:middle}
.bar{display:inline-block;height:8px;vertical-align:middle}
svg.chart{width:100%;height:auto;border:1px solid #eee;margin:8px 0}svg.chart.narrow{max-width:700px}
.tick{font-size:11px;fill:#444}code{background:#f3f3f3;padding:1px 4px}footer{color:#777;margin-top:30px}
"""

SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var key = function (row) {
      var text = row.cells[th.cellIndex].textContent.replace(/[,%]/g, '');
      var value = parseFloat(text);
      return isNaN(value) ? text : value;
    };
    var ascending = th.dataset.order !== 'asc';
    th.dataset.order = ascending ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x > y ? 1 : x < y ? -1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def render_report(folder) -> str:
    """The HTML page of a build folder."""
    from edgekit import __version__

    d = gather(Path(folder))
    m = d["manifest"]
    sections = [_summary(d), _memory_plan(d), _layers(d), _accuracy(d), _validation(d), _optimize(d)]
    sections += [s for s in (_pareto(d), _compare(d)) if s]
    present = [key for key in SECTIONS if f'<section id="{key}">' in "".join(sections)]
    nav = "".join(f'<a href="#{k}">{k.replace("-", " ")}</a>' for k in present)
    title = f"edgekit report: {m.get('model_name') or m.get('model')} on {m.get('board')} ({m.get('backend')})"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><h1>{_e(title)}</h1><p>Build folder <code>{_e(d["folder"])}</code>, model sha256 '
            f'<code>{_e((m.get("model_sha256") or "")[:16])}</code></p><nav>{nav}</nav>{"".join(sections)}'
            f'<footer>edgekit {_e(__version__)}: everything on this page is inline; it needs no network.</footer>'
            f'<script>{SCRIPT}</script></body></html>\n')

"""`edgekit report`: the HTML page of a build folder, rendered in headless Chromium (Debian's `chromium`).

Each page is checked the way a person would look at it: the DOM (after scripts ran) has every section's element,
the browser's console stayed silent (no script error, no failed load: the page needs no network), and the
screenshot is a page, not a blank (its pixels vary). The digits example is built from Keras (quantize, analyze,
native build, QEMU profile); VWW from MLPerf Tiny's int8 model, 31 operators.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-arm / arm-none-eabi-gcc not installed")
BUILT_SECTIONS = ("summary", "memory-plan", "layers", "accuracy", "validation", "optimize")


def run_cli(*args, cwd=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def chromium(page: Path, *mode: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium on a local file, as root (--no-sandbox), its console logged to stderr."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--enable-logging=stderr", "--v=0", "--window-size=1200,2400", *mode, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=page.parent)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def looked_at(page: Path, tmp_path: Path) -> tuple[str, list[str], np.ndarray]:
    """(the DOM after scripts ran, the console's messages, the screenshot as grey levels)."""
    from PIL import Image

    dom = chromium(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / f"{page.stem}.png"
    picture = chromium(page, f"--screenshot={shot}")
    assert picture.returncode == 0 and shot.is_file(), picture.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    return dom.stdout, console_messages(dom.stderr) + console_messages(picture.stderr), pixels


def assert_rendered(page: Path, tmp_path: Path, sections=BUILT_SECTIONS) -> str:
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text, "the page refers to something on the network"
    dom, console, pixels = looked_at(page, tmp_path)
    for key in sections:
        assert f'<section id="{key}">' in dom, f"section {key} missing from the rendered DOM"
    assert console == [], console
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.03, "the screenshot is blank"
    return dom


@needs_chromium
def test_the_checks_see_a_blank_page_and_a_script_error(tmp_path):
    """The browser checks can fail: a blank page has no variance, a script error reaches the console."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    dom, console, pixels = looked_at(page, tmp_path)
    assert pixels.std() < 1
    assert any("undefinedFunction is not defined" in line for line in console)


@pytest.mark.slow
@needs_chromium
@needs_qemu
def test_digits_report_renders_with_every_section(digits_qemu_build, tmp_path):
    folder, result = digits_qemu_build
    page = Path(result["report"])
    assert page == folder / "report.html" and page.is_file()  # written by build --profile
    dom = assert_rendered(page, tmp_path)
    # the Keras layer names, the measured time and the memory plan's tensors are on the page
    for name in ("conv2d_3", "conv2d_4", "max_pooling2d_1", "dense_2", "dense_3"):
        assert f">{name}<" in dom
    assert "fits on mps2-an386" in dom
    layers = result["profile"]["layers"]
    assert f"{layers[1]['instructions']:,}" in dom
    assert dom.count("<rect") >= len(json.loads((folder / "edgekit-report.json").read_text())["analysis"][
        "memory_plan"]["buffers"])
    # `edgekit report DIR` renders the same folder again, anywhere asked
    again = run_cli("report", folder, "-o", tmp_path / "again.html", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sections"] == list(BUILT_SECTIONS)


@pytest.mark.slow
@needs_chromium
@needs_qemu
def test_vww_report_renders_with_every_section(int8_model_path, tmp_path):
    folder = tmp_path / "vww"
    done = run_cli("build", int8_model_path("vww"), "--board", "mps2-an386", "-o", folder, "--flash", "--profile",
                   "--runs", "1", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    page = Path(json.loads(done.stdout)["report"])
    dom = assert_rendered(page, tmp_path)
    for name in ("depthwise_conv2d_12", "conv2d_13", "average_pooling2d"):
        assert f">{name}<" in dom
    assert dom.count('<tr>') > 31  # every operator's row (and the memory plan's)


def test_report_needs_a_build_folder(tmp_path):
    result = run_cli("report", tmp_path, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["kind"] == "input" and "not a build folder" in result.stderr
    assert not (tmp_path / "report.html").exists()

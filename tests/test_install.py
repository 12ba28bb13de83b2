"""edgekit as users get it: a wheel built from this repository, installed into a fresh virtual environment.

Dependencies come from the system (`--system-site-packages`, `--no-deps`), so this checks the packaging itself:
the board files and C templates must ship inside the package and be found from any working directory.
Building needs hatchling from PyPI (pip's build isolation).
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(args, cwd, timeout=600):
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, args))
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin folder, wheel path, a working directory outside the repository)."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, REPO], cwd=root)
    wheel = next(wheels.glob("edgekit-*.whl"))
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=root)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-deps", "--quiet", wheel], cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return python, venv / "bin", wheel, elsewhere


@pytest.mark.slow
def test_wheel_ships_templates_and_boards(installed):
    _, _, wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edgekit/templates/app/edgekit_backend.h" in names
    assert "edgekit/templates/app/edgekit_platform.h" in names
    for board in (REPO / "boards").glob("*.toml"):
        assert f"edgekit/boards/{board.name}" in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


@pytest.mark.slow
def test_installed_edgekit_lists_every_board_from_another_folder(installed):
    python, bin_dir, _, elsewhere = installed
    located = run([python, "-c", "import edgekit, edgekit.resources as r; "
                                 "print(edgekit.__file__); print(r.templates_dir()); print(r.boards_dir())"],
                  cwd=elsewhere).stdout.split()
    venv = bin_dir.parent
    package = Path(located[0]).parent
    assert package.is_relative_to(venv), f"imported {located[0]}, not the installed copy"
    assert Path(located[1]) == package / "templates" and Path(located[2]) == package / "boards"
    assert (package / "templates" / "app" / "edgekit_backend.h").is_file()

    listed = run([bin_dir / "edgekit", "boards", "--json"], cwd=elsewhere)
    names = [b["name"] for b in json.loads(listed.stdout)["boards"]]
    assert names == sorted(p.stem for p in (REPO / "boards").glob("*.toml"))

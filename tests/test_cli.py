"""The `edgekit` command line: instant start (no TensorFlow), every command has --help and --json, clean errors."""

import importlib.util
import json
import subprocess
import sys

import pytest

from edgekit import __version__
from edgekit.cli import COMMANDS

HEAVY = ("tensorflow", "keras", "tf_keras", "matplotlib")

# Runs the CLI in-process in a fresh interpreter, then reports exit code and which heavy modules got imported.
PROBE = """
import json, sys
from edgekit.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
""" % (HEAVY,)


def probe(*args):
    """(exit code, heavy modules imported, stdout) of `edgekit ARGS` run in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], report["heavy"], result.stdout


def module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"edgekit.commands.{COMMANDS[name][0]}") is not None


def test_importing_the_cli_imports_no_tensorflow():
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edgekit.cli"], capture_output=True,
                            text=True, check=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "edgekit" in imported  # the probe sees imports at all
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["boards"], ["boards", "--json"], ["--version"]])
def test_quick_commands_do_not_import_tensorflow(args):
    code, heavy, out = probe(*args)
    assert code == 0 and heavy == []
    assert out.strip()


def test_top_level_help_lists_every_command():
    code, _, out = probe("--help")
    for name, (_, short_help) in COMMANDS.items():
        assert name in out
        assert short_help.split()[0] in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_and_json(name):
    if not module_exists(name):
        pytest.skip(f"edgekit/commands/{COMMANDS[name][0]}.py does not exist yet")
    module = importlib.import_module(f"edgekit.commands.{COMMANDS[name][0]}")
    options = {opt for param in module.command.params for opt in param.opts}
    assert "--json" in options, f"`edgekit {name}` has no --json option"
    code, heavy, out = probe(name, "--help")
    assert code == 0
    assert f"Usage: edgekit {name}" in out and "--json" in out
    assert "tensorflow" not in heavy and "keras" not in heavy, f"`edgekit {name} --help` imported {heavy}"


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "edgekit", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_unknown_command_and_option_are_usage_errors():
    for args in (["flashh"], ["boards", "--jsn"]):
        result = subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True)
        assert result.returncode == 2, result
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_json_output_is_exactly_one_document():
    result = subprocess.run([sys.executable, "-m", "edgekit", "boards", "--json"], capture_output=True, text=True)
    document = json.loads(result.stdout)  # raises if anything else is on stdout
    assert set(document) == {"boards"}

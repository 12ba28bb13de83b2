"""TFLite Micro project generation for every real board and every MLPerf Tiny int8 model.

The expensive parts run once: each model is rendered for every board (the arena measurement is cached per model)
and only what an assertion needs is compiled: the model array with the host's g++, one header with gcc, the
Arm board layer with arm-none-eabi-gcc through the generated CMakeLists.txt.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edgekit import __version__
from edgekit.boards import all_boards
from edgekit.codegen.tflm import FAMILIES, generate_tflm_project, resolver_ops, write_tflm_project
from edgekit.errors import EdgekitError
from edgekit.tflite_model import load_tflite, parse_tflite
from tests.conftest import INT8_MODELS

TFLM_BOARDS = sorted(name for name, b in all_boards().items() if b.project in FAMILIES)


@pytest.fixture(scope="module")
def rendered(int8_model_path, tmp_path_factory):
    """{(model, board): (graph, project, folder)} for every int8 model on every TFLite Micro board."""
    root = tmp_path_factory.mktemp("tflm")
    out = {}
    for model in INT8_MODELS:
        graph = load_tflite(int8_model_path(model))
        for board_name in TFLM_BOARDS:
            folder = root / f"{model}-{board_name}"
            folder.mkdir()
            out[(model, board_name)] = (graph, write_tflm_project(graph, all_boards()[board_name], folder), folder)
    return out


def _source_dir(project, folder: Path) -> Path:
    return folder / {"esp-idf": "main", "cmake-arm": "src", "pico-sdk": "src", "arduino": project.project_name}[
        project.family]


def test_every_board_and_model_renders_the_required_files(rendered):
    for (model, board), (graph, project, folder) in rendered.items():
        src = _source_dir(project, folder)
        ext = "cpp" if project.family == "arduino" else "cc"
        for name in ("model_data.h", f"model_data.{ext}", "model_settings.h", "op_resolver.h",
                     f"edgekit_backend_tflm.{ext}", "edgekit_app.c", "edgekit_backend.h", "edgekit_platform.h"):
            assert (src / name).is_file(), (model, board, name)
        assert (folder / "README.md").read_text().count(project.build_hint.split()[0]) >= 1
        text = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
        assert "{{" not in text and "{%" not in text, (model, board)


def test_resolver_lists_exactly_the_models_ops(rendered):
    for (model, board), (graph, project, folder) in rendered.items():
        header = (_source_dir(project, folder) / "op_resolver.h").read_text()
        n = int(re.search(r"kEkNumOps = (\d+);", header).group(1))
        methods = re.findall(r"resolver\.(Add\w+)\(\)", header)
        assert n == len(methods) == len(set(graph.opcodes)), (model, board)
        assert [e["method"] for e in project.ops] == methods
        assert sorted(e["op"] for e in project.ops) == graph.opcodes


def test_arena_constant_is_at_least_the_measured_arena(rendered):
    from edgekit.reference import tflm_arena_usage

    measured = {}
    for (model, board), (graph, project, folder) in rendered.items():
        if model not in measured:
            measured[model] = tflm_arena_usage(graph.model_bytes).total_bytes
        settings = (_source_dir(project, folder) / "model_settings.h").read_text()
        arena = int(re.search(r"#define EK_ARENA_BYTES (\d+)", settings).group(1))
        assert arena == project.arena.bytes and arena % 16 == 0
        # at least the 32-bit estimate (the measurement with pointer-sized structures halved) plus the margin,
        # and never below what the 64-bit host measured
        assert arena >= project.arena.target_bytes + project.arena.margin_bytes, (model, board)
        assert project.arena.target_bytes <= measured[model] <= arena, (model, board)


@pytest.mark.slow
def test_model_array_compiles_to_the_exact_tflite_bytes(rendered, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("no host g++")
    main = tmp_path / "dump.cc"
    main.write_text('#include <cstdio>\n#include <cstdint>\n#include "model_data.h"\n'
                    'int main(int, char **argv) {\n'
                    '  if (reinterpret_cast<uintptr_t>(g_model_data) % 16 != 0) return 3;\n'
                    '  FILE *f = std::fopen(argv[1], "wb");\n'
                    '  std::fwrite(g_model_data, 1, g_model_data_len, f);\n'
                    '  return std::fclose(f);\n}\n')
    done = set()
    for (model, board), (graph, project, folder) in rendered.items():
        if model in done:  # the array is the same for every board
            continue
        done.add(model)
        src = _source_dir(project, folder)
        data = src / ("model_data.cpp" if project.family == "arduino" else "model_data.cc")
        exe = tmp_path / f"dump-{model}-{project.family}"
        subprocess.run(["g++", "-O0", "-I", str(src), str(data), str(main), "-o", str(exe)], check=True)
        out = tmp_path / f"{model}.bin"
        subprocess.run([str(exe), str(out)], check=True)
        assert out.read_bytes() == graph.model_bytes, model


def test_esp_idf_files_are_well_formed(rendered):
    for (model, board), (graph, project, folder) in rendered.items():
        if project.family != "esp-idf":
            continue
        top = (folder / "CMakeLists.txt").read_text()
        main = (folder / "main" / "CMakeLists.txt").read_text()
        for text in (top, main):
            assert text.count("(") == text.count(")")
        assert "include($ENV{IDF_PATH}/tools/cmake/project.cmake)" in top
        assert re.search(r"^project\(edgekit_[a-z0-9_]+\)$", top, re.M)
        assert "idf_component_register(" in main
        for source in re.findall(r'"([^"]+\.(?:c|cc))"', main):
            assert (folder / "main" / source).is_file(), source
        deps = yaml.safe_load((folder / "main" / "idf_component.yml").read_text())["dependencies"]
        assert "espressif/esp-tflite-micro" in deps and "idf" in deps
        sdkconfig = (folder / "sdkconfig.defaults").read_text()
        target = all_boards()[board].data["idf"]["target"]
        assert f'CONFIG_IDF_TARGET="{target}"' in sdkconfig
        assert re.search(r"^CONFIG_ESP_MAIN_TASK_STACK_SIZE=\d+$", sdkconfig, re.M)
        partitions = [line.split(",") for line in (folder / "partitions.csv").read_text().splitlines()
                      if line and not line.startswith("#")]
        factory = [p for p in partitions if p[0].strip() == "factory"][0]
        assert int(factory[4], 16) == all_boards()[board].flash["app_partition_bytes"]


def test_psram_placement_on_esp32s3_only_when_internal_ram_is_short(int8_model_path, tmp_path):
    graph = load_tflite(int8_model_path("kws"))
    board = all_boards()["esp32s3"]
    small = write_tflm_project(graph, board, tmp_path / "small")
    assert not small.arena_in_psram
    big = write_tflm_project(graph, board, tmp_path / "big", arena_bytes=board.ram_bytes + 4096)
    assert big.arena_in_psram
    assert "#define EK_ARENA_IN_EXTERNAL_RAM 1" in (tmp_path / "big" / "main" / "model_settings.h").read_text()
    assert "CONFIG_SPIRAM=y" in (tmp_path / "big" / "sdkconfig.defaults").read_text()
    with pytest.raises(EdgekitError, match="below the"):
        write_tflm_project(graph, board, tmp_path / "tiny", arena_bytes=1024)


@pytest.mark.slow
def test_cmake_arm_board_layer_configures_and_compiles(rendered, tmp_path):
    """cmake configures the generated project and arm-none-eabi-gcc compiles its board layer (no TFLM tree here)."""
    if not (shutil.which("cmake") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("cmake or arm-none-eabi-gcc missing")
    for board in ("nucleo-l4r5zi", "nrf52840dk", "disco-f746ng"):
        graph, project, folder = rendered[("ad", board)]
        text = (folder / "CMakeLists.txt").read_text()
        assert text.count("(") == text.count(")")
        build = tmp_path / board
        subprocess.run(["cmake", "-S", str(folder), "-B", str(build), "-DEDGEKIT_PLATFORM_ONLY=ON"], check=True,
                       capture_output=True)
        result = subprocess.run(["cmake", "--build", str(build), "--target", "edgekit_platform"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        # the protocol's `profile` answer carries edgekit's version, not "dev"
        app_object = next(build.rglob("edgekit_app.c.obj")).read_bytes()
        assert f"m-profile-[edgekit {__version__}]".encode() in app_object
    # without a TFLite Micro tree, the full configure stops with a message that says what to pass
    result = subprocess.run(["cmake", "-S", str(folder), "-B", str(tmp_path / "full")], capture_output=True,
                            text=True)
    assert result.returncode != 0 and "TFLM_DIR" in result.stderr


def test_hostile_model_name_yields_valid_identifiers(int8_model_path, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    name = 'evil "*/ model\\ ??=\n#include <x> — ünïcødé 名前 */'
    graph = parse_tflite(int8_model_path("ad").read_bytes(), name=name)
    board = all_boards()["nucleo-l4r5zi"]
    project = generate_tflm_project(graph, board, tmp_path / "out")
    assert re.fullmatch(r"edgekit_[a-z0-9_]+", project.project_name)
    src = tmp_path / "out" / "src"
    settings = (src / "model_settings.h").read_text()
    assert "名前" not in settings and "*/ model" not in settings
    for path in src.iterdir():  # the name's newline never starts a line of its own
        assert not any(line.startswith("#include <x>") for line in path.read_text().splitlines()), path
    test = tmp_path / "check.c"
    test.write_text('#include <string.h>\n#include "edgekit_backend.h"\n#include "model_settings.h"\n'
                    '#include "model_data.h"\n'
                    'int main(void) { return strchr(EK_MODEL_NAME, 34) != 0 || EK_ARENA_BYTES <= 0; }\n')
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-I", str(src), str(test), "-o", str(tmp_path / "c")],
                   check=True)
    assert subprocess.run([str(tmp_path / "c")]).returncode == 0
    for path in (tmp_path / "out").rglob("*"):
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", path.name), path.name


def test_unknown_and_custom_ops_stop_with_their_name(int8_model_path):
    graph = load_tflite(int8_model_path("ad"))
    graph.operators[0].opcode = "CUSTOM"
    graph.operators[0].custom_code = "MyFancyOp"
    with pytest.raises(EdgekitError, match="MyFancyOp"):
        resolver_ops(graph)
    graph.operators[0].opcode = "STABLEHLO_SCATTER"
    with pytest.raises(EdgekitError, match="STABLEHLO_SCATTER"):
        resolver_ops(graph)


def test_generation_is_stable(int8_model_path, tmp_path):
    graph = load_tflite(int8_model_path("kws"))
    board = all_boards()["arduino-nano33ble"]
    generate_tflm_project(graph, board, tmp_path / "a")
    generate_tflm_project(graph, board, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative


def test_every_family_passes_the_edgekit_version_to_the_app(rendered):
    """edgekit_app.c is copied verbatim and says "dev" unless the build defines EK_VERSION."""
    define = f'EK_VERSION=\\"{__version__}\\"'
    build_files = {"cmake-arm": "CMakeLists.txt", "pico-sdk": "CMakeLists.txt", "esp-idf": "main/CMakeLists.txt"}
    seen = set()
    for (model, board), (graph, project, folder) in rendered.items():
        seen.add(project.family)
        if project.family == "arduino":  # a sketch has no build file: the compile command carries it
            assert f'compiler.c.extra_flags=-DEK_VERSION="{__version__}"' in project.build_hint
            assert project.build_hint in (folder / "README.md").read_text()
        else:
            assert f'"{define}"' in (folder / build_files[project.family]).read_text(), (model, board)
    assert seen == set(FAMILIES)


def _one_board_per_family(rendered):
    seen = {}
    for (model, board), value in rendered.items():
        seen.setdefault((model, value[1].family), value)
    return seen


def test_quantization_scales_are_float_literals_that_cxx_compiles(rendered, tmp_path):
    """An integral scale once rendered as `1f`, which C++ reads as a user-defined literal (IC failed)."""
    for (model, family), (graph, project, folder) in _one_board_per_family(rendered).items():
        src = _source_dir(project, folder)
        settings = (src / "model_settings.h").read_text()
        for name in ("EK_INPUT_SCALE", "EK_OUTPUT_SCALE"):
            literal = re.search(rf"#define {name} (\S+)", settings).group(1)
            assert re.fullmatch(r"-?\d+\.\d+(e-?\d+)?f", literal), (model, family, literal)
        probe = tmp_path / f"{model}-{family}.cc"
        probe.write_text('#include "model_settings.h"\nfloat s[] = {EK_INPUT_SCALE, EK_OUTPUT_SCALE};\n')
        subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Werror", "-I", str(src), str(probe)], check=True)


def test_c_float_round_trips_and_always_has_a_decimal_point():
    import numpy as np

    from edgekit.codegen.common import c_float

    for value in (1.0, 0.0, 2.0, 256.0, 0.00390625, 1e-9, 3.4e38, float(np.float32(0.1))):
        text = c_float(value)
        assert "." in text and text.endswith("f")
        assert np.float32(float(text[:-1])) == np.float32(value)
    with pytest.raises(EdgekitError):
        c_float(float("nan"))


def test_cmake_arm_tree_commands_use_tflite_micros_target_arch_names(rendered):
    from edgekit.codegen.tflm import tflm_target_arch

    for (model, board), (graph, project, folder) in rendered.items():
        if project.family != "cmake-arm":
            continue
        arch = tflm_target_arch(all_boards()[board])
        readme, cmake = (folder / "README.md").read_text(), (folder / "CMakeLists.txt").read_text()
        assert f"TARGET_ARCH={arch} " in readme and f"TARGET_ARCH={arch} " in cmake
        # the names TFLite Micro's cortex_m_generic makefile accepts
        assert re.fullmatch(r"cortex-m(0plus|3|4|4\+fp|7|7\+fp|33|55)", arch), arch
    assert tflm_target_arch(all_boards()["nucleo-l4r5zi"]) == "cortex-m4+fp"


def test_cmake_arm_compiles_tflite_micro_with_ndebug_and_its_profiler_hooks(rendered):
    for (model, board), (graph, project, folder) in rendered.items():
        if project.family != "cmake-arm":
            continue
        cmake = (folder / "CMakeLists.txt").read_text()
        definitions = re.search(r"^target_compile_definitions\(tflm PUBLIC ([^)]*)\)", cmake, re.M).group(1).split()
        assert "NDEBUG" in definitions  # reference kernels run several times slower with assertions
        for line in re.findall(r"^(?:target_compile_definitions|add_compile_definitions|add_definitions)\(.*$", cmake,
                               re.M):
            assert "TF_LITE_STRIP_ERROR_STRINGS" not in line  # it compiles out the per-operator profiler hook


def test_fetched_tflite_micro_commit_is_on_upstream_main():
    """The pin must be a commit of tensorflow/tflite-micro's main branch, not one from a pull request's refs."""
    import os

    from edgekit.codegen.tflm import TFLM_GIT_TAG

    assert re.fullmatch(r"[0-9a-f]{40}", TFLM_GIT_TAG)
    checkout = os.environ.get("TFLM_GIT_DIR")
    if not checkout:
        pytest.skip("set TFLM_GIT_DIR to a git clone of tensorflow/tflite-micro to check the pinned commit")
    done = subprocess.run(["git", "-C", checkout, "merge-base", "--is-ancestor", TFLM_GIT_TAG, "main"])
    assert done.returncode == 0, f"{TFLM_GIT_TAG} is not on main in {checkout}"


def test_toolchain_probe_names_the_arm_cxx_library_when_it_is_missing(tmp_path):
    """Without libstdc++-arm-none-eabi-newlib, TFLite Micro fails with 'fatal error: vector'; say so up front."""
    import os

    from edgekit.toolchains import _has_cxx_library, detect

    assert _has_cxx_library(shutil.which("g++"))  # the host's C++ compiler has its library
    tree = tmp_path / "tflm" / "tensorflow" / "lite" / "micro"
    tree.mkdir(parents=True)
    (tree / "micro_interpreter.h").write_text("")
    shims = tmp_path / "bin"
    shims.mkdir()
    for name in ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-size"):
        (shims / name).symlink_to(shutil.which("true"))
    # a C++ compiler without its standard headers, as gcc-arm-none-eabi alone is
    (shims / "arm-none-eabi-g++").write_text("#!/bin/sh\necho 'fatal error: vector: No such file' >&2\nexit 1\n")
    (shims / "arm-none-eabi-g++").chmod(0o755)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{shims}:{old_path}"
    try:
        found = detect("cmake-arm", {"TFLM_DIR": str(tmp_path / "tflm")})
    finally:
        os.environ["PATH"] = old_path
    assert not found.found and "libstdc++-arm-none-eabi-newlib" in found.missing

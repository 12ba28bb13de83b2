"""`edgekit tune` on the bundled digits example: CLI errors, resuming an interrupted SQLite study, and two workers
at once against one study on a real PostgreSQL server.

Trials are kept cheap: --analysis-only (RAM and flash from the analysis, latency estimated from the MACs, no
firmware) and at most one epoch of fine-tuning.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.contract import one_line_error

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"
MODEL, DATA = DIGITS / "digits_cnn.keras", DIGITS / "digits.npz"
CHEAP = ["--analysis-only", "--epochs", "0:1", "--distill", "off", "--quantization", "per-channel"]


def edgekit(*args, timeout=600, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


def start(*args):
    """The command in the background, with Ctrl-C's SIGINT handled as in a terminal (a shell's background job,
    such as a test run started with `&`, would pass it on ignored)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "edgekit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def tune_args(out, *extra):
    # a RAM budget the unpruned model misses (analysis: 3,456 B arena + 4,096 B runtime = 7,552 B) and the first
    # seeded trial meets (structured 0.41: 6,552 B), so a study interrupted after any trial can meet it
    return ["tune", MODEL, "--data", DATA, "--board", "mps2-an386", "--max-ram", 6600, "-o", out, *CHEAP, *extra]


def dominated(a, b):
    """b dominates a: accuracy up, the rest down, better somewhere."""
    ka = (-a["accuracy"], a["ram_bytes"], a["flash_bytes"], a["latency"])
    kb = (-b["accuracy"], b["ram_bytes"], b["flash_bytes"], b["latency"])
    return all(y <= x for x, y in zip(ka, kb)) and ka != kb


# ---------------------------------------------------------------------------------------------------------------
# (c) errors: one line, before any work


@pytest.mark.parametrize("extra, fragments, code", [
    (["--structured", "abc"], ["--structured", "LOW:HIGH"], 2),
    (["--structured", "0.9:0.2"], ["--structured", "low <= high"], 2),
    (["--epochs", "1.5"], ["--epochs"], 2),
    (["--quantization", "per-row"], ["--quantization", "per-row", "per-channel"], 2),
    (["--distill", "maybe"], ["--distill", "on, off or both"], 2),
    (["--trials", "0"], ["--trials", "out of range"], 2),
    (["--max-ram", "0"], ["--max-ram", "> 0"], 2),
    (["--storage", "redis://localhost/0"], ["--storage", "database URL"], 2),
    (["--backend", "tflm", "--tflm-dir", ""], ["--tflm-dir", "empty"], 2),
])
def test_bad_options_are_one_line(tmp_path, extra, fragments, code):
    out = tmp_path / "out"
    done = edgekit(*tune_args(out, *extra))
    one_line_error(done, *fragments, code=code)
    assert not (out / "tune.json").exists()


def test_missing_arguments_and_wrong_board(tmp_path):
    one_line_error(edgekit("tune", MODEL, "--data", DATA, "--board", "mps2-an386"), "-o DIR", code=2)
    one_line_error(edgekit("tune", MODEL, "--board", "mps2-an386", "-o", tmp_path / "o"), "--data", code=2)
    one_line_error(edgekit("tune", tmp_path / "none.keras", "--data", DATA, "--board", "mps2-an386", "-o",
                           tmp_path / "o"), "model not found", code=2)
    done = edgekit("tune", MODEL, "--data", DATA, "--board", "nrf52840dk", "--max-instructions", 1000, "-o",
                   tmp_path / "o", "--json")
    one_line_error(done, "--max-instructions", "not an emulated board", code=2)
    assert json.loads(done.stdout)["kind"] == "usage"


def test_missing_database_driver_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['psycopg'] = None; from edgekit.cli import main; "
            f"main({[str(a) for a in tune_args(tmp_path / 'o', '--storage', 'postgresql://u@127.0.0.1:1/db')]!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    one_line_error(done, "psycopg", "edgekit[distributed]")


def test_unreachable_database_is_one_line_without_the_password(tmp_path):
    pytest.importorskip("psycopg")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = edgekit(*tune_args(tmp_path / "o", "--storage", f"postgresql://u:secret@127.0.0.1:{port}/db",
                              "--trials", 1))
    line = one_line_error(done, "cannot open the study", "***")
    assert "secret" not in line


def test_example_recipe_tune_table():
    from edgekit.recipe import load_recipe

    table = load_recipe(DIGITS / "edgekit.toml").tune
    assert table["max_ram"] == 8192 and table["max_instructions"] == 400000 and table["trials"] == 20
    assert table["structured"] == (0.0, 0.75) and table["distill"] == (False, True)
    assert table["quantization"] == ("per-channel", "per-tensor")


def test_bad_tune_table(tmp_path):
    recipe = tmp_path / "edgekit.toml"
    recipe.write_text(f'model = "{MODEL}"\ndata = "{DATA}"\nboard = "mps2-an386"\n[tune]\nstructured = [0.8, 0.1]\n')
    one_line_error(edgekit("tune", "--recipe", recipe, "-o", tmp_path / "o"), "[tune] 'structured'", code=2)
    recipe.write_text(f'model = "{MODEL}"\n[tune]\nratio = 0.5\n')
    one_line_error(edgekit("tune", "--recipe", recipe, "-o", tmp_path / "o"), "unknown key 'ratio'",
                   "structured")


# ---------------------------------------------------------------------------------------------------------------
# (b) an interrupted SQLite study resumes


@pytest.mark.slow
def test_interrupted_sqlite_study_resumes(tmp_path):
    """SIGINT after the first trial; the same command finishes the study, keeping the trials already done;
    another budget on the same folder is refused in one line."""
    out = tmp_path / "tune"
    args = tune_args(out, "--trials", 3)
    worker = start(*args)
    deadline = time.monotonic() + 400
    first = None
    while time.monotonic() < deadline and worker.poll() is None:
        if (out / "tune.json").is_file():
            first = json.loads((out / "tune.json").read_text())
            if first["trials_complete"] >= 1:
                break
        time.sleep(0.5)
    assert first is not None and first["trials_complete"] >= 1, worker.communicate()[1][-2000:]
    worker.send_signal(signal.SIGINT)
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    interrupted = json.loads((out / "tune.json").read_text())
    done_before = {r["number"]: r for r in interrupted["trials"] if r["state"] == "COMPLETE"}
    assert done_before and len(done_before) < 3

    resumed = edgekit(*args, "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    document = json.loads(resumed.stdout)
    assert document == json.loads((out / "tune.json").read_text())
    complete = {r["number"]: r for r in document["trials"] if r["state"] == "COMPLETE"}
    assert len(complete) == 3
    for number, row in done_before.items():  # kept, not run again
        assert complete[number]["values"] == row["values"] and complete[number]["params"] == row["params"]
    assert document["trials_run_here"] == len(document["trials"]) - len(interrupted["trials"])
    numbers = [r["number"] for r in document["trials"]]
    assert numbers == sorted(set(numbers))
    # the best model and the recipe that rebuilds it
    assert document["met_budget"] and (out / "best.tflite").is_file() and (out / "edgekit.toml").is_file()
    assert document["best"]["values"]["ram_bytes"] <= 6600
    assert document["baseline"]["ram_bytes"] > 6600  # the unpruned model misses this budget
    from edgekit.recipe import load_recipe

    recipe = load_recipe(out / "edgekit.toml")
    assert recipe.optimize == document["best"]["steps"]
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    changed = edgekit(*tune_args(out, "--trials", 3, "--max-flash", 100000))
    one_line_error(changed, "other settings", "budget", code=2)


@pytest.mark.slow
def test_budget_nothing_meets_ends_with_the_closest(tmp_path):
    """In-process (no new TensorFlow start-up): a flash budget below any model's weights."""
    from edgekit.tune import Budget, Space, run_tune

    space = Space(structured=(0.0, 0.75), epochs=(0, 0), distill=(False,), quantization=("per-channel",))
    document = run_tune(MODEL, DATA, "mps2-an386", tmp_path / "t", space=space, budget=Budget(max_flash=1000),
                        trials=1, measure_firmware=False)
    assert document["met_budget"] is False and document["best"] is None
    assert document["closest"] and all(any("flash bytes" in v and "> 1,000" in v for v in c["violations"])
                                       for c in document["closest"])
    assert document["rejected_before_training"] == 1  # the edit alone already misses: never trained
    assert not (tmp_path / "t" / "edgekit.toml").exists() and not (tmp_path / "t" / "best.tflite").exists()
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["closest"] == document["closest"]


# ---------------------------------------------------------------------------------------------------------------
# (a) two workers against one study on a real PostgreSQL server


def _as_postgres(cmd, **kwargs):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on a loopback port, owned by `postgres` (the server refuses root)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'edgekit[distributed]')")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not candidates:
            pytest.skip("no PostgreSQL server here (Debian package postgresql; scripts/setup.sh installs it)")
        initdb, pg_ctl = str(candidates[-1]), str(candidates[-1].with_name("pg_ctl"))
    if os.geteuid() == 0:
        try:
            import pwd

            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="edgekit-pg-"))
    if os.geteuid() == 0:
        os.chown(folder, user.pw_uid, user.pw_gid)
    data = folder / "data"
    done = _as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"initdb failed: {done.stderr.strip()[-300:]}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    done = _as_postgres([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"])
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"the PostgreSQL server did not start: {done.stderr.strip()[-300:]}")
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE DATABASE tune")
        yield f"postgresql://postgres@127.0.0.1:{port}/tune"
    finally:
        _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    trials = 4
    workers = [start(*tune_args(tmp_path / name, "--trials", trials, "--storage", postgres_url, "--json"))
               for name in ("a", "b")]
    documents = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr[-3000:]
        documents.append(json.loads(stdout))

    import optuna

    study = optuna.load_study(study_name=documents[0]["study"], storage=postgres_url)
    all_trials = study.get_trials()
    numbers = [t.number for t in all_trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    ran = [{r["number"] for r in d["trials"] if r["worker"] == d["worker"]} for d in documents]
    assert documents[0]["worker"] != documents[1]["worker"]
    assert not ran[0] & ran[1]
    assert len(all_trials) == len(ran[0]) + len(ran[1]) == documents[0]["trials_run_here"] + \
        documents[1]["trials_run_here"]
    complete = [t for t in all_trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= trials  # each worker stops once the study has enough (one may overshoot)
    assert all(ran), "both workers ran trials"

    # the front, asked for again once both are done (nothing left to run), is computed over every trial
    final = edgekit(*tune_args(tmp_path / "c", "--trials", trials, "--storage", postgres_url, "--json"))
    assert final.returncode == 0, final.stderr[-3000:]
    document = json.loads(final.stdout)
    assert document["trials_run_here"] == 0 and document["trials_in_study"] == len(all_trials)
    rows = {r["number"]: r for r in document["trials"] if r["state"] == "COMPLETE"}
    expected = sorted(n for n, r in rows.items()
                      if not any(dominated(r["values"], o["values"]) for o in rows.values()))
    assert [f["trial"] for f in document["front"]] == expected
    assert {r["worker"] for r in rows.values()} == {documents[0]["worker"], documents[1]["worker"]}

"""The CLI as a user runs it: separate processes, a local Ray each, exit codes and messages."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.configs import LOCAL_CONFIG, ROOT
from tests.helpers import small_cli_env

pytestmark = pytest.mark.e2e


def cli_env(tmp_path) -> dict:
    return {**small_cli_env(), "MLSYS_STORAGE__ROOT": str(tmp_path / "store")}


def mlsys_process(tmp_path, *args, env=None, **popen) -> subprocess.Popen:
    """The CLI as a running process (to read its output as it goes, or to Ctrl-C it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(LOCAL_CONFIG), *args],
        cwd=ROOT,
        env={**cli_env(tmp_path), **(env or {})},
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
        **popen,
    )


def ctrl_c_as_in_a_terminal() -> None:
    """SIGINT back to its default in the child, as a terminal's Ctrl-C finds it. Tests started
    in the background by a shell (`.ci/run &`, nohup) inherit SIGINT ignored, and so would the
    CLI: Python then installs no KeyboardInterrupt and a Ctrl-C test sees the run finish."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mlsys(tmp_path, *args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(LOCAL_CONFIG), *args],
        cwd=ROOT,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_generate_etl_features_from_the_cli(tmp_path):
    raw = tmp_path / "raw"
    out = mlsys(tmp_path, "data", "generate", "--rows", "4000", "--out", str(raw), "--format", "csv")
    assert "wrote 4,000 rows" in out.stdout
    out = mlsys(tmp_path, "etl", "--input", str(raw))
    assert "rows read" in out.stdout and "4,000" in out.stdout
    out = mlsys(tmp_path, "features", "apply")
    assert "feature service 'model_v1'" in out.stdout
    out = mlsys(tmp_path, "features", "materialize")
    assert "materialized" in out.stdout
    out = mlsys(tmp_path, "features", "materialize")
    assert "up to date" in out.stdout


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    proc = mlsys(tmp_path, "etl", "--input", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: input {tmp_path / 'nope'} does not exist"

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        LOCAL_CONFIG.read_text().replace("numeric: [age, income, score]", "numeric: [age, income-usd]")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(bad), "etl"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: dataset.numeric.1: 'income-usd' cannot be a feature name")


def test_a_new_registry_is_created_without_mlflows_info_lines(tmp_path):
    proc = mlsys(tmp_path, "models", "list")
    assert "registered models" in proc.stdout
    assert "mlflow" not in proc.stderr.lower(), proc.stderr  # "Creating initial MLflow database tables"


def test_models_show_prints_a_versions_card_with_its_feature_importance(tmp_path):
    from app.data.synthetic import Defects, generate
    from app.features.transforms import add_features
    from app.registry.registry import CHAMPION, Registry
    from app.training.dataset import Splits
    from app.training.fit import evaluate_bundle
    from tests.configs import make_config
    from tests.helpers import quick_bundle

    cfg = make_config(tmp_path)  # the same storage root as the CLI's (tmp_path / "store")
    frame = generate(2000, seed=4, defects=Defects(0, 0, 0, 0, 0, 0))
    bundle = quick_bundle(cfg, frame, seed=4)
    held = add_features(frame, cfg)
    bundle.metrics = evaluate_bundle(bundle, Splits(held, held, held), cfg.dataset.label)
    version = Registry(cfg).register(bundle, params={}, alias=CHAMPION)
    card = mlsys(tmp_path, "models", "show", str(version)).stdout
    assert f"version {version}" in card and "champion" in card and "holdout auc" in card
    assert "feature importance" in card
    top = max(bundle.metrics["importance"], key=bundle.metrics["importance"].get)
    assert top in card.split("feature importance")[1]
    proc = mlsys(tmp_path, "models", "show", "99", check=False)
    assert proc.returncode == 2 and "no version or alias 99" in proc.stderr and "Traceback" not in proc.stderr


def test_features_before_etl_is_a_clear_error(tmp_path):
    proc = mlsys(tmp_path, "features", "apply", check=False)
    assert proc.returncode == 2
    assert "run `mlsys etl` first" in proc.stderr


@pytest.mark.slow  # two whole pipelines and a service: minutes
def test_pipeline_registers_a_champion_visible_in_models_list(tmp_path):
    raw = tmp_path / "raw"
    mlsys(tmp_path, "data", "generate", "--rows", "12000", "--out", str(raw))
    code, stderr = pipeline_interrupted_while_training(tmp_path, raw)
    assert code == 130 and "interrupted: the pipeline stopped" in stderr, stderr[-3000:]
    assert "run the same command again" in stderr and "Traceback" not in stderr
    out = mlsys(tmp_path, "pipeline", "--input", str(raw))
    # The re-run finishes what the interrupted one began: its ETL had landed, so nothing is
    # written twice, and the interrupted training registered nothing.
    assert re.search(r"rows written\W+0\W", out.stdout), out.stdout
    assert "registered version 1 as champion" in out.stdout
    listing = mlsys(tmp_path, "models", "list").stdout
    assert "champion" in listing
    history = mlsys(tmp_path, "models", "history").stdout
    assert "promote" in history and "training" in history  # the promotion ledger
    proc = mlsys(tmp_path, "models", "promote", "7", check=False)
    assert proc.returncode == 2 and "has no version 7" in proc.stderr
    proc = mlsys(tmp_path, "models", "rollback", check=False)
    assert proc.returncode == 2 and "no earlier champion" in proc.stderr
    serve_then_curl_then_ctrl_c(tmp_path)


def pipeline_interrupted_while_training(tmp_path, raw) -> tuple[int, str]:
    """`mlsys pipeline`, Ctrl-C once training has begun; returns its exit code and stderr."""
    # Epochs enough that training cannot finish before the signal, however fast Ray Train runs.
    many_epochs = {"MLSYS_MLP__EPOCHS": "200", "MLSYS_MLP__PATIENCE": "200"}
    proc = mlsys_process(
        tmp_path,
        "pipeline",
        "--input",
        str(raw),
        env=many_epochs,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        # Training has begun once its first epoch's checkpoint is on disk. Worker log lines are
        # no signal: Ray relays them late and in bursts on a loaded machine (once, only after
        # training had finished, so the Ctrl-C came too late).
        deadline = time.monotonic() + 400
        while not any((tmp_path / "store" / "checkpoints").glob("train-*/checkpoint_*")):
            assert proc.poll() is None, "the pipeline ended before training began:\n" + "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "training did not begin within 400 s"
            time.sleep(0.2)
        assert proc.poll() is None, "training finished before the Ctrl-C"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
        reader.join(timeout=30)
        return code, "".join(lines)
    finally:
        proc.kill()


def serve_then_curl_then_ctrl_c(tmp_path):
    """`mlsys serve` in the foreground, a prediction over HTTP, then Ctrl-C stops it cleanly."""
    proc = mlsys_process(
        tmp_path,
        "serve",
        env={"MLSYS_SERVE__HTTP_PORT": "8124"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops the service" in line:
                break
        assert any("serving at http://127.0.0.1:8124" in x for x in lines), "".join(lines)[-3000:]
        resp = requests.post("http://127.0.0.1:8124/predict", json={"entity_id": 1}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["variant"] == "champion" and resp.json()["model_version"] == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_serve_without_a_model_is_a_clear_error(tmp_path):
    proc = mlsys(tmp_path, "serve", check=False)
    assert proc.returncode == 2 and "no champion" in proc.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_loop_twice(tmp_path):
    """generate -> pipeline -> serve -> traffic -> concept drift -> decay from outcomes -> retrain
    job on production data -> challenger -> rollout -> report."""
    env = {
        **cli_env(tmp_path),
        "MLSYS_RAY__INCLUDE_DASHBOARD": "true",  # the Jobs API lives in the dashboard
        "MLSYS_RAY__DASHBOARD_PORT": "8266",
        "MLSYS_RETRAIN__JOBS_ADDRESS": "http://127.0.0.1:8266",
        "MLSYS_SERVE__HTTP_PORT": "8125",
        "MLSYS_MLP__EPOCHS": "2",
    }
    for run in (1, 2):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "--config",
                str(LOCAL_CONFIG),
                "demo",
                "--rows",
                "12000",
                "--traffic",
                "1000",
                *(["--bad-challenger"] if run == 2 else []),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = proc.stdout
        assert_reads_as_our_stages_and_results(proc.stdout + proc.stderr)
        assert "drift vs champion" in out and "labelled performance (DECAYED)" in out, out[-3000:]
        # Caught from outcomes, and trained on the served rows and their outcomes alone.
        assert re.search(r"retrain job raysubmit_\w+ \(decay: .*\): SUCCEEDED", out), out[-3000:]
        assert re.search(r"the retrain's model: v\d+ trained on production \(\d+ served rows", out), out[
            -3000:
        ]
        # The retrained challenger's rollout ran without a person, and the ledger shows it.
        assert re.search(r"rollout of v\d+: (promoted|rolled back|running)", out), out[-3000:]
        assert "promotion ledger" in out and "rollout controller" in out, out[-3000:]
        if run == 1:
            assert "registered version 1 as champion" in out
            assert "challenger" in out.split("experiment exp-1")[-1]  # the new challenger served traffic
        else:  # the injected worse model, rolled back automatically
            worse = re.findall(r"rollout of v\d+: (\w+(?: \w+)?)", out)[-1]
            assert worse == "rolled back", out[-3000:]
    assert (tmp_path / "store" / "archive").is_dir()  # the first run's traffic log, kept


# Lines the libraries print that a demo without --verbose must not show.
LIBRARY_NOISE = {
    "MLflow's links to each run on a tracking server": re.compile(r"View (run|experiment) .*at: http"),
    "a Tune trial table or experiment header": re.compile(
        r"Trial status:|Trial name|Configuration for experiment"
    ),
    "a trial worker's SystemExit": re.compile(r"SystemExit"),
    "the Jobs API's supervisor": re.compile(r"JobSupervisor"),
    "the raylet's worker-pool warning": re.compile(r"worker processes have been started"),
    "Train's preemption watcher": re.compile(r"(?i)preemption"),
    "Serve's start-up lines": re.compile(r"Started Serve in namespace|ServeController|ServeReplica"),
    "a library's INFO line": re.compile(r"(^|\s)INFO(\s|$)"),
    "a raw dict or list of dicts": re.compile(r"[\[(]\{'|^\{'"),
}


def assert_reads_as_our_stages_and_results(terminal: str) -> None:
    """What `mlsys demo` leaves in a terminal (stdout and stderr): our stages and result tables,
    under 100 lines, with no traceback and none of the libraries' own lines."""
    lines = terminal.splitlines()
    assert len(lines) < 100, f"{len(lines)} lines:\n{terminal[-6000:]}"
    assert "Traceback" not in terminal, terminal[-6000:]
    for what, pattern in LIBRARY_NOISE.items():
        noisy = [line for line in lines if pattern.search(line)]
        assert not noisy, f"{what}: {noisy[:5]}"
    assert "✓ tune" in terminal and "✓ train + evaluate + register" in terminal, terminal[-3000:]

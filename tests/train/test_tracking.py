"""W&B (offline) and MLflow (local file store) beside TensorBoard (myllm_mc/train/tracking.py): a tiny `myllm train`
run, then a resumed one, read back from the trackers' own files: the same metric rows as metrics.jsonl (count and
values), one tracking run continued across the resume (its id kept in the checkpoint), the config, the planner's
report, the plot and the plan-vs-measured table logged. Slow tier: two training processes (~1 min)."""

from __future__ import annotations

import os

import pytest

from myllm_mc.checkpoint import find_latest, read_meta
from myllm_mc.train.tracking import metric_items
from tests.train.test_train_cli import metrics, run
from tests.train.wandb_records import config, history, run_info

pytest.importorskip("wandb", reason="wandb is not installed — install: pip install wandb==0.31.0")
pytest.importorskip("mlflow", reason="mlflow is not installed — install: pip install mlflow-skinny==3.18.0")


def _expected(rows) -> dict:
    return {(key, row["step"]): value for row in rows for key, value in metric_items(row).items()}


def _mlflow_history(uri: str, run_id: str, keys) -> dict:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {(key, m.step): m.value for key in keys for m in client.get_metric_history(run_id, key)}, client


@pytest.mark.slow
def test_wandb_and_mlflow_hold_the_metrics_rows_across_a_resume(tiny_data, tmp_path):
    ckpt = tmp_path / "ckpt"
    base = tiny_data + [f"logging.dir={tmp_path}", f"checkpoint.dir={ckpt}", "checkpoint.save_interval=3",
                        "training.eval_interval=3", "training.eval_steps=1", "logging.plot=true",
                        "logging.wandb.enabled=true", "logging.wandb.offline=true", "logging.wandb.tags=[test,tiny]",
                        "logging.wandb.run_name=tracked", "logging.mlflow.enabled=true",
                        "logging.mlflow.tags=[test,size=tiny]"]
    first = run(base + ["training.steps=6"])
    assert first.returncode == 0, first.stdout[-3000:]
    ids = read_meta(find_latest(ckpt))["tracking"]
    assert set(ids) == {"wandb", "mlflow"}
    second = run(base + ["training.steps=9"], "--resume", "auto")
    assert second.returncode == 0, second.stdout[-3000:]
    assert "resumed from" in second.stdout
    assert read_meta(find_latest(ckpt))["tracking"] == ids           # the same tracking runs, saved again

    rows = metrics(tmp_path)
    expected = _expected(rows)
    kinds = {row["kind"] for row in rows}
    assert kinds == {"train", "valid"} and max(row["step"] for row in rows) == 9
    keys = {key for key, _ in expected}

    # W&B: two offline directories (first run, resumed run) of ONE run id; together, every row
    files = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and {run_info(f)["id"] for f in files} == {ids["wandb"]}
    assert run_info(files[0])["name"] == "tracked" and run_info(files[0])["tags"] == ["test", "tiny"]
    logged = {}
    for f in files:
        logged.update(history(f))
    assert set(logged) == set(expected), sorted(set(logged) ^ set(expected))[:10]
    assert all(logged[k] == pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in expected.items())
    saved = {p.name for p in (tmp_path / "wandb").glob("offline-run-*/files/*")}
    assert {"plan.txt", "plan_vs_measured.txt", "loss.png"} <= saved, saved
    logged_config = config(files[0])
    assert logged_config["model.seq_length"] == 128 and "optimizer.lr" in logged_config, logged_config

    # MLflow: one run in the experiment, reopened by id, holding every row; params = the config
    uri = (tmp_path / "mlruns").as_uri()
    got, client = _mlflow_history(uri, ids["mlflow"], keys)
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:10]
    assert all(got[k] == pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in expected.items())
    runs = client.search_runs([client.get_experiment_by_name("myllm").experiment_id])
    assert [r.info.run_id for r in runs] == [ids["mlflow"]]
    found = runs[0]
    assert found.info.status == "FINISHED" and found.data.tags["size"] == "tiny" and found.data.tags["test"] == "true"
    assert found.data.params["model.seq_length"] == "128"
    artifacts = {a.path for a in client.list_artifacts(ids["mlflow"])}
    assert {"plan.txt", "plan_vs_measured.txt", "loss.png"} <= artifacts, artifacts
    print(f"\n{len(rows)} metrics.jsonl rows, {len(expected)} (key, step) values: equal in W&B ({len(files)} offline"
          f" directories, run {ids['wandb']}) and MLflow (run {ids['mlflow']})")


def test_missing_tracker_is_one_line(monkeypatch):
    """A config that enables a tracker that is not installed stops before training with one line."""
    import importlib.util

    from myllm_mc.config import load
    from myllm_mc.config.errors import ConfigError
    from myllm_mc.train.tracking import tracking_callbacks

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = load("configs/tiny.yaml", ["logging.wandb.enabled=true"], world_size=1)
    with pytest.raises(ConfigError, match=r"logging.wandb.enabled is true but wandb is not installed — fix: pip"):
        tracking_callbacks(cfg, True)
    assert tracking_callbacks(load("configs/tiny.yaml", [], world_size=1), True) == []

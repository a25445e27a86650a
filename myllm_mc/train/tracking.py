"""Experiment tracking beside TensorBoard: Weights & Biases (`logging.wandb`) and MLflow (`logging.mlflow`).

What goes there, from rank 0 only (the rank that writes metrics.jsonl): the config (flattened `section.key`), the
planner's report for it (`plan.txt`), every row metrics.jsonl gets, as `train/<key>` / `valid/<key>` at its step,
the PNG plots of logging.dir and the final plan-vs-measured table (`plan_vs_measured.txt`) when the run ends.

Resuming: the tracking run ids are saved in every checkpoint's meta (`tracking`), so a resumed run logs into the
same W&B run (`resume="allow"` with the saved id; offline, a new local directory with that id, which `wandb sync`
merges) and the same MLflow run (reopened by id), continuing from the resumed step.

Why a callback reading the MetricsLogger's rows rather than a second computation: the tracker then holds exactly
the numbers in metrics.jsonl (tests/train/test_tracking.py compares them). wandb and mlflow are optional: imported
here, on use; a run that asks for one that is missing stops before training with one line (every rank checks,
so none waits for another).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

from myllm_mc.config import Config
from myllm_mc.config.errors import ConfigError
from myllm_mc.config.loader import to_dict
from myllm_mc.plan.compare import end_of_run
from myllm_mc.plan.report import figures, render_text

from .callbacks import Callback
from .metrics import MetricsLogger

INSTALL = {"wandb": "pip install wandb==0.31.0", "mlflow": "pip install mlflow-skinny==3.18.0"}


def flat_config(cfg: Config) -> Dict[str, object]:
    """{"model.num_layers": 4, ...}: what a tracker shows as the run's config / parameters."""
    out: Dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            out[prefix] = value
    walk("", to_dict(cfg))
    return out


def metric_items(row: dict) -> Dict[str, float]:
    """The numbers of one metrics.jsonl row under `<kind>/<key>` (step and kind are the coordinates)."""
    return {f"{row['kind']}/{key}": float(value) for key, value in row.items()
            if key not in ("kind", "step") and isinstance(value, (int, float)) and not isinstance(value, bool)}


def _run_name(cfg: Config, name: Optional[str]) -> str:
    return name or Path(cfg.logging.dir).name or "myllm"


class WandbSink:
    def __init__(self, cfg: Config, resume_id: Optional[str]):
        import wandb

        w = cfg.logging.wandb
        self.run = wandb.init(project=w.project, entity=w.entity, name=_run_name(cfg, w.run_name),
                              tags=[str(t) for t in w.tags], mode="offline" if w.offline else "online",
                              dir=cfg.logging.dir, id=resume_id, resume="allow" if resume_id else None,
                              config=flat_config(cfg) if resume_id is None else None)
        self.id = self.run.id

    def log(self, row: dict) -> None:
        self.run.log(metric_items(row), step=int(row["step"]))

    def text(self, name: str, text: str, directory: Path) -> None:
        path = directory / name
        path.write_text(text)
        self.file(path)

    def file(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self) -> None:
        self.run.finish()


class MlflowSink:
    def __init__(self, cfg: Config, resume_id: Optional[str]):
        m = cfg.logging.mlflow
        uri = m.tracking_uri or (Path(cfg.logging.dir).resolve() / "mlruns").as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store in maintenance mode behind this switch; it is the offline store here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        if resume_id is not None:
            self.id = resume_id
            self.client.update_run(self.id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(m.experiment)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(m.experiment)
        tags = dict(str(t).split("=", 1) if "=" in str(t) else (str(t), "true") for t in m.tags)
        self.id = self.client.create_run(experiment_id, run_name=_run_name(cfg, m.run_name), tags=tags).info.run_id
        params = [Param(key, str(value)[:6000]) for key, value in flat_config(cfg).items()]
        for first in range(0, len(params), 100):             # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.id, params=params[first:first + 100])

    def log(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(key, value, now, int(row["step"]))
                                                for key, value in metric_items(row).items()])

    def text(self, name: str, text: str, directory: Path) -> None:
        self.client.log_text(self.id, text, name)

    def file(self, path: Path) -> None:
        self.client.log_artifact(self.id, str(path))

    def finish(self) -> None:
        self.client.set_terminated(self.id)


def check_available(cfg: Config) -> None:
    """One line (ConfigError, exit 2) when a tracker the config enables is not installed."""
    for name, wanted in (("wandb", cfg.logging.wandb.enabled), ("mlflow", cfg.logging.mlflow.enabled)):
        if wanted and importlib.util.find_spec(name) is None:
            raise ConfigError(f"logging.{name}.enabled is true but {name} is not installed — fix: {INSTALL[name]}"
                              f" (or --set logging.{name}.enabled=false)")


class TrackingCallback(Callback):
    """See the module docstring. Runs after MetricsLogger (and the task-eval callbacks) in the callback list."""

    def __init__(self, cfg: Config, write: bool):
        self.cfg, self.write = cfg, write
        self.sinks: Dict[str, object] = {}
        self.logger: Optional[MetricsLogger] = None
        self.sent = 0

    def on_train_start(self, trainer) -> None:
        if not self.write:
            return
        self.logger = next(cb for cb in trainer.callbacks.callbacks if isinstance(cb, MetricsLogger))
        self.sent = len(self.logger.history)
        saved = self._saved_ids(trainer)
        if self.cfg.logging.wandb.enabled:
            self.sinks["wandb"] = WandbSink(self.cfg, saved.get("wandb"))
        if self.cfg.logging.mlflow.enabled:
            self.sinks["mlflow"] = MlflowSink(self.cfg, saved.get("mlflow"))
        trainer.state.checkpoint_meta["tracking"] = {name: sink.id for name, sink in self.sinks.items()}
        if not saved:
            report = render_text(self.cfg, figures(self.cfg))
            for sink in self.sinks.values():
                sink.text("plan.txt", report, Path(self.cfg.logging.dir))

    @staticmethod
    def _saved_ids(trainer) -> dict:
        from myllm_mc.checkpoint import read_meta

        resumed = getattr(trainer.state, "resumed_from", None)
        return dict(read_meta(resumed).get("tracking") or {}) if resumed is not None else {}

    def _flush(self) -> None:
        if self.logger is None:
            return
        rows: List[dict] = self.logger.history[self.sent:]
        self.sent = len(self.logger.history)
        for row in rows:
            for sink in self.sinks.values():
                sink.log(row)

    def on_step_end(self, trainer, record, control) -> None:
        self._flush()

    def on_eval_end(self, trainer, step: int, metrics: dict) -> None:
        self._flush()

    def on_train_end(self, trainer) -> None:
        if not self.sinks:
            return
        self._flush()
        out = Path(self.cfg.logging.dir)
        plots = sorted(out.glob("*.png"))
        table = end_of_run(self.cfg)
        for sink in self.sinks.values():
            for plot in plots:
                sink.file(plot)
            sink.text("plan_vs_measured.txt", table, out)
            sink.finish()
        self.sinks = {}


def tracking_callbacks(cfg: Config, is_logging_rank: bool) -> list:
    """[TrackingCallback] when the config enables W&B or MLflow (checked on every rank first), else []."""
    if not (cfg.logging.wandb.enabled or cfg.logging.mlflow.enabled):
        return []
    check_available(cfg)
    return [TrackingCallback(cfg, is_logging_rank)]

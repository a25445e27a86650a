"""`custom_dataset: !function local_files.load` for the task YAMLs in this folder: lm_eval's `dataset_path: json`
reads `data_files` relative to the working directory; this reads them relative to this folder, so the tasks run
from anywhere (`--include_path data/lm_eval`). Paths that are absolute are used as they are."""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def resolve(data_files: dict) -> dict:
    return {split: str(path if Path(path).is_absolute() else HERE / path) for split, path in data_files.items()}


def load(data_files: dict, **_):
    import datasets  # lm_eval's own dependency

    return datasets.load_dataset("json", data_files=resolve(data_files))

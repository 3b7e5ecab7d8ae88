"""Hugging Face dataset folders (`Dataset.save_to_disk`), converted here to one Parquet file the server reads; needs
the `hf` extra (`pip install alabel-client[hf]`). Nothing is fetched from a hub."""

from __future__ import annotations

from pathlib import Path

from .errors import ClientError

__all__ = ["dataset_folder_to_parquet"]


def dataset_folder_to_parquet(folder: Path, target: Path, *, split: str | None = None) -> Path:
    """Reads the dataset saved in `folder` (a DatasetDict: `split`, default `train`, or its only split) and writes it
    to `target` as Parquet, its features (ClassLabel names) kept in the file's metadata. Returns `target`."""
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError as exc:
        raise ClientError(
            f"{folder} is a folder: reading a Hugging Face dataset folder needs the datasets package "
            "(pip install 'alabel-client[hf]'), or convert it to .parquet or .jsonl yourself"
        ) from exc
    try:
        dataset = load_from_disk(str(folder))
    except FileNotFoundError as exc:
        raise ClientError(f"{folder} is not a dataset saved with save_to_disk ({exc})") from exc
    if isinstance(dataset, DatasetDict):
        names = list(dataset)
        chosen = split or ("train" if "train" in dataset or len(names) != 1 else names[0])
        if chosen not in dataset:
            raise ClientError(f"the dataset has no split {chosen!r} (it has: {', '.join(names)})")
        dataset = dataset[chosen]
    elif split is not None:
        raise ClientError(f"{folder} is one dataset, not a DatasetDict: it has no splits to pick {split!r} from")
    dataset.to_parquet(str(target))
    return target

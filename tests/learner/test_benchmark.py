from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from learner.benchmark import METRIC_KEYS, baseline_skip_reason, main

# Each label owns a few words; a document's text mixes the words of its labels with filler.
VOCABULARY = {
    "apple": ["apple", "pear", "fruit", "orchard", "juice"],
    "river": ["river", "water", "boat", "bridge", "stream"],
    "music": ["music", "song", "guitar", "melody", "choir"],
}
NOVEL = "comet"  # a label that only the test file has
NOVEL_WORDS = ["comet", "orbit", "telescope", "star"]
FILLER = ["the", "a", "today", "really", "we", "saw"]
LABEL_SETS = [["apple"], ["river"], ["music"], ["apple", "river"], ["river", "music"]]

TOP_LEVEL_KEYS = {
    "metrics",
    "train_seconds",
    "predict_ms_per_doc",
    "peak_rss_mb",
    "n_labels",
    "config",
    "tier",
    "model",
    "decision",
    "ranking",
    "validation_metrics",
    "timings",
    "data",
    "baseline",
    "baseline_skipped",
    "conventions",
    "environment",
}
BASELINE_KEYS = {
    "model",
    "metrics",
    "train_seconds",
    "predict_ms_per_doc",
    "peak_rss_mb",
    "config",
    "decision",
    "ranking",
}


def _text(rng: random.Random, words: list[str]) -> str:
    tokens = rng.sample(words, 3) + rng.sample(FILLER, 2)
    rng.shuffle(tokens)
    return " ".join(tokens)


def _documents(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        labels = LABEL_SETS[i % len(LABEL_SETS)]
        words = [word for label in labels for word in VOCABULARY[label]]
        docs.append({"id": f"s{seed}-{i}", "text": _text(rng, words), "labels": labels})
    return docs


def _write(path: Path, docs: list[dict[str, Any]]) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """train 60 and dev 20 documents over 3 labels; test: 12 single-label documents of those labels and 8
    documents whose only label ("comet") never occurs in train or dev."""
    rng = random.Random(7)
    test = [
        {"id": f"t{i}", "text": _text(rng, VOCABULARY[label]), "labels": [label]}
        for i, label in enumerate(["apple", "river", "music"] * 4)
    ]
    test += [{"id": f"n{i}", "text": _text(rng, NOVEL_WORDS), "labels": [NOVEL]} for i in range(8)]
    return {
        "train": _write(tmp_path / "train.jsonl.gz", _documents(60, seed=1)),
        "dev": _write(tmp_path / "dev.jsonl.gz", _documents(20, seed=2)),
        "test": _write(tmp_path / "test.jsonl.gz", test),
    }


def _run(files: dict[str, str], out: Path, *extra: str, dev: bool = True) -> tuple[int, dict[str, Any] | None]:
    # One torch thread: tiny heads train in milliseconds instead of seconds when other work shares the cores.
    argv = ["--train", files["train"], "--test", files["test"], "--out", str(out), "--no-progress", "--threads", "1"]
    argv += extra
    if dev:
        argv += ["--dev", files["dev"]]
    status = main(argv)
    return status, json.loads(out.read_text()) if out.exists() else None


def _check_metrics(values: dict[str, Any]) -> None:
    assert list(values) == list(METRIC_KEYS)
    for key, value in values.items():
        assert type(value) is float, key
        assert 0.0 <= value <= 1.0, key


def test_writes_the_documented_json_and_prints_a_table(
    files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nested" / "folder" / "results.json"

    status, result = _run(files, out, "--config", '{"features": "tfidf"}')

    assert status == 0
    assert result is not None
    assert set(result) == TOP_LEVEL_KEYS
    _check_metrics(result["metrics"])
    assert result["n_labels"] == 4  # apple, river, music and the test-only comet
    assert result["tier"] == "fast"
    assert result["config"]["features"] == "tfidf"
    assert result["config"]["head"] == "flat"
    assert isinstance(result["decision"], dict) and result["decision"]
    assert result["train_seconds"] > 0 and result["predict_ms_per_doc"] > 0 and result["peak_rss_mb"] > 10
    assert result["timings"]["embeddings"] is None  # TF-IDF needs no encoder
    assert result["data"]["labels"] == {
        "vocabulary": 4,
        "in_train": 3,
        "in_test": 4,
        "in_test_not_in_train": 1,
        "test_positives_on_labels_not_in_train": 8,
    }
    assert set(result["ranking"]) >= {"P@10", "nDCG@5", "PSP@5", "R@5", "R@10"}

    assert set(result["baseline"]) == BASELINE_KEYS
    _check_metrics(result["baseline"]["metrics"])
    assert result["baseline"]["config"]["tuned_on"] == "dev"
    assert result["baseline_skipped"] is None

    printed = capsys.readouterr().out
    assert "| model | P@1 | P@3 | P@5 | nDCG@5 | PSP@5 |" in printed
    assert "fast tier (tfidf, flat head)" in printed
    assert "baseline TF-IDF + OvR LR" in printed
    assert f"{result['metrics']['P@1']:.4f}" in printed


def test_a_label_absent_from_train_counts_as_a_miss(files: dict[str, str], tmp_path: Path) -> None:
    status, result = _run(files, tmp_path / "r.json", "--config", '{"features": "tfidf"}')

    assert status == 0 and result is not None
    # 12 documents whose label the model learned (their words are unambiguous: ranked first), 8 documents whose
    # only label never occurs in train: P@1 = 12 / 20, not 12 / 12 as it would be if "comet" were dropped.
    assert result["metrics"]["P@1"] == pytest.approx(12 / 20)
    assert result["baseline"]["metrics"]["P@1"] == pytest.approx(12 / 20)
    assert result["ranking"]["R@1"] == pytest.approx(12 / 20)
    # Only 4 labels: the top 10 is padded with "no prediction" and every label is ranked somewhere, the unseen one
    # too, so every document finds its one label (R@10 = 1) and P@5 = 1 hit / 5 slots.
    assert result["ranking"]["R@10"] == pytest.approx(1.0)
    assert result["ranking"]["P@5"] == pytest.approx(1 / 5)


def test_runs_without_a_dev_file(files: dict[str, str], tmp_path: Path) -> None:
    status, result = _run(files, tmp_path / "r.json", "--config", '{"features": "tfidf"}', dev=False)

    assert status == 0 and result is not None
    assert "dev" not in result["data"]
    _check_metrics(result["metrics"])
    assert result["baseline"]["config"]["tuned_on"].startswith("6 held-out training documents")


def test_no_baseline_flag_skips_it(files: dict[str, str], tmp_path: Path) -> None:
    status, result = _run(files, tmp_path / "r.json", "--config", '{"features": "tfidf"}', "--no-baseline")

    assert status == 0 and result is not None
    assert result["baseline"] is None
    assert result["baseline_skipped"] == "--no-baseline"


def test_embeddings_are_cached_between_runs(files: dict[str, str], tmp_path: Path, tiny_encoder_dir: Path) -> None:
    extra = ["--config", '{"features": "embeddings"}', "--encoder", str(tiny_encoder_dir), "--no-baseline"]
    extra += ["--cache-dir", str(tmp_path / "cache")]

    status, first = _run(files, tmp_path / "first.json", *extra)
    status_again, second = _run(files, tmp_path / "second.json", *extra)

    assert status == status_again == 0
    assert first is not None and second is not None
    assert first["timings"]["embeddings"]["cached"] == {"train": False, "dev": False, "test": False}
    assert second["timings"]["embeddings"]["cached"] == {"train": True, "dev": True, "test": True}
    assert second["timings"]["encode_seconds"] == {"train": 0.0, "dev": 0.0, "test": 0.0}
    fingerprint = first["timings"]["embeddings"]["fingerprint"]
    assert len(list((tmp_path / "cache" / "embeddings" / fingerprint).glob("*.npy"))) == 3
    assert second["metrics"] == first["metrics"]  # the same vectors, the same seeded model


def test_full_tier_without_the_module_exits_2_with_a_message(
    files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "learner.full", None)  # an installation without the full tier
    status, result = _run(files, tmp_path / "r.json", "--tier", "full")

    assert status == 2
    assert result is None
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--tier full needs the module learner.full" in error


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"features": ', "--config is not valid JSON (Expecting value at line 1, column 14)"),
        ("[1, 2]", "--config must be a JSON object of settings; got list"),
        ('{"featurez": "tfidf"}', "--config: unknown FastTierConfig key(s): featurez"),
        ('{"features": "words"}', "--config: features must be one of"),
    ],
)
def test_bad_config_is_a_clear_error(
    files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, message: str
) -> None:
    status, result = _run(files, tmp_path / "r.json", "--config", config)

    assert status == 2
    assert result is None
    assert message in capsys.readouterr().err


def test_config_can_be_read_from_a_file(files: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"features": "tfidf", "loss": "zlpr"}))

    status, result = _run(files, tmp_path / "r.json", "--config", f"@{config}", "--no-baseline")

    assert status == 0 and result is not None
    assert result["config"]["loss"] == "zlpr"


def test_a_missing_or_invalid_input_file_is_a_clear_error(
    files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "text": "fine", "labels": ["apple"]}\nnot json\n')

    out = tmp_path / "x.json"

    assert main(["--train", str(tmp_path / "nope.jsonl.gz"), "--test", files["test"], "--out", str(out)]) == 2
    assert "--train: no such file" in capsys.readouterr().err
    assert main(["--train", files["train"], "--test", str(broken), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "--test: " in error and "line 2: invalid JSON" in error
    assert not out.exists()


def test_the_baseline_is_skipped_above_1000_labels() -> None:
    assert baseline_skip_reason(1000, disabled=False) is None
    assert (
        baseline_skip_reason(1001, disabled=False) == "1,001 labels > 1,000: one-vs-rest logistic regression is not run"
    )
    assert baseline_skip_reason(28, disabled=True) == "--no-baseline"


def test_importing_the_benchmark_loads_neither_torch_nor_scikit_learn() -> None:
    code = "import sys, learner.benchmark; print(sorted({'torch', 'sklearn', 'transformers'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]

    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"

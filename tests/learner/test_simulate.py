from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from learner.simulate import labels_to_reach, main, summarise

# A designed pool: most documents are copies of one unlabelled text (random picks waste labels on them), the
# rest are varied documents whose labels are the keywords they hold. Once a copy is labelled the model is sure
# about the copies, so uncertainty sampling moves on to the varied documents; the test file has only those.
KEYWORDS = {"apple": "apple", "river": "river", "music": "music", "stone": "stone"}
FILLER = [f"word{i}" for i in range(40)]
COPY = "nothing to report here today"
TFIDF_ONLY = json.dumps({"features": "tfidf", "tfidf": {"min_df": 1}})
SUMMARY_KEYS = {
    "aulc_micro_f1",
    "aulc_p_at_1",
    "aulc_p_at_5",
    "labels_to_90",
    "labels_to_95",
    "ratio_to_random_90",
    "ratio_to_random_95",
    "select_seconds_mean",
}
POINT_KEYS = {"labelled", "micro_f1", "macro_f1", "P@1", "P@5", "train_seconds", "select_seconds", "round_seconds"}


def _varied(rng: random.Random, index: int, prefix: str) -> dict:
    labels = rng.sample(sorted(KEYWORDS), rng.choice([1, 1, 2]))
    words = [KEYWORDS[label] for label in labels] + rng.sample(FILLER, 4)
    rng.shuffle(words)
    return {"id": f"{prefix}{index}", "text": " ".join(words), "labels": labels}


def _write(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="module")
def designed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("designed")
    pool = [{"id": f"c{i}", "text": COPY, "labels": []} for i in range(240)]
    pool += [_varied(rng, i, "v") for i in range(60)]
    rng.shuffle(pool)
    test = [_varied(rng, i, "t") for i in range(120)]
    return _write(folder / "train.jsonl.gz", pool), _write(folder / "test.jsonl.gz", test)


def _simulate(designed: tuple[Path, Path], out: Path, *extra: str) -> int:
    train, test = designed
    return main(
        [
            "--train",
            str(train),
            "--test",
            str(test),
            "--seed-size",
            "10",
            "--batch-size",
            "10",
            "--budget",
            "60",
            "--seeds",
            "2",
            "--config",
            TFIDF_ONLY,
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_uncertainty_beats_random_on_the_designed_pool_and_the_outputs_follow_the_contract(designed, tmp_path):
    out = tmp_path / "sim"

    assert _simulate(designed, out, "--strategies", "random,uncertainty,default") == 0

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["full_data"]) == {"micro_f1", "macro_f1", "P@1", "P@5"}
    assert set(summary["strategies"]) == {"random", "uncertainty", "default"}
    for stats in summary["strategies"].values():
        assert set(stats) >= SUMMARY_KEYS
    random_stats, uncertain = summary["strategies"]["random"], summary["strategies"]["uncertainty"]
    assert uncertain["aulc_micro_f1"] > random_stats["aulc_micro_f1"] + 0.1
    assert random_stats["ratio_to_random_90"] in (1.0, None)
    curves = json.loads((out / "curves.json").read_text())
    assert curves["strategies"]["default"]["resolves_to"] == summary["default_strategy"]
    for strategy in curves["strategies"].values():
        assert set(strategy["seeds"]) == {"0", "1"}
        for points in strategy["seeds"].values():
            assert [p["labelled"] for p in points] == [10, 20, 30, 40, 50, 60]
            assert all(set(p) >= POINT_KEYS for p in points)
            assert all(0.0 <= p["micro_f1"] <= 1.0 for p in points)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_growing_batches_and_the_savings_table_say_how_many_labels_uncertainty_saves(designed, tmp_path):
    out = tmp_path / "sim"

    assert _simulate(designed, out, "--strategies", "random,uncertainty", "--schedule", "5:20,20:60") == 0

    curves = json.loads((out / "curves.json").read_text())
    for strategy in curves["strategies"].values():
        for points in strategy["seeds"].values():
            assert [p["labelled"] for p in points] == [10, 15, 20, 40, 60]
    summary = json.loads((out / "summary.json").read_text())
    table = summary["savings"]
    assert set(table) == {"random", "uncertainty"}
    assert set(table["uncertainty"]) == {"micro_f1", "macro_f1", "P@1", "P@5"}
    end = table["uncertainty"]["micro_f1"]["end"]
    # On the designed pool uncertainty skips the copies: it reaches random's final micro-F1 with fewer labels.
    assert end["labels"] is not None and end["ratio"] < 1.0
    assert end["random_labels"] <= 60
    assert table["random"]["micro_f1"]["end"]["ratio"] == 1.0
    band = summary["curves"]["uncertainty"]
    assert band["labelled"] == [10, 15, 20, 40, 60]
    assert all(
        lo <= m <= hi
        for lo, m, hi in zip(band["micro_f1"]["low"], band["micro_f1"]["mean"], band["micro_f1"]["high"], strict=True)
    )


def test_auto_covers_the_pool_first_then_lets_the_chooser_pick_among_its_arms(designed, tmp_path):
    out = tmp_path / "sim"
    extra = ["--strategies", "random,auto,probcover", "--cache-dir", str(tmp_path / "cache"), "--budget", "70"]

    assert _simulate(designed, out, *extra) == 0

    curves = json.loads((out / "curves.json").read_text())
    for points in curves["strategies"]["auto"]["seeds"].values():
        arms = [p.get("arm") for p in points[:-1]]  # the last round picks nothing
        # 4 labels: the coverage phase lasts until learner.chooser.switch_at(4) = 50 labelled documents.
        assert arms[:4] == ["probcover"] * 4
        assert all(arm in ("decision+kmeans", "badge", "typiclust", "random+kmeans") for arm in arms[4:])
        assert [p["labelled"] for p in points] == [10, 20, 30, 40, 50, 60, 70]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["savings"]) == {"random", "auto", "probcover"}


def test_every_strategy_starts_from_the_same_seed_documents_and_a_rerun_resumes(designed, tmp_path):
    out = tmp_path / "sim"
    assert _simulate(designed, out, "--strategies", "random,margin") == 0
    first = json.loads((out / "curves.json").read_text())
    runs = sorted(path.name for path in (out / "runs").iterdir())
    assert runs == [
        "full-data.json",
        "margin-seed0.json",
        "margin-seed1.json",
        "random-seed0.json",
        "random-seed1.json",
    ]
    for seed in ("0", "1"):  # the first round trains on the same seed documents: the same scores
        random_first = first["strategies"]["random"]["seeds"][seed][0]
        margin_first = first["strategies"]["margin"]["seeds"][seed][0]
        assert all(random_first[key] == margin_first[key] for key in ("labelled", "micro_f1", "P@1", "P@5"))

    assert _simulate(designed, out, "--strategies", "random,margin") == 0  # from runs/: the same curves
    assert json.loads((out / "curves.json").read_text())["strategies"] == first["strategies"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategies", "random,entropy"], "unknown strategy 'entropy'"),
        (["--strategies", "random,random"], "twice"),
        (["--budget", "5"], "--budget"),
        (["--tier", "full"], "--tier"),
        (["--config", "{not json"], "--config"),
        (["--schedule", "20:100,10:50"], "--schedule"),
        (["--schedule", "twenty"], "--schedule"),
        (["--schedule", "5:8"], "--schedule must end"),
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_write_nothing(designed, tmp_path, capsys, extra, message):
    out = tmp_path / "sim"

    assert _simulate(designed, out, *extra) == 2

    assert message in capsys.readouterr().err
    assert not (out / "summary.json").exists()


def test_labels_to_reach_and_ratios_follow_the_mean_curve() -> None:
    counts = np.array([20, 40, 60, 80])
    assert labels_to_reach(counts, np.array([0.1, 0.5, 0.9, 0.95]), 0.9) == 60
    assert labels_to_reach(counts, np.array([0.1, 0.5, 0.6, 0.7]), 0.9) is None

    def curve(values: list[float]) -> list[dict]:
        return [
            {"labelled": c, "micro_f1": v, "P@1": v, "P@5": v, "select_seconds": 0.5}
            for c, v in zip(counts, values, strict=False)
        ]

    curves = {
        "random": {"0": curve([0.1, 0.3, 0.5, 0.96]), "1": curve([0.1, 0.3, 0.5, 0.96])},
        "smart": {"0": curve([0.2, 0.96, 0.97, 0.98]), "1": curve([0.2, 0.9, 0.97, 0.98])},
    }
    summary = summarise(curves, {"micro_f1": 1.0, "macro_f1": 1.0, "P@1": 1.0, "P@5": 1.0})

    assert summary["smart"]["labels_to_90"] == 40 and summary["random"]["labels_to_90"] == 80
    assert summary["smart"]["ratio_to_random_90"] == 0.5 and summary["random"]["ratio_to_random_90"] == 1.0
    assert summary["smart"]["labels_to_95"] == 60  # mean of 0.96 and 0.9 is 0.93 at 40
    assert summary["smart"]["aulc_micro_f1"] == pytest.approx(np.mean([0.2, 0.93, 0.97, 0.98]))
    assert summary["smart"]["select_seconds_mean"] == 0.5  # the last round selects nothing and is not counted


def test_checkpoints_compare_learners_on_the_same_random_documents_with_the_prior_at_zero_labels(
    designed, tmp_path, tiny_encoder_dir
):
    out = tmp_path / "low"
    cache = tmp_path / "cache"
    args = ["--checkpoints", "0,10,30", "--learners", "turn1,prior,adapt", "--encoder", str(tiny_encoder_dir)]
    args += ["--cache-dir", str(cache), "--adapt-at", "30", "--adapt-config", '{"pairs_per_document": 2}']

    assert _simulate(designed, out, *args) == 0

    summary = json.loads((out / "checkpoints-summary.json").read_text())
    assert summary["checkpoints"] == [0, 10, 30] and summary["seeds"] == 2
    assert set(summary["learners"]["prior"]) == {"0", "10", "30"}  # the prior suggests before any label
    assert set(summary["learners"]["turn1"]) == {"10", "30"}  # the turn-1 learner has no model at 0
    assert set(summary["learners"]["adapt"]) == {"0", "30"}  # only where asked; at 0 labels: the prior alone
    for rows in summary["learners"].values():
        for row in rows.values():
            for metric in ("micro_f1", "macro_f1", "P@1", "P@5"):
                cell = row[metric]
                assert cell["n"] == 2 and cell["low"] <= cell["mean"] <= cell["high"]
    assert summary["learners"]["prior"]["0"]["pretick_recall"]["mean"] == 0.0  # no evidence: nothing pre-ticked
    assert set(summary["frequency_baseline"]) == {"P@1", "P@5"}
    runs = json.loads((out / "checkpoints.json").read_text())["runs"]
    for seed in ("0", "1"):
        assert [p["labelled"] for p in runs["turn1"][seed]] == [0, 10, 30]
        adapted = runs["adapt"][seed][2]
        info = adapted["adaptation"]
        assert info.get("steps", 0) > 0 or "skipped" in info
        if "skipped" not in info:  # 10 of the 30 documents held out to check the adapted encoder on
            assert info["adapted_on"] == 20 and info["check"]["documents"] == 10
            assert info["check"]["gain"] == pytest.approx(
                info["check"]["adapted"]["micro_f1"] - info["check"]["base"]["micro_f1"], abs=1e-4
            )
            assert adapted["tick_curve"]["documents"] == 10  # pre-tick evidence: documents the encoder never saw
    assert (out / "checkpoints.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _simulate(designed, out, *args) == 0  # resumed from runs/
    assert json.loads((out / "checkpoints.json").read_text())["runs"] == runs


def test_checkpoints_reject_an_unknown_learner(designed, tmp_path, capsys):
    assert _simulate(designed, tmp_path / "low", "--checkpoints", "0,10", "--learners", "turn1,magic") == 2
    assert "--learners" in capsys.readouterr().err

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import learner.embeddings as embeddings_module
from learner.embeddings import EmbeddingStore, MissingEmbeddingsError

ROOT = Path(__file__).resolve().parents[2]


def vectors(ids: list[int], dim: int = 4) -> np.ndarray:
    """A recognisable vector per id: every component equals the id (plus the column index / 10)."""
    return np.array([[i + j / 10 for j in range(dim)] for i in ids], dtype=np.float32)


def test_get_returns_vectors_in_the_order_asked(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    store.add([10, 20, 30], vectors([10, 20, 30]))

    got = store.get([30, 10, 20, 10])

    np.testing.assert_array_equal(got, vectors([30, 10, 20, 10]))
    assert got.dtype == np.float32
    assert len(store) == 3
    assert store.dim == 4
    np.testing.assert_array_equal(np.sort(store.ids()), [10, 20, 30])


def test_add_appends_and_overwrites_existing_ids(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    store.add([1, 2], vectors([1, 2]))

    store.add(np.array([2, 3]), vectors([200, 3]))

    np.testing.assert_array_equal(store.get([1, 2, 3]), vectors([1, 200, 3]))
    assert len(store) == 3


def test_missing_lists_absent_ids_in_order(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    assert store.missing([5, 1]) == [5, 1]
    store.add([1, 2], vectors([1, 2]))

    assert store.missing([7, 1, 9, 2, 7]) == [7, 9]
    assert store.missing([]) == []


def test_get_with_missing_ids_raises_key_error_naming_them(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    store.add([1, 2], vectors([1, 2]))

    with pytest.raises(KeyError) as caught:
        store.get([1, 404, 2, 405])

    assert isinstance(caught.value, MissingEmbeddingsError)
    assert caught.value.missing == [404, 405]
    assert "[404, 405]" in str(caught.value)


def test_empty_store(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, "enc1")

    assert len(store) == 0
    assert store.dim is None
    assert store.get([]).shape == (0, 0)
    with pytest.raises(KeyError):
        store.get([1])


def test_fingerprints_keep_separate_folders(tmp_path: Path) -> None:
    EmbeddingStore(tmp_path, "enc1").add([1], vectors([1]))

    other = EmbeddingStore(tmp_path, "enc2")

    assert other.missing([1]) == [1]
    assert (tmp_path / "enc1" / "vectors.npy").is_file()


@pytest.mark.parametrize("fingerprint", ["", "../escape", "a/b", ".hidden"])
def test_fingerprint_must_be_a_plain_folder_name(tmp_path: Path, fingerprint: str) -> None:
    with pytest.raises(ValueError, match="fingerprint must be"):
        EmbeddingStore(tmp_path, fingerprint)


@pytest.mark.parametrize(
    ("ids", "vecs", "message"),
    [
        ([1, 1], vectors([1, 1]), "duplicates"),
        ([1, 2], vectors([1]), "vectors must have shape"),
        ([1], np.array([[np.nan, 0, 0, 0]]), "NaN"),
        (["a"], vectors([1]), "ids must be integers"),
        ([1.5], vectors([1]), "ids must be integers"),
    ],
)
def test_add_rejects_bad_input(tmp_path: Path, ids: object, vecs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddingStore(tmp_path, "enc1").add(ids, vecs)  # type: ignore[arg-type]


def test_add_rejects_a_different_dimension(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    store.add([1], vectors([1], dim=4))

    with pytest.raises(ValueError, match="vectors have 3 dimensions"):
        store.add([2], vectors([2], dim=3))


def test_a_failed_write_leaves_the_previous_store_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    store.add([1, 2], vectors([1, 2]))

    def disk_full(handle, array, **kwargs):  # type: ignore[no-untyped-def]
        handle.write(b"\x93NUMPY half a header")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embeddings_module.np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.add([2, 3], vectors([200, 3]))
    monkeypatch.undo()

    np.testing.assert_array_equal(store.get([1, 2]), vectors([1, 2]))
    assert store.missing([3]) == [3]
    assert sorted(p.name for p in (tmp_path / "enc1").iterdir()) == [".lock", "ids.npy", "vectors.npy"]


def test_a_crash_between_the_two_file_swaps_stays_consistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EmbeddingStore(tmp_path, "enc1")
    store.add([1, 2], vectors([1, 2]))
    real_write = embeddings_module._write_npy_atomic

    def crash_on_ids(path: Path, array: np.ndarray) -> None:
        if path.name == "ids.npy":
            raise KeyboardInterrupt("killed")
        real_write(path, array)

    monkeypatch.setattr(embeddings_module, "_write_npy_atomic", crash_on_ids)
    with pytest.raises(KeyboardInterrupt):
        store.add([3], vectors([3]))
    monkeypatch.undo()

    # vectors.npy now has 3 rows but ids.npy still lists 2: the store reads as the old one.
    assert len(store) == 2
    np.testing.assert_array_equal(store.get([1, 2]), vectors([1, 2]))
    assert store.missing([3]) == [3]
    store.add([3, 4], vectors([3, 4]))
    np.testing.assert_array_equal(store.get([4, 3, 2, 1]), vectors([4, 3, 2, 1]))


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from learner.embeddings import EmbeddingStore

    root, start, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    (go.parent / f"ready-{start}").touch()
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    store = EmbeddingStore(root, "enc1")
    for batch in range(25):
        ids = [start + 4 * batch + k for k in range(4)]
        store.add(ids, np.array([[float(i)] * 8 for i in ids], dtype=np.float32))
    """
)


def test_concurrent_adds_from_two_processes_all_land(tmp_path: Path) -> None:
    go = tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "store"), str(start), str(go)], cwd=ROOT)
        for start in (0, 1000)
    ]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{start}").exists() for start in (0, 1000)):
        assert time.monotonic() < deadline, "the writer processes did not start"
        time.sleep(0.01)
    go.touch()  # both are waiting: release them together
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]

    store = EmbeddingStore(tmp_path / "store", "enc1")
    expected = list(range(100)) + list(range(1000, 1100))
    assert store.missing(expected) == []
    assert len(store) == 200
    np.testing.assert_array_equal(store.get(expected)[:, 0], np.array(expected, dtype=np.float32))

from __future__ import annotations

import numpy as np
import pytest

from learner.artifacts import header, read_arrays_folder, write_arrays_folder


def test_a_folder_of_a_header_and_arrays_reads_back_and_refuses_damage(tmp_path) -> None:
    arrays = {"a": np.arange(5, dtype=np.int64), "b": np.array([0.5, 1.5], dtype=np.float32)}
    folder = write_arrays_folder(tmp_path / "thing", "thing.json", header("test.Thing", 1), "thing.npz", arrays)

    payload, got = read_arrays_folder(folder, "thing.json", "thing.npz", "test.Thing", 1, "thing")
    assert payload["format"] == "test.Thing" and sorted(got) == ["a", "b"]
    assert np.array_equal(got["a"], arrays["a"]) and got["b"].dtype == np.float32

    with pytest.raises(ValueError, match=r"unsupported test\.Thing format_version"):
        read_arrays_folder(folder, "thing.json", "thing.npz", "test.Thing", 2, "thing")
    (folder / "thing.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="corrupt thing in"):
        read_arrays_folder(folder, "thing.json", "thing.npz", "test.Thing", 1, "thing")
    (folder / "thing.npz").unlink()
    with pytest.raises(ValueError, match="no saved thing in"):
        read_arrays_folder(folder, "thing.json", "thing.npz", "test.Thing", 1, "thing")

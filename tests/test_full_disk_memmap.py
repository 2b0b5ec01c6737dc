"""A full disk while a memmap-backed artifact is created is one clear error, not a SIGBUS mid-stage."""
import errno

import numpy as np
import pytest

from instruct_select import artifacts
from instruct_select.features.store import FeatureStore


def test_allocate_npy_reserves_the_whole_file(tmp_path):
    path = tmp_path / "a.npy"
    artifacts.allocate_npy(path, np.float32, (7, 5))
    array = np.load(path, mmap_mode="r")
    assert array.shape == (7, 5) and array.dtype == np.float32 and not array.any()
    # Reserved: the blocks on disk cover the file's size (a sparse file would hold fewer).
    assert path.stat().st_blocks * 512 >= path.stat().st_size


def test_a_full_disk_at_creation_raises_enospc_and_writes_no_store(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts.os, "posix_fallocate", full, raising=False)
    store = tmp_path / "store"
    with pytest.raises(OSError) as caught:
        FeatureStore.open_or_create(store, ["a", "b"], 4, "float32", {})
    assert caught.value.errno == errno.ENOSPC
    assert not (store / "meta.json").exists()  # never taken for a finished or resumable store

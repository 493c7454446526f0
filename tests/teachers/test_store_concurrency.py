"""Several jobs sharing one target store may build the same entry at the same time."""

import threading

import numpy as np

from teachers import TargetStore


def test_concurrent_writers_never_hide_a_good_entry(tmp_path):
    store = TargetStore(tmp_path / "store")
    fp = "ab" * 32
    arr = np.arange(600, dtype=np.float32).reshape(200, 3)
    store.put(fp, arr, {"test": True})
    missing = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            if store.load(fp, verify=False) is None:
                missing.append(1)

    def writer():
        for _ in range(30):
            got = store.put(fp, arr, {"test": True})
            assert np.array_equal(np.asarray(got), arr)

    r = threading.Thread(target=reader)
    r.start()
    ws = [threading.Thread(target=writer) for _ in range(3)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    r.join()
    # A second writer of an entry that is already good keeps it: readers never see it vanish.
    assert not missing
    assert np.array_equal(np.asarray(store.load(fp)), arr)
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_a_corrupt_entry_is_still_replaced(tmp_path):
    store = TargetStore(tmp_path / "store")
    fp = "cd" * 32
    store.put(fp, np.ones((10, 4), dtype=np.float32), {"test": True})
    data = next(p for p in store.entry_dir(fp).iterdir() if p.suffix == ".npy")
    data.write_bytes(data.read_bytes()[:-8])  # truncate
    got = store.put(fp, np.full((10, 4), 2.0, dtype=np.float32), {"test": True})
    assert np.asarray(got)[0, 0] == 2.0
    assert store.check(fp)[0]

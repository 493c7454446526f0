"""Several jobs sharing one target store may write the same shard at the same time."""

import threading

import numpy as np

from teachers import TargetStore
from teachers.store import KEY_DTYPE, text_keys


def _space(tmp_path):
    store = TargetStore(tmp_path / "store")
    sp = store.space("ab" * 32)
    sp.ensure({"test": True}, {"dim": 3})
    return store, sp


def test_concurrent_writers_of_one_shard_publish_it_once_and_readers_never_see_it_partial(tmp_path):
    store, sp = _space(tmp_path)
    keys = text_keys([f"text {i}" for i in range(200)])
    emb = np.arange(600, dtype=np.float32).reshape(200, 3)
    published, seen_bad = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            for name in sp.shard_names():
                why = sp.check_shard(name)
                if why is not None:
                    seen_bad.append(why)

    def writer():
        for _ in range(20):
            published.append(sp.write_shard("u-0", keys, emb))

    r = threading.Thread(target=reader)
    r.start()
    ws = [threading.Thread(target=writer) for _ in range(3)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    r.join()
    assert published.count(True) == 1  # the first writer publishes; the others keep its shard
    assert not seen_bad  # a reader never saw a shard whose files disagree with its shard.json
    idx = sp.index()
    assert idx.names == ["u-0"] and len(idx.keys) == 200
    assert np.load(sp.shards_dir / "u-0" / "emb.npy").tolist() == emb.tolist()
    leftovers = [p for p in sp.shards_dir.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_a_corrupt_shard_is_dropped_and_can_be_written_again(tmp_path):
    store, sp = _space(tmp_path)
    keys = text_keys([f"t{i}" for i in range(10)])
    assert keys.dtype == np.dtype(KEY_DTYPE)
    assert sp.write_shard("u-1", keys, np.ones((10, 4), dtype=np.float32))
    data = sp.shards_dir / "u-1" / "emb.npy"
    data.write_bytes(data.read_bytes()[:-8])  # truncate
    assert sp.verify(full=True) and sp.drop_corrupt("test") == 10
    assert sp.shard_names() == []
    assert sp.write_shard("u-1", keys, np.full((10, 4), 2.0, dtype=np.float32))
    assert np.load(sp.shards_dir / "u-1" / "emb.npy")[0, 0] == 2.0 and sp.verify(full=True) == []

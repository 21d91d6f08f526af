"""agent.vector_cache: the re-ranker's kept image embeddings, under (space, id), least recently used first out."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.factory import build_vector_cache
from agent.vector_cache import VectorCache
from chatir.settings import Settings


def test_kept_rows_come_back_by_space_and_id_and_cannot_be_altered():
    cache = VectorCache(10)
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put_many("s1", ["a", "b", "c"], matrix)
    matrix[:] = -1  # the caller's matrix is not what is kept
    got = cache.get_many("s1", ["c", "x", "a"])
    assert got[1] is None
    np.testing.assert_array_equal(got[0], [8, 9, 10, 11])
    np.testing.assert_array_equal(got[2], [0, 1, 2, 3])
    assert cache.get_many("s2", ["a"]) == [None]  # another embedding space shares nothing
    with pytest.raises(ValueError, match="read-only"):
        got[0][0] = 5
    assert got[0].base is None or got[0].base.size == 4  # a row of its own: evicting it frees it


def test_the_least_recently_used_embedding_goes_first():
    cache = VectorCache(3)
    cache.put_many("s", ["a", "b", "c"], np.eye(3, dtype=np.float32))
    cache.get_many("s", ["a"])  # a is used again: b is now the oldest
    cache.put_many("s", ["d"], np.ones((1, 3), np.float32))
    assert len(cache) == 3
    assert [row is not None for row in cache.get_many("s", ["a", "b", "c", "d"])] == [True, False, True, True]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        VectorCache(0)
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        VectorCache(5).put_many("s", ["a", "b"], np.zeros((1, 3), np.float32))


def test_threads_share_one_cache_safely():
    cache = VectorCache(500)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for start in range(0, 400, 20):
                ids = [f"{offset}-{i}" for i in range(start, start + 20)]
                cache.put_many("s", ids, np.full((20, 8), offset, np.float32))
                rows = cache.get_many("s", ids)
                assert all(row is None or row[0] == offset for row in rows)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(cache) == 500


def test_the_setting_sizes_the_cache_and_zero_turns_it_off(tmp_path):
    settings = Settings(home=tmp_path)
    default = build_vector_cache(settings)
    assert default is not None and default.maxsize == settings.rerank_vector_cache == 20_000
    assert build_vector_cache(settings.model_copy(update={"rerank_vector_cache": 0})) is None
    assert build_vector_cache(settings.model_copy(update={"rerank_pool": 0})) is None

"""The image index on the embedded store: ranking, scope (filters + exclusions), model guard, duplicate
locations, the Qdrant Edge store agreeing with qdrant-client's exact search (the server's code path), its
durability when the process dies, and the conversion of a store an older ChatIR wrote."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from qdrant_client import QdrantClient

from chatir.errors import IndexMismatchError
from chatir.schemas import PUBLIC, SearchFilter
from chatir.scope import SearchScope
from chatir.settings import Settings
from retriever_service.index import ImageIndex, ImageRecord, content_id
from retriever_service.index import edge_store as edge_module
from retriever_service.index.edge_store import EdgeStore

DIM = 8


def _settings(tmp_path, **extra) -> Settings:
    return Settings(CHATIR_HOME=tmp_path / "home", **extra)


def _id(n: int) -> str:
    return content_id(f"image-{n}".encode())


def _record(n: int, **fields) -> ImageRecord:
    return ImageRecord(id=_id(n), uri=f"/pictures/{n}.jpg", **fields)


def _unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


@pytest.fixture(params=["edge", "qdrant"], ids=["embedded-edge", "qdrant-client"])
def index(request, tmp_path):
    """Both stores behind the one code path: the embedded Edge store, and qdrant-client (here its local mode,
    standing in for a server: the same client calls)."""
    if request.param == "edge":
        with ImageIndex(_settings(tmp_path), "test/model", DIM, progress=False) as idx:
            assert idx.backend == "embedded" and isinstance(idx.client, EdgeStore)
            yield idx
        return
    client = QdrantClient(path=str(tmp_path / "qdrant-client"))
    try:
        with ImageIndex(_settings(tmp_path), "test/model", DIM, client=client) as idx:
            assert idx.backend == "qdrant-client-local"
            yield idx
    finally:
        client.close()


@pytest.fixture
def ladder(index):
    """Ten images at decreasing cosine from the query e0: image n has angle ~ n (0 = exact match).
    Even images are public, odd ones only in channel C1; image n carries tag t<n % 3>, source s<n % 2>."""
    records, vectors = [], []
    for n in range(10):
        records.append(
            _record(n, allowed=[PUBLIC] if n % 2 == 0 else ["C1"], tags=[f"t{n % 3}"], source=f"s{n % 2}")
        )
        vectors.append(_unit(1.0, 0.15 * n))
    index.upsert(records, np.stack(vectors))
    return records


def _ids(hits) -> list[str]:
    return [record.id for record, _ in hits]


def test_search_ranks_by_cosine(index, ladder):
    hits = index.search(_unit(1.0), k=5)
    assert _ids(hits) == [_id(n) for n in range(5)]
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    first = hits[0][0]
    assert first.uri == "/pictures/0.jpg" and first.locations == ["/pictures/0.jpg"]
    assert index.count() == 10


def test_allowed_filter_never_leaks_the_best_match_and_still_fills_k(index, ladder):
    hits = index.search(_unit(1.0), k=3, filter=SearchFilter(allowed=["C1"]))  # best match: image 0 (public)
    assert _ids(hits) == [_id(1), _id(3), _id(5)]
    assert all(record.allowed == ["C1"] for record, _ in hits)
    # any-of: a member of C1 sees both
    hits = index.search(_unit(1.0), k=4, filter=SearchFilter(allowed=["C1", PUBLIC]))
    assert _ids(hits) == [_id(n) for n in range(4)]
    # a scope nobody is in, or an empty scope, sees nothing
    assert index.search(_unit(1.0), k=3, filter=SearchFilter(allowed=["C999"])) == []
    assert index.search(_unit(1.0), k=3, filter=SearchFilter(allowed=[])) == []


def test_source_and_tag_filters(index, ladder):
    hits = index.search(_unit(1.0), k=10, filter=SearchFilter(sources=["s1"]))
    assert _ids(hits) == [_id(n) for n in (1, 3, 5, 7, 9)]
    hits = index.search(_unit(1.0), k=10, filter=SearchFilter(tags=["t0", "t2"]))
    assert _ids(hits) == [_id(n) for n in (0, 2, 3, 5, 6, 8, 9)]
    hits = index.search(_unit(1.0), k=10, filter=SearchFilter(allowed=[PUBLIC], tags=["t0"]))
    assert _ids(hits) == [_id(n) for n in (0, 6)]


def test_excluded_ids_never_come_back_even_when_best(index, ladder):
    rejected = [_id(0), _id(1), "not-an-id", _id(42)]
    hits = index.search(_unit(1.0), k=4, exclude_ids=rejected)
    assert _ids(hits) == [_id(n) for n in (2, 3, 4, 5)]
    hits = index.search(_unit(1.0), k=3, filter=SearchFilter(allowed=[PUBLIC]), exclude_ids=[_id(0), _id(2)])
    assert _ids(hits) == [_id(4), _id(6), _id(8)]
    # fewer matches than k: what exists, no padding
    assert len(index.search(_unit(1.0), k=10, exclude_ids=[_id(n) for n in range(8)])) == 2


def test_large_exclusion_lists_go_into_the_query(index, ladder, monkeypatch):
    """Past ``EXCLUDED_BY_LIMIT`` the embedded store excludes with a must_not filter: same answers."""
    monkeypatch.setattr(edge_module, "EXCLUDED_BY_LIMIT", 1)
    hits = index.search(_unit(1.0), k=3, filter=SearchFilter(allowed=[PUBLIC]), exclude_ids=[_id(0), _id(2)])
    assert _ids(hits) == [_id(4), _id(6), _id(8)]
    assert _ids(index.search(_unit(1.0), k=2, exclude_ids=[_id(0)])) == [_id(1), _id(2)]


def test_batch_search_matches_single(index, ladder):
    queries = np.stack([_unit(1.0), _unit(1.0, 1.0), _unit(0.0, 1.0)])
    batch = index.search_batch(queries, k=3, filter=SearchFilter(allowed=["C1"]))
    assert [_ids(b) for b in batch] == [
        _ids(index.search(q, k=3, filter=SearchFilter(allowed=["C1"]))) for q in queries
    ]


def test_bad_vectors_are_refused(index):
    with pytest.raises(ValueError, match="shape"):
        index.search(np.ones(DIM + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.upsert([_record(0)], np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="zero vector"):
        index.upsert([_record(0)], np.zeros((1, DIM), dtype=np.float32))
    with pytest.raises(ValueError, match="records"):
        index.upsert([_record(0), _record(1)], np.ones((1, DIM), dtype=np.float32))


def test_get_delete_iter_and_file_index(index, ladder):
    assert index.get(_id(3)).uri == "/pictures/3.jpg"
    assert index.get(_id(99)) is None and index.get("nonsense") is None
    assert index.delete([_id(3), _id(99)]) == 1
    assert index.delete(_id(3)) == 0
    assert index.count() == 9
    assert _id(3) not in _ids(index.search(_unit(1.0, 0.45), k=9))
    assert {r.id for r in index.iter_records()} == {_id(n) for n in range(10) if n != 3}
    files = index.file_index()
    assert set(files) == {f"/pictures/{n}.jpg" for n in range(10) if n != 3}


def test_duplicate_is_stored_once_with_all_locations(index, ladder):
    record = index.add_location(_id(1), "/other/copy.jpg", mtime=123.5, allowed=["C7"], tags=["extra"])
    assert record.locations == ["/pictures/1.jpg", "/other/copy.jpg"]
    stored = index.get(_id(1))
    assert stored.locations == ["/pictures/1.jpg", "/other/copy.jpg"]
    assert stored.allowed == ["C1", "C7"] and "extra" in stored.tags
    assert index.count() == 10
    assert index.file_index()["/other/copy.jpg"] == (_id(1), None, 123.5)
    # whoever may see one copy finds the image, through the merged scope
    assert _ids(index.search(_unit(1.0, 0.15), k=1, filter=SearchFilter(allowed=["C7"]))) == [_id(1)]
    assert index.add_location(_id(99), "/nowhere.jpg") is None


def test_remove_locations_promotes_a_copy_and_deletes_with_the_last(index, ladder):
    index.add_location(_id(2), "/other/copy.jpg", mtime=7.0)
    remaining = index.remove_locations(_id(2), ["/pictures/2.jpg"])
    assert remaining.uri == "/other/copy.jpg" and remaining.locations == ["/other/copy.jpg"]
    assert remaining.file_mtime == 7.0
    assert index.remove_locations(_id(2), ["/other/copy.jpg"]) is None
    assert index.get(_id(2)) is None and index.count() == 9


def test_other_model_or_size_is_refused(tmp_path):
    settings = _settings(tmp_path)
    with ImageIndex(settings, "model-a", DIM, progress=False) as idx:
        idx.upsert([_record(0)], _unit(1.0)[None, :])
    with pytest.raises(IndexMismatchError, match="model-a") as error:
        ImageIndex(settings, "model-b", DIM, progress=False)
    assert "CHATIR_COLLECTION" in str(error.value)
    assert "`chatir reindex --model model-b`" in str(error.value)
    with pytest.raises(IndexMismatchError, match=f"{DIM}-d"):
        ImageIndex(settings, "model-a", DIM * 2, progress=False)
    # the refused opens released the store: the right model still opens it
    with ImageIndex(settings, "model-a", DIM, progress=False) as idx:
        assert idx.count() == 1
    # another collection for the other model is fine
    with ImageIndex(
        _settings(tmp_path, CHATIR_COLLECTION="for_b"), "model-b", DIM * 2, progress=False
    ) as idx:
        assert idx.count() == 0


def _random_corpus(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        ImageRecord(
            id=_id(i),
            uri=f"/c/{i}.png",
            allowed=sorted({f"C{c}" for c in rng.integers(0, 12, rng.integers(1, 4))}),
            source=f"s{rng.integers(0, 4)}",
            tags=[f"t{t}" for t in set(rng.integers(0, 6, rng.integers(0, 3)).tolist())],
        )
        for i in range(n)
    ]
    return records, vectors, rng


def test_edge_store_agrees_with_exact_search(tmp_path, monkeypatch):
    """The embedded store's quantised scan + rescoring returns what qdrant-client's exact search returns."""
    monkeypatch.setattr(edge_module, "INDEXING_THRESHOLD_KB", 1)  # quantise even this small corpus
    records, vectors, rng = _random_corpus(1500, 16)
    settings = _settings(tmp_path)
    queries = rng.standard_normal((12, 16)).astype(np.float32)
    scopes = [
        (None, []),
        (SearchFilter(allowed=["C1", "C2"]), []),
        (SearchFilter(allowed=["C3"], tags=["t1"]), []),
        (SearchFilter(sources=["s0"]), [r.id for r in records[:300]]),
    ]
    with ImageIndex(settings, "m", 16, progress=False) as fast:
        fast.upsert(records, vectors)
        fast.optimize()
        fast_results = [[fast.search(q, k=10, filter=f, exclude_ids=x) for q in queries] for f, x in scopes]
    client = QdrantClient(path=str(tmp_path / "exact"))
    with ImageIndex(settings, "m", 16, client=client) as exact:
        exact.upsert(records, vectors)
        for (search_filter, excluded), results in zip(scopes, fast_results, strict=True):
            scope = SearchScope.from_filter(search_filter, excluded)
            for query, got in zip(queries, results, strict=True):
                want = exact.search(query, k=10, filter=search_filter, exclude_ids=excluded)
                assert len(want) == 10
                assert _ids(got) == _ids(want)
                assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
                assert all(
                    scope.admits(allowed=r.allowed, source=r.source, tags=r.tags, image_id=r.id)
                    for r, _ in got
                )
    client.close()


_WRITE_AND_DIE = """
import os, sys
import numpy as np
from chatir.settings import Settings
from retriever_service.index import ImageIndex, ImageRecord, content_id

index = ImageIndex(Settings(CHATIR_HOME=sys.argv[1]), "m", 8, progress=False)
ids = [content_id(f"image-{n}".encode()) for n in range(50)]
records = [ImageRecord(id=i, uri=f"/pictures/{n}.jpg") for n, i in enumerate(ids)]
vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
index.upsert(records, vectors)
index.delete(ids[:5])
os.kill(os.getpid(), 9)  # no close, no flush
"""


def test_writes_survive_a_killed_process(tmp_path):
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_AND_DIE, str(home)], env=os.environ.copy(), check=False
    )
    assert done.returncode == -9
    with ImageIndex(Settings(CHATIR_HOME=home), "m", 8, progress=False) as index:
        assert index.count() == 45
        assert index.get(_id(4)) is None and index.get(_id(5)) is not None
        assert len(index.search(_unit(1.0), k=10)) == 10


def _legacy_home(tmp_path, records, vectors):
    """A home written by an older ChatIR: qdrant-client's local store + its Edge search mirror beside it."""
    from retriever_service.index.collections import switch_active

    settings = _settings(tmp_path)
    client = QdrantClient(path=str(settings.qdrant_path))
    with ImageIndex(settings, "m", DIM, client=client, collection="chatir_images__m") as old:
        old.upsert(records, vectors)
    switch_active(client, "chatir_images", "chatir_images__m")
    client.close()
    (settings.home / "qdrant-edge" / "chatir_images" / "shard").mkdir(parents=True)
    return settings


def test_a_store_written_by_an_older_version_is_converted_once(tmp_path):
    records, vectors, _ = _random_corpus(60, DIM)
    settings = _legacy_home(tmp_path, records, vectors)
    (settings.home / "qdrant.converting").mkdir()  # an earlier attempt that died half-way
    with ImageIndex(settings, "m", DIM, progress=False) as index:
        assert isinstance(index.client, EdgeStore) and index.collection == "chatir_images__m"
        assert index.count() == 60
        assert index.get(records[7].id) == records[7]
        np.testing.assert_allclose(
            index.get_vectors([records[3].id])[0], vectors[3] / np.linalg.norm(vectors[3]), atol=1e-6
        )
        assert _ids(index.search(vectors[12], k=1)) == [records[12].id]
    assert (settings.home / "qdrant.v1-backup" / "meta.json").is_file()
    assert not (settings.home / "qdrant-edge").exists() and not (settings.home / "qdrant.converting").exists()
    with ImageIndex(settings, "m", DIM, progress=False) as index:  # the second open does not convert again
        assert index.count() == 60
    assert not (settings.home / "qdrant.v1-backup-2").exists()


def test_a_conversion_killed_before_its_swap_is_finished_at_the_next_open(tmp_path, monkeypatch):
    from retriever_service.index import embedded

    records, vectors, _ = _random_corpus(20, DIM)
    settings = _legacy_home(tmp_path, records, vectors)
    original = embedded.Path.rename

    def die_on_the_second_move(self, target):
        if self.name == "qdrant.converting":
            raise KeyboardInterrupt  # after the old store moved away, before the new one moved in
        return original(self, target)

    monkeypatch.setattr(embedded.Path, "rename", die_on_the_second_move)
    with pytest.raises(KeyboardInterrupt):
        ImageIndex(settings, "m", DIM, progress=False)
    monkeypatch.setattr(embedded.Path, "rename", original)
    assert not settings.qdrant_path.exists()
    with ImageIndex(settings, "m", DIM, progress=False) as index:
        assert index.count() == 20


def test_a_second_process_gets_a_clear_lock_error(tmp_path):
    from retriever_service.errors import is_store_lock_error

    settings = _settings(tmp_path)
    with ImageIndex(settings, "m", DIM, progress=False):
        with pytest.raises(RuntimeError) as held:
            ImageIndex(settings, "m", DIM, progress=False)
        assert is_store_lock_error(held.value)
    with ImageIndex(settings, "m", DIM, progress=False) as index:  # released on close
        assert index.count() == 0


def test_record_point_ids_and_text():
    from retriever_service.index import image_id_of_point, point_id, text_from_filename

    image_id = content_id(b"bytes")
    assert len(image_id) == 32 and image_id_of_point(point_id(image_id)) == image_id
    with pytest.raises(ValueError):
        ImageRecord(id="xyz", uri="/a.jpg")
    assert text_from_filename("/a/red_car-at.night.jpg") == "red car at night"


def test_get_vectors(index, ladder):
    vectors = index.get_vectors([_id(2), _id(0)])
    assert vectors.shape == (2, DIM)
    np.testing.assert_allclose(vectors[0], _unit(1.0, 0.3), atol=1e-5)
    with pytest.raises(KeyError, match="not in the index"):
        index.get_vectors([_id(0), _id(77)])


def test_search_with_vectors_is_search_plus_each_hits_stored_embedding(index, ladder):
    """One query brings the hits and their embeddings (the re-ranker's pool), in scope and order."""
    scope = {"filter": SearchFilter(allowed=[PUBLIC]), "exclude_ids": [_id(0)]}
    plain = index.search(_unit(1.0), k=3, **scope)
    hits, vectors = index.search_with_vectors(_unit(1.0), k=3, **scope)
    assert _ids(hits) == _ids(plain) == [_id(2), _id(4), _id(6)]
    assert [score for _, score in hits] == pytest.approx([score for _, score in plain], abs=1e-6)
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, index.get_vectors(_ids(hits)), atol=1e-6)
    np.testing.assert_allclose(vectors[0], _unit(1.0, 0.3), atol=1e-5)
    nothing, none = index.search_with_vectors(_unit(1.0), k=3, filter=SearchFilter(allowed=[]))
    assert nothing == [] and none.shape == (0, DIM)


def test_copies_keep_their_own_scope_and_forgetting_one_narrows_the_image(index, ladder):
    index.add_location(
        _id(4), "/chan-b/copy.jpg", mtime=1.0, allowed=["CB"], tags=["b"], source="slack:CB", text="b's"
    )
    stored = index.get(_id(4))
    assert stored.visible_copy(SearchFilter(allowed=["CB"]))[1].text == "b's"
    primary_groups = [g for g in stored.allowed if g != "CB"]
    assert stored.visible_copy(SearchFilter(allowed=primary_groups))[0] == stored.uri
    assert stored.visible_copy(SearchFilter(allowed=["nobody"])) is None
    # the B copy's file is gone: B no longer finds the image, and the primary's callers still do
    index.remove_locations(_id(4), ["/chan-b/copy.jpg"])
    assert _ids(index.search(_unit(1.0, 0.45), k=10, filter=SearchFilter(allowed=["CB"]))) == []
    assert index.get(_id(4)).allowed == primary_groups

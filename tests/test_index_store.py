"""The image index on the embedded Qdrant store: ranking, scope (filters + exclusions), model guard,
duplicate locations, and the Qdrant Edge fast path agreeing with qdrant-client's exact search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chatir.errors import IndexMismatchError
from chatir.schemas import PUBLIC, SearchFilter
from chatir.scope import SearchScope
from chatir.settings import Settings
from retriever_service.index import ImageIndex, ImageRecord, content_id
from retriever_service.index import edge as edge_module

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


@pytest.fixture(params=["edge", "qdrant"], ids=["fast-edge", "qdrant-query_points"])
def index(request, tmp_path):
    """Both search paths: the Qdrant Edge mirror, and qdrant-client's query_points (the server's path)."""
    with ImageIndex(
        _settings(tmp_path), "test/model", DIM, fast=request.param == "edge", progress=False
    ) as idx:
        assert idx.backend == ("embedded+edge" if request.param == "edge" else "embedded")
        yield idx


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
    """Past ``EXCLUDED_BY_LIMIT`` the mirror excludes with a must_not filter: same answers."""
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


def test_fast_path_agrees_with_exact_search(tmp_path, monkeypatch):
    """The quantised Qdrant Edge mirror returns what qdrant-client's exact search returns, within scope."""
    monkeypatch.setattr(edge_module, "INDEXING_THRESHOLD_KB", 1)  # quantise even this small corpus
    records, vectors, rng = _random_corpus(1500, 16)
    settings = _settings(tmp_path)
    with ImageIndex(settings, "m", 16, fast=True, progress=False) as fast:
        fast.upsert(records, vectors)
        fast.optimize()
        queries = rng.standard_normal((12, 16)).astype(np.float32)
        scopes = [
            (None, []),
            (SearchFilter(allowed=["C1", "C2"]), []),
            (SearchFilter(allowed=["C3"], tags=["t1"]), []),
            (SearchFilter(sources=["s0"]), [r.id for r in records[:300]]),
        ]
        fast_results = [[fast.search(q, k=10, filter=f, exclude_ids=x) for q in queries] for f, x in scopes]
    with ImageIndex(settings, "m", 16, fast=False) as exact:
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


def test_mirror_rebuilds_when_stale_or_missing(tmp_path):
    records, vectors, _ = _random_corpus(40, DIM)
    settings = _settings(tmp_path)
    with ImageIndex(settings, "m", DIM, progress=False) as idx:
        idx.upsert(records[:30], vectors[:30])
        mirror_folder = idx._fast.folder
    # writes made without the mirror (as if the process died between the store and the mirror)
    with ImageIndex(settings, "m", DIM, fast=False) as idx:
        idx.upsert(records[30:], vectors[30:])
        idx.delete(records[0].id)
    with ImageIndex(settings, "m", DIM, progress=False) as idx:
        assert idx._fast.count() == 39
        assert _ids(idx.search(vectors[35], k=1)) == [records[35].id]
        assert records[0].id not in _ids(idx.search(vectors[0], k=5))
    # a marker left "dirty" by an interrupted write forces a rebuild too
    sync = mirror_folder / edge_module.SYNC_FILE
    sync.write_text(json.dumps({**json.loads(sync.read_text()), "state": "dirty"}))
    with ImageIndex(settings, "m", DIM, progress=False) as idx:
        assert idx._fast.count() == 39
        assert json.loads(sync.read_text())["state"] == "clean"


def test_failed_mirror_write_leaves_marker_dirty_and_is_repaired(tmp_path, monkeypatch):
    records, vectors, _ = _random_corpus(5, DIM)
    settings = _settings(tmp_path)
    with ImageIndex(settings, "m", DIM, progress=False) as idx:
        idx.upsert(records[:4], vectors[:4])

        def broken(*args, **kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(idx._fast, "upsert", broken)
        with pytest.raises(RuntimeError):
            idx.upsert(records[4:], vectors[4:])
        sync = idx._fast.folder / edge_module.SYNC_FILE
        assert json.loads(sync.read_text())["state"] == "dirty"
    with ImageIndex(settings, "m", DIM, progress=False) as idx:
        assert idx.count() == 5 and idx._fast.count() == 5
        assert _ids(idx.search(vectors[4], k=1)) == [records[4].id]


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

"""One meaning of a search scope (:meth:`chatir.scope.SearchScope.admits`), checked on random scopes:

- the Qdrant filters the index compiles from a scope return exactly the images it admits, on both search paths
  (qdrant-client's ``query_points``, the server's path, and the Qdrant Edge mirror), for a search, a
  re-ranker's pool and the vectors of known ids;
- narrowing never widens: what ``a.intersect(b)`` admits, both ``a`` and ``b`` admit.

``CHATIR_PROPERTY_EXAMPLES`` sets the number of random scopes (default 60 per path).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatir.ids import content_id
from chatir.scope import SearchScope
from chatir.settings import Settings
from retriever_service.index import ImageIndex, ImageRecord

GROUPS = ["public", "C1", "C2", "C3"]
SOURCES = ["s1", "s2", "s3"]
TAGS = ["t1", "t2", "t3"]
N, DIM = 48, 4
IDS = [content_id(f"image-{n}".encode()) for n in range(N)]
EXAMPLES = int(os.environ.get("CHATIR_PROPERTY_EXAMPLES", "60"))


def _records() -> list[ImageRecord]:
    rng = np.random.default_rng(7)
    records = []
    for n, image_id in enumerate(IDS):
        allowed = sorted(rng.choice(GROUPS, size=int(rng.integers(1, 3)), replace=False).tolist())
        tags = sorted(rng.choice(TAGS, size=int(rng.integers(0, 3)), replace=False).tolist())
        source = str(rng.choice(SOURCES))
        records.append(ImageRecord(id=image_id, uri=f"/p/{n}.png", allowed=allowed, source=source, tags=tags))
    return records


def _axis(values: list[str]) -> st.SearchStrategy[list[str] | None]:
    return st.none() | st.lists(st.sampled_from(values), unique=True, max_size=len(values))


SCOPES = st.builds(
    SearchScope,
    allowed=_axis([*GROUPS, "C-unknown"]),
    sources=_axis([*SOURCES, "s-unknown"]),
    tags=_axis([*TAGS, "t-unknown"]),
    # real ids (some upper-cased), and strings that are not ids at all
    exclude_ids=st.lists(
        st.sampled_from(IDS).map(lambda i: i.upper()) | st.sampled_from(IDS) | st.just("x"), max_size=6
    ),
)


def _admitted(scope: SearchScope, records: list[ImageRecord]) -> set[str]:
    return {
        r.id for r in records if scope.admits(allowed=r.allowed, source=r.source, tags=r.tags, image_id=r.id)
    }


@pytest.fixture(scope="module", params=["edge", "qdrant"], ids=["embedded-edge", "qdrant-client"])
def index(request, tmp_path_factory):
    """The embedded store, and qdrant-client (its local mode standing in for a server: the same calls)."""
    from qdrant_client import QdrantClient

    home = tmp_path_factory.mktemp("scope-home")
    settings = Settings(CHATIR_HOME=home)
    client = QdrantClient(path=str(home / "qdrant-client")) if request.param == "qdrant" else None
    with ImageIndex(settings, "test/model", DIM, client=client, progress=False) as idx:
        records = _records()
        idx.upsert(records, np.random.default_rng(1).normal(size=(N, DIM)).astype(np.float32))
        yield idx, records
    if client is not None:
        client.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scope=SCOPES)
def test_the_index_returns_exactly_what_the_scope_admits(index, scope):
    idx, records = index
    hits = idx.search(np.ones(DIM, np.float32), k=N, filter=scope.to_filter(), exclude_ids=scope.exclude_ids)
    assert {record.id for record, _ in hits} == _admitted(scope, records)
    assert all(record.visible_copy(scope.to_filter()) is not None for record, _ in hits)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scope=SCOPES,
    asked=st.lists(st.sampled_from(IDS) | st.sampled_from(IDS).map(str.upper) | st.just("x"), max_size=12),
)
def test_a_pool_and_the_vectors_call_return_exactly_what_the_scope_admits(index, scope, asked):
    """The re-ranker's calls (a bare pool, with and without vectors; the vectors of known ids) keep to the
    scope like a search, on both paths; the vectors are the stored ones, in the order asked."""
    idx, records = index
    query = {"filter": scope.to_filter(), "exclude_ids": scope.exclude_ids}
    admitted = _admitted(scope, records)
    ids, scores, vectors = idx.pool(np.ones(DIM, np.float32), k=N, **query)
    bare_ids, bare_scores, none = idx.pool(np.ones(DIM, np.float32), k=N, **query, with_vectors=False)
    assert set(ids) == admitted and bare_ids == ids and none is None
    np.testing.assert_array_equal(bare_scores, scores)
    if ids:
        np.testing.assert_array_equal(vectors, idx.get_vectors(ids))
    kept, matrix = idx.vectors_in_scope(asked, **query)
    expected = [i for i in dict.fromkeys(a.lower() for a in asked) if i in admitted]
    assert kept == expected and matrix.shape == (len(kept), DIM)
    if kept:
        np.testing.assert_array_equal(matrix, idx.get_vectors(kept))


@settings(max_examples=EXAMPLES, deadline=None)
@given(a=SCOPES, b=SCOPES)
def test_narrowing_never_widens(a, b):
    records = _records()
    # a subset, not always equal: an image in groups {public, C1} is admitted by allowed=[public] and by
    # allowed=[C1], but not by their intersection (allowed=[]): narrowing is conservative, never wider
    assert _admitted(a.intersect(b), records) <= _admitted(a, records) & _admitted(b, records)

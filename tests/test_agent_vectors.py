"""Hits' image embeddings on the wire (agent/vectors.py): the base64 form is exact, and bad data is refused."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from agent.vectors import hit_matrix, hit_vector, pack, unpack, without_vectors
from chatir.errors import ChatIRError
from chatir.schemas import Hit, SearchResponse


def _hit(i: int, **vector) -> Hit:
    return Hit(id=f"{i:032x}", score=0.5, uri=f"img{i}.png", thumbnail_url="", **vector)


def test_base64_vectors_survive_json_bit_for_bit():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((5, 257)).astype(np.float32)
    matrix[0, :3] = [np.finfo(np.float32).tiny, -0.0, 1e30]  # the extremes a float32 holds
    response = SearchResponse(
        hits=[_hit(i, vector_base64=pack(v)) for i, v in enumerate(matrix)], model="m", took_ms=1
    )
    parsed = SearchResponse.model_validate_json(response.model_dump_json())
    got = hit_matrix(parsed.hits)
    assert got is not None and got.dtype == np.float32 and got.shape == matrix.shape
    assert got.tobytes() == matrix.tobytes()
    # little-endian float32 whatever the machine: what another client's decoder reads
    assert base64.b64decode(parsed.hits[1].vector_base64 or "") == matrix[1].astype("<f4").tobytes()


def test_either_form_reads_the_same_and_a_missing_vector_is_no_matrix():
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    listed, packed, bare = _hit(1, vector=vector.tolist()), _hit(2, vector_base64=pack(vector)), _hit(3)
    np.testing.assert_array_equal(hit_vector(listed), hit_vector(packed))
    assert hit_vector(bare) is None
    assert hit_matrix([listed, packed]).shape == (2, 8)
    assert hit_matrix([listed, bare]) is None and hit_matrix([]) is None
    with pytest.raises(ChatIRError, match="differ in size"):
        hit_matrix([listed, _hit(4, vector_base64=pack(vector[:4]))])


@pytest.mark.parametrize("text", ["not base64!", "AAE=", ""])
def test_a_broken_vector_is_a_clear_error(text):
    with pytest.raises(ChatIRError, match="vector_base64"):
        unpack(text)


def test_without_vectors_drops_both_forms_and_keeps_the_rest():
    vector = np.ones(4, dtype=np.float32)
    hits = [_hit(1, vector=vector.tolist()), _hit(2, vector_base64=pack(vector)), _hit(3)]
    stripped = without_vectors(hits)
    assert [h.id for h in stripped] == [h.id for h in hits]
    assert all(h.vector is None and h.vector_base64 is None for h in stripped)
    assert stripped[2] is hits[2] and hits[0].vector is not None  # the originals are untouched

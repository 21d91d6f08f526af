"""A collection created on a Qdrant cluster gets ``shard_number`` / ``replication_factor`` from the settings."""

from __future__ import annotations

import numpy as np
import pytest

from chatir.settings import Settings
from retriever_service.index import ImageIndex, ImageRecord, content_id
from retriever_service.index.edge_store import EdgeStore


@pytest.fixture
def created(monkeypatch) -> list[dict]:
    """Every create_collection call's keyword arguments (the real client still creates the collection)."""
    calls: list[dict] = []
    original = EdgeStore.create_collection

    def recording(self, collection_name, **kwargs):
        calls.append({"name": collection_name, **kwargs})
        return original(self, collection_name, **kwargs)

    monkeypatch.setattr(EdgeStore, "create_collection", recording)
    return calls


def test_shards_and_replicas_come_from_the_environment(tmp_path, monkeypatch, created):
    monkeypatch.setenv("CHATIR_HOME", str(tmp_path))
    monkeypatch.setenv("CHATIR_QDRANT_SHARD_NUMBER", "6")
    monkeypatch.setenv("CHATIR_QDRANT_REPLICATION_FACTOR", "2")
    settings = Settings()
    with ImageIndex(settings, "test/model", 4, progress=False) as index:
        assert index.cluster_layout() == {"shard_number": 6, "replication_factor": 2}
        record = ImageRecord(id=content_id(b"one"), uri="/pictures/one.jpg")
        index.upsert([record], np.eye(1, 4, dtype=np.float32))
        assert index.count() == 1  # the embedded store accepted and ignored the cluster layout
    (call,) = [c for c in created if c["name"] == settings.collection]
    assert call["shard_number"] == 6 and call["replication_factor"] == 2


def test_unset_means_the_servers_defaults(tmp_path, created):
    with ImageIndex(Settings(home=tmp_path), "test/model", 4, progress=False):
        pass
    (call,) = [c for c in created if c["name"] == "chatir_images"]
    assert "shard_number" not in call and "replication_factor" not in call


def test_a_replication_factor_below_one_is_refused():
    with pytest.raises(ValueError, match=r"greater than or equal to 1"):
        Settings(qdrant_replication_factor=0)

"""``chatir migrate-index`` (issue #17) embedded -> embedded on a tiny CLIP: a full copy that a service can search at
once, an interrupted copy resumed, changed and missing points re-copied and equal ones skipped, a verification that
catches a tampered vector or an extra point, and refusals (another model, bad or identical targets, no server)."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from chatir.errors import ChatIRError, IndexMismatchError, ServiceUnavailableError
from chatir.settings import Settings, get_settings
from retriever_service.index import ImageIndex, index_paths
from retriever_service.index.migrate import MigrationMismatchError, migrate_collection, target_settings

IMAGES = 13


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    from retriever_service.models import load_model

    return load_model(str(tiny_clip_dir), device="cpu")


@pytest.fixture
def source(tmp_path, model) -> Settings:
    """An embedded store with 13 images (one of them twice, in another group)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(IMAGES):
        pixels = np.random.default_rng(i).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    settings = Settings(home=tmp_path / "source-home")
    with ImageIndex(settings, model.model_id, model.dim, progress=False) as index:
        index_paths([folder], model=model, index=index, progress=False, tags=["holiday"])
        (tmp_path / "team").mkdir()
        (tmp_path / "team" / "again.png").write_bytes((folder / "img03.png").read_bytes())
        index_paths([tmp_path / "team"], model=model, index=index, progress=False, allowed=["C-team"])
        assert index.count() == IMAGES
    return settings


def _points(settings: Settings, model) -> dict[str, tuple[np.ndarray, dict]]:
    with ImageIndex(settings, model.model_id, model.dim, progress=False) as index:
        points, _ = index.client.scroll(index.collection, limit=1000, with_payload=True, with_vectors=True)
    return {str(p.id): (np.asarray(p.vector, dtype=np.float32), p.payload) for p in points}


def _raw(settings: Settings, model):
    return ImageIndex(settings, model.model_id, model.dim, progress=False)


@pytest.fixture
def cli(source, tiny_clip_dir, monkeypatch):
    from retriever_service.cli import register

    monkeypatch.setenv("CHATIR_HOME", str(source.home))
    for name in (
        "QDRANT_URL",
        "CHATIR_QDRANT_URL",
        "CHATIR_COLLECTION",
        "QDRANT_API_KEY",
        "CHATIR_QDRANT_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    app = typer.Typer()
    register(app)

    def run(*args: str):
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


def test_a_full_copy_keeps_ids_vectors_payloads_and_the_model_and_is_searchable(cli, source, model, tmp_path):
    result = cli("migrate-index", "--to", f"path:{tmp_path / 'target-home'}", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert f"{IMAGES} copied, 0 updated, 0 already there" in result.stdout
    assert f"verified: {IMAGES} points in both, {IMAGES} sampled vectors and payloads equal" in result.stdout

    target = Settings(home=tmp_path / "target-home")
    want, got = _points(source, model), _points(target, model)
    assert sorted(got) == sorted(want)
    for point_id, (vector, payload) in want.items():
        assert np.array_equal(got[point_id][0], vector) and got[point_id][1] == payload
    # the model travelled with the collection: another model is refused there, the same one searches it
    with pytest.raises(IndexMismatchError):
        ImageIndex(target, "another-model", model.dim, progress=False)
    with ImageIndex(source, model.model_id, model.dim, progress=False) as index:
        query = index.get_vectors([next(iter(r.id for r in index.iter_records()))])[0]
        expected = [(r.id, round(s, 5)) for r, s in index.search(query, k=5, filter=None)]
    with ImageIndex(target, model.model_id, model.dim, progress=False) as index:
        assert [(r.id, round(s, 5)) for r, s in index.search(query, k=5, filter=None)] == expected

    again = cli("migrate-index", "--to", f"file://{tmp_path / 'target-home'}")
    assert again.exit_code == 0 and f"0 copied, 0 updated, {IMAGES} already there" in again.stdout, (
        again.output
    )


def test_an_interrupted_copy_resumes_and_changed_points_are_copied_again(source, model, tmp_path):
    target = target_settings(source, f"path:{tmp_path / 'target-home'}", collection="moved")

    def interrupt(done: int, total: int) -> None:
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_collection(source, target, batch_size=4, progress=interrupt)
    with _raw(target, model) as index:
        assert index.count() == 8

    resumed = migrate_collection(source, target, batch_size=4, progress=False)
    assert (resumed.copied, resumed.unchanged, resumed.updated) == (IMAGES - 8, 8, 0)
    assert resumed.verified and resumed.target_count == IMAGES

    ids = sorted(_points(target, model))
    with _raw(target, model) as index:  # drift: two points lost, one payload edited
        index.client.delete(index.collection, points_selector=ids[:2], wait=True)
        index.client.set_payload(
            index.collection, payload={"owner": "someone else"}, points=[ids[2]], wait=True
        )
    repaired = migrate_collection(source, target, progress=False, seed=1)
    assert (repaired.copied, repaired.updated, repaired.unchanged) == (2, 1, IMAGES - 3)
    assert _points(target, model)[ids[2]][1] == _points(source, model)[ids[2]][1]


def test_verification_reports_a_tampered_vector_and_an_extra_point(cli, source, model, tmp_path):
    home = tmp_path / "target-home"
    assert cli("migrate-index", "--to", f"path:{home}").exit_code == 0
    target = Settings(home=home)
    victim = sorted(_points(target, model))[5]
    with _raw(target, model) as index:
        from qdrant_client import models

        vector = np.random.default_rng(0).normal(size=model.dim).tolist()
        index.client.update_vectors(
            index.collection, points=[models.PointVectors(id=victim, vector=vector)], wait=True
        )
    result = cli("migrate-index", "--to", f"path:{home}", "--verify-only")
    assert result.exit_code == 1 and isinstance(result.exception, MigrationMismatchError)
    assert f"point {victim} has another vector in the target" in str(result.exception)

    with _raw(target, model) as index:
        from qdrant_client import models

        extra = "0" * 31 + "1"
        index.client.upsert(
            index.collection, points=[models.PointStruct(id=extra, vector=vector, payload={})]
        )
    result = cli("migrate-index", "--to", f"path:{home}", "--sample", "0")  # the copy repairs the vector ...
    assert result.exit_code == 1 and f"the source holds {IMAGES} points, the target {IMAGES + 1}" in str(
        result.exception
    )  # ... but an extra point is the target's own: reported, never deleted
    assert "another vector" not in str(result.exception)


def test_a_target_of_another_model_or_size_is_refused_untouched(source, model, tmp_path):
    for other_model, dim in (("another-model", model.dim), (model.model_id, model.dim + 1)):
        home = tmp_path / f"other-{dim}-{other_model}"
        target = target_settings(source, f"path:{home}")
        ImageIndex(target, other_model, dim, progress=False).close()  # someone else's collection
        with pytest.raises(IndexMismatchError, match=r"Refusing to migrate .* --collection"):
            migrate_collection(source, target, progress=False)
        with ImageIndex(target, other_model, dim, progress=False) as index:
            assert index.count() == 0


def test_bad_targets_and_sources_are_clear_errors(source, tmp_path):
    for bad, words in {
        "ftp://example.com/x": "neither a Qdrant server URL",
        "qdrant:6333": "neither a Qdrant server URL",
        "path:": "names no folder",
        "file://elsewhere/srv": "must name a local folder",
        f"path:{source.home}": "the source itself",
    }.items():
        with pytest.raises(ChatIRError, match=words):
            target_settings(source, bad)
    assert target_settings(source, f"path:{source.home}", collection="copy").collection == "copy"
    server = target_settings(source, "http://qdrant:6333", api_key="k")
    assert server.qdrant_url == "http://qdrant:6333" and server.qdrant_api_key.get_secret_value() == "k"

    with pytest.raises(ServiceUnavailableError, match="Cannot reach"):
        migrate_collection(source, target_settings(source, "http://127.0.0.1:9"), progress=False)
    with pytest.raises(ChatIRError, match="no embedded store"):
        migrate_collection(Settings(home=tmp_path / "empty"), target_settings(source, f"path:{tmp_path}/t"))
    with pytest.raises(ChatIRError, match="no collection 'nope'"):
        migrate_collection(
            source.model_copy(update={"collection": "nope"}), target_settings(source, f"path:{tmp_path}/t")
        )


def test_an_embedded_source_held_by_another_client_is_a_clear_error(source, model, tmp_path):
    held = ImageIndex(source, model.model_id, model.dim, progress=False)  # as a running service holds it
    with held, pytest.raises(ServiceUnavailableError, match="in use by another process"):
        migrate_collection(source, target_settings(source, f"path:{tmp_path / 't'}"), progress=False)
    assert not (tmp_path / "t").exists()  # nothing created before the source was open

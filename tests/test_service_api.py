"""The retriever service's HTTP API (``create_app``) on a tiny CLIP and the embedded store, via TestClient.

Images are made with PIL in two visibility groups; ranking is checked against exact cosine similarities
computed with the same model directly.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from chatir.dialog import Dialog
from chatir.settings import Settings

GROUP_A, GROUP_B = "C-team-a", "C-team-b"
CAPTION = "a red square on a white wall"
THUMB_SIZE = 64


def _noise_image(path: Path, seed: int, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _wait_job(client: TestClient, job_id: str, headers: dict[str, str] | None = None) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/index/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def world(tiny_clip_dir, tmp_path_factory):
    """A service on a fresh CHATIR_HOME, its TestClient, and the image files per group."""
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    root = tmp_path_factory.mktemp("service-api")
    settings = Settings(
        home=root / "home",
        model=str(tiny_clip_dir),
        device="cpu",
        thumbnail_size=THUMB_SIZE,
        index_roots=[root],
    )
    folder_a, folder_b = root / "team-a", root / "team-b"
    files_a = [_noise_image(folder_a / f"a{i}.png", seed=i, size=(120 + 20 * i, 90)) for i in range(4)]
    files_b = [_noise_image(folder_b / f"b{i}.jpg", seed=100 + i, size=(64, 96)) for i in range(3)]
    (folder_a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"definitely not a png")
    with RetrieverService.open(settings) as service:
        client = TestClient(create_app(settings, service))
        yield {
            "client": client,
            "service": service,
            "settings": settings,
            "root": root,
            "folders": {GROUP_A: folder_a, GROUP_B: folder_b},
            "files": {GROUP_A: files_a, GROUP_B: files_b},
            "jobs": {},
        }


@pytest.fixture(scope="module")
def indexed(world):
    """Both folders indexed through ``POST /v1/index`` jobs; returns the finished jobs."""
    client = world["client"]
    for group, tag in ((GROUP_A, "warm"), (GROUP_B, "cold")):
        response = client.post(
            "/v1/index",
            json={
                "paths": [str(world["folders"][group])],
                "allowed": [group],
                "tags": [tag],
                "source": group,
            },
        )
        assert response.status_code == 202, response.text
        assert response.json()["state"] in ("queued", "running", "done")
        world["jobs"][group] = _wait_job(client, response.json()["id"])
    return world


def _ids_by_path(service) -> dict[str, str]:
    return {record.uri: record.id for record in service.index.iter_records()}


def _exact_order(service, dialog: Dialog, paths: list[Path]) -> tuple[list[str], np.ndarray]:
    """Image ids ranked by exact cosine to the dialog, computed with the model directly."""
    from retriever_service.models import load_image

    model = service.model
    images = [load_image(p).image for p in paths]
    image_vectors = model.encode_images(images)
    query = model.encode_dialogs([dialog])[0]
    cosines = image_vectors @ query
    ids = _ids_by_path(service)
    order = np.argsort(-cosines)
    return [ids[str(paths[i])] for i in order], cosines[order]


def test_index_job_reports_progress_added_and_bad_files(indexed):
    job_a, job_b = indexed["jobs"][GROUP_A], indexed["jobs"][GROUP_B]
    assert job_a["state"] == "done", job_a
    assert (job_a["added"], job_a["total"], job_a["done"]) == (4, 5, 5)
    assert [Path(s["path"]).name for s in job_a["skipped"]] == ["broken.png"]
    assert job_a["skipped"][0]["reason"]
    assert job_b["state"] == "done" and job_b["added"] == 3 and job_b["skipped"] == []
    assert indexed["client"].get("/readyz").json()["images"] == 7


def test_search_ranks_by_exact_cosine_and_fills_hits(indexed):
    client, service = indexed["client"], indexed["service"]
    paths = indexed["files"][GROUP_A] + indexed["files"][GROUP_B]
    dialog = Dialog(caption=CAPTION, rounds=[{"question": "is it outdoors?", "answer": "no"}])
    expected_ids, expected_scores = _exact_order(service, dialog, paths)

    response = client.post("/v1/search", json={"dialog": dialog.model_dump(), "k": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == service.model_id and body["took_ms"] >= 0
    hits = body["hits"]
    assert [h["id"] for h in hits] == expected_ids
    np.testing.assert_allclose([h["score"] for h in hits], expected_scores, atol=1e-3)
    first = hits[0]
    assert first["thumbnail_url"] == f"/v1/images/{first['id']}/thumbnail"
    assert first["uri"] in {str(p) for p in paths}
    assert first["width"] and first["height"] and first["mime"] in ("image/png", "image/jpeg")
    assert first["text"] == Path(first["uri"]).stem and first["vector"] is None


def test_search_with_vectors_returns_the_stored_image_embeddings(indexed):
    from retriever_service.models import load_image

    body = (
        indexed["client"]
        .post("/v1/search", json={"dialog": {"caption": CAPTION}, "k": 2, "with_vectors": True})
        .json()
    )
    model = indexed["service"].model
    assert len(body["hits"]) == 2 and all(len(hit["vector"]) == model.dim for hit in body["hits"])
    for hit in body["hits"]:
        direct = model.encode_images([load_image(hit["uri"]).image])[0]
        np.testing.assert_allclose(hit["vector"], direct, atol=1e-4)


def test_search_vectors_as_base64_are_the_same_floats_exactly(indexed):
    """vector_encoding="base64" (what the agent asks for) carries each embedding as little-endian float32 bytes:
    bit for bit the list form's values; the list stays empty. An unknown encoding is a 422."""
    from agent.vectors import unpack

    client = indexed["client"]
    request = {"dialog": {"caption": CAPTION}, "k": 3, "with_vectors": True}
    floats = client.post("/v1/search", json=request).json()["hits"]
    packed = client.post("/v1/search", json={**request, "vector_encoding": "base64"}).json()["hits"]
    assert [h["id"] for h in packed] == [h["id"] for h in floats] and len(packed) == 3
    for as_list, as_bytes in zip(floats, packed, strict=True):
        assert as_bytes["vector"] is None and as_list["vector_base64"] is None
        np.testing.assert_array_equal(unpack(as_bytes["vector_base64"]), np.float32(as_list["vector"]))
    bad = client.post("/v1/search", json={**request, "vector_encoding": "float16"})
    assert bad.status_code == 422 and "vector_encoding" in bad.text


def test_a_pool_is_the_search_as_ids_scores_and_one_matrix(indexed):
    """POST /v1/search/pool ranks exactly as /v1/search (same ids, scores and stored embeddings, bit for bit),
    in the caller's scope, without building a hit per image."""
    from agent.vectors import unpack, unpack_matrix

    client = indexed["client"]
    for scope in ({}, {"filter": {"allowed": [GROUP_A]}}, {"filter": {"allowed": [GROUP_B]}, "k": 2}):
        request = {"dialog": {"caption": CAPTION}, "k": 4, **scope}
        hits = client.post("/v1/search", json={**request, "with_vectors": True, "vector_encoding": "base64"})
        pool = client.post("/v1/search/pool", json=request)
        assert pool.status_code == 200, pool.text
        hits, body = hits.json()["hits"], pool.json()
        assert hits and body["ids"] == [h["id"] for h in hits]
        assert body["scores"] == [h["score"] for h in hits]
        matrix = unpack_matrix(body["vectors_base64"], len(body["ids"]), body["dim"])
        np.testing.assert_array_equal(matrix, np.stack([unpack(h["vector_base64"]) for h in hits]))
    allowed_a = client.post(
        "/v1/search/pool", json={"dialog": {"caption": CAPTION}, "filter": {"allowed": [GROUP_A]}}
    )
    visible_a = {r.id for r in indexed["service"].index.iter_records() if GROUP_A in r.allowed}
    assert (
        set(allowed_a.json()["ids"]) == visible_a
    )  # k defaults to 1,000 (at most 5,000): everything in scope, nothing else
    nothing = client.post("/v1/search/pool", json={"dialog": {"caption": CAPTION}, "filter": {"allowed": []}})
    assert nothing.json()["ids"] == [] and nothing.json()["vectors_base64"] == ""
    assert client.post("/v1/search/pool", json={"dialog": {"caption": CAPTION}, "k": 5001}).status_code == 422


def test_a_lookup_shows_only_what_the_scope_admits(indexed):
    """POST /v1/images/lookup returns the hits of known ids in the order asked; an id outside the filter, an
    excluded one, an unknown or malformed one is left out alike (never a wider view than a search)."""
    client, service = indexed["client"], indexed["service"]
    records = list(service.index.iter_records())
    in_a = [r.id for r in records if GROUP_A in r.allowed and GROUP_B not in r.allowed]
    in_b = [r.id for r in records if GROUP_B in r.allowed and GROUP_A not in r.allowed]
    assert len(in_a) >= 2 and in_b
    asked = [in_a[1], in_b[0], "0" * 32, "not-an-id", in_a[0]]
    scoped = {"allowed": [GROUP_A]}
    body = client.post("/v1/images/lookup", json={"ids": asked, "filter": scoped}).json()
    assert [h["id"] for h in body["hits"]] == [in_a[1], in_a[0]]
    assert all(h["score"] == 0.0 and h["vector"] is None for h in body["hits"])
    search = client.post(
        "/v1/search", json={"dialog": {"caption": CAPTION}, "k": 50, "filter": scoped}
    ).json()
    by_id = {h["id"]: h for h in search["hits"]}
    for hit in body["hits"]:  # the same hit a search in that scope shows, but for the score
        assert hit == {**by_id[hit["id"]], "score": 0.0}
    excluded = client.post(
        "/v1/images/lookup", json={"ids": asked, "filter": scoped, "exclude_ids": [in_a[0]]}
    )
    assert [h["id"] for h in excluded.json()["hits"]] == [in_a[1]]
    assert (
        client.post("/v1/images/lookup", json={"ids": asked, "filter": {"allowed": []}}).json()["hits"] == []
    )
    unscoped = client.post("/v1/images/lookup", json={"ids": asked}).json()["hits"]
    assert [h["id"] for h in unscoped] == [in_a[1], in_b[0], in_a[0]]  # trusted callers (no filter) see all
    too_many = client.post("/v1/images/lookup", json={"ids": ["0" * 32] * 1001})
    assert too_many.status_code == 422


def test_a_pool_without_vectors_names_its_space_and_the_vectors_call_fills_them_in_scope(indexed):
    """POST /v1/search/pool with with_vectors=false gives the same ids and scores and no matrix; its space is
    stable; POST /v1/images/vectors returns, for the ids its scope admits and in the order asked, the very
    rows the pool would have carried, and leaves out unknown, malformed, excluded and out-of-scope ids alike."""
    from agent.vectors import unpack_matrix

    client, service = indexed["client"], indexed["service"]
    request = {"dialog": {"caption": CAPTION}, "k": 6}
    whole, bare = (
        client.post("/v1/search/pool", json={**request, "with_vectors": flag}).json()
        for flag in (True, False)
    )
    assert bare["ids"] == whole["ids"] and bare["scores"] == whole["scores"] and len(bare["ids"]) == 6
    assert bare["vectors_base64"] == "" and whole["vectors_base64"]
    assert bare["space"] == whole["space"] and len(bare["space"]) == 16
    rows = dict(zip(whole["ids"], unpack_matrix(whole["vectors_base64"], 6, whole["dim"]), strict=True))

    records = list(service.index.iter_records())
    in_a = [r.id for r in records if GROUP_A in r.allowed and GROUP_B not in r.allowed]
    in_b = [r.id for r in records if GROUP_B in r.allowed and GROUP_A not in r.allowed]
    asked = [in_a[1], in_b[0], "0" * 32, "not-an-id", in_a[0], in_a[1]]
    scoped = {"allowed": [GROUP_A]}
    body = client.post("/v1/images/vectors", json={"ids": asked, "filter": scoped}).json()
    assert body["ids"] == [in_a[1], in_a[0]] and body["space"] == bare["space"]
    matrix = unpack_matrix(body["vectors_base64"], 2, body["dim"])
    np.testing.assert_array_equal(matrix, service.index.get_vectors([in_a[1], in_a[0]]))
    for image_id, row in zip(body["ids"], matrix, strict=True):
        if image_id in rows:
            np.testing.assert_array_equal(row, rows[image_id])
    excluded = client.post(
        "/v1/images/vectors", json={"ids": asked, "filter": scoped, "exclude_ids": [in_a[0]]}
    )
    assert excluded.json()["ids"] == [in_a[1]]
    nothing = client.post("/v1/images/vectors", json={"ids": asked, "filter": {"allowed": []}}).json()
    assert nothing["ids"] == [] and nothing["vectors_base64"] == ""
    assert client.post("/v1/images/vectors", json={"ids": asked}).json()["ids"] == [in_a[1], in_b[0], in_a[0]]
    assert client.post("/v1/images/vectors", json={"ids": ["0" * 32] * 5001}).status_code == 422


async def test_the_clients_and_the_agents_searcher_read_a_pool_and_look_up_through_the_service(indexed):
    """tools.client (async and blocking) and agent.ServiceSearcher against the real app: the pool and the
    lookup round-trip, scoped, and the searcher's pool is the search's own ranking."""
    import httpx

    from agent.search import ServiceSearcher
    from chatir.schemas import LookupRequest, PoolRequest, SearchFilter
    from tools.client import AsyncRetrieverClient, RetrieverClient
    from tools.scope import SearchScope

    app, scoped = indexed["client"].app, SearchFilter(allowed=[GROUP_A])
    request = PoolRequest(dialog=Dialog(caption=CAPTION), k=3, filter=scoped)
    async with AsyncRetrieverClient("http://service", transport=httpx.ASGITransport(app=app), retries=0) as c:
        pool = await c.search_pool(request)
        looked_up = await c.lookup(LookupRequest(ids=list(reversed(pool.ids)), filter=scoped))
    assert len(pool.ids) == 3 and [h.id for h in looked_up.hits] == list(reversed(pool.ids))

    class ThroughTestClient(httpx.BaseTransport):  # the blocking client, over the app's TestClient
        def handle_request(self, sent: httpx.Request) -> httpx.Response:
            answer = indexed["client"].request(
                sent.method, sent.url.raw_path.decode(), content=sent.read(), headers=sent.headers
            )
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    blocking = RetrieverClient("http://service", transport=ThroughTestClient(), retries=0)
    searcher, scope = ServiceSearcher(blocking), SearchScope(allowed=[GROUP_A])
    bare = searcher.pool(Dialog(caption=CAPTION), k=3, scope=scope)
    full = searcher.search(Dialog(caption=CAPTION), k=3, scope=scope, with_vectors=True)
    assert bare.ids == pool.ids == [h.id for h in full] and bare.vectors.shape == (
        3,
        indexed["service"].model.dim,
    )
    assert [h.id for h in searcher.lookup(bare.ids, scope=SearchScope(allowed=[GROUP_B]))] == []


async def test_a_searcher_with_a_vector_cache_gets_the_same_pool_and_fetches_each_vector_once(indexed):
    """agent.ServiceSearcher with a VectorCache, against the real app: the same pool (ids, scores, vectors,
    bit for bit) as without it in every scope; the first pool fetches the vectors it lacks, the next one
    none; the async client's vectors call agrees."""
    import httpx

    from agent.search import ServiceSearcher
    from agent.vector_cache import VectorCache
    from chatir.schemas import VectorsRequest
    from tools.client import AsyncRetrieverClient, RetrieverClient
    from tools.scope import SearchScope

    paths: list[str] = []

    class ThroughTestClient(httpx.BaseTransport):
        def handle_request(self, sent: httpx.Request) -> httpx.Response:
            paths.append(sent.url.path)
            answer = indexed["client"].request(
                sent.method, sent.url.raw_path.decode(), content=sent.read(), headers=sent.headers
            )
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    blocking = RetrieverClient("http://service", transport=ThroughTestClient(), retries=0)
    plain, cached = ServiceSearcher(blocking), ServiceSearcher(blocking, vector_cache=VectorCache(1000))
    dialog, seen = Dialog(caption=CAPTION), set()
    for scope in (
        SearchScope(allowed=[GROUP_A]),
        SearchScope(allowed=[GROUP_A, GROUP_B]),
        SearchScope(allowed=[GROUP_B]),
    ):
        expected = plain.pool(dialog, k=5, scope=scope)
        seen.update(expected.ids)
        paths.clear()
        first = cached.pool(dialog, k=5, scope=scope)
        assert paths[0] == "/v1/search/pool" and set(paths[1:]) <= {"/v1/images/vectors"}
        paths.clear()
        again = cached.pool(dialog, k=5, scope=scope)
        assert paths == ["/v1/search/pool"]  # every vector is kept now
        for pool in (first, again):
            assert pool.ids == expected.ids and len(pool.ids) > 0
            np.testing.assert_array_equal(pool.scores, expected.scores)
            np.testing.assert_array_equal(pool.vectors, expected.vectors)
    assert cached.vector_cache is not None and len(cached.vector_cache) == len(seen)

    app = indexed["client"].app
    async with AsyncRetrieverClient("http://service", transport=httpx.ASGITransport(app=app), retries=0) as c:
        body = await c.vectors(VectorsRequest(ids=expected.ids[:2]))
    assert body.ids == expected.ids[:2]


def test_encode_matches_the_model(indexed):
    dialog = Dialog(caption=CAPTION, rounds=[{"question": "what color?", "answer": "red"}])
    body = indexed["client"].post("/v1/encode", json={"dialog": dialog.model_dump()}).json()
    model = indexed["service"].model
    assert body["text"] == model.dialog_text(dialog)
    np.testing.assert_allclose(body["vector"], model.encode_dialogs([dialog])[0], atol=1e-5)
    assert body["model"] == model.model_id


def test_encode_texts_matches_the_model_and_refuses_bad_batches(indexed):
    from chatir.schemas import MAX_ENCODE_TEXTS

    client, model = indexed["client"], indexed["service"].model
    texts = ["what color? red", "a blue square", "what color? red"]
    body = client.post("/v1/encode/texts", json={"texts": texts}).json()
    assert body["model"] == model.model_id and len(body["vectors"]) == 3
    np.testing.assert_allclose(body["vectors"], model.encode_texts(texts), atol=1e-5)
    for bad in ([], [""], ["x"] * (MAX_ENCODE_TEXTS + 1), ["x" * 2001], [3]):
        response = client.post("/v1/encode/texts", json={"texts": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]


def test_the_agent_embeds_answers_with_the_service_model(indexed):
    """The questioner's default text encoder is the service's model over HTTP (same numbers, no local model)."""
    from agent.search import ServiceTextEncoder
    from retriever_service.api import create_app
    from tests.test_tools_support import live_server
    from tools.client import RetrieverClient

    with live_server(create_app(indexed["settings"], indexed["service"])) as url:
        _encode_over_http(ServiceTextEncoder(RetrieverClient(url, retries=0)), indexed["service"])


def _encode_over_http(encoder, service) -> None:
    texts = [f"question {i} answer {i}" for i in range(1500)]  # more than one request's worth
    vectors = encoder.encode_texts(texts)
    assert vectors.shape == (1500, service.model.dim)
    np.testing.assert_allclose(
        vectors[[0, 1499]], service.model.encode_texts([texts[0], texts[1499]]), atol=1e-5
    )
    assert encoder.model_id == encoder.current_model() == service.model_id


def test_filters_and_exclusions_hold_inside_the_query(indexed):
    client = indexed["client"]
    ids = _ids_by_path(indexed["service"])
    ids_a = {ids[str(p)] for p in indexed["files"][GROUP_A]}
    ids_b = {ids[str(p)] for p in indexed["files"][GROUP_B]}

    def search(**extra):
        response = client.post("/v1/search", json={"dialog": {"caption": CAPTION}, "k": 10, **extra})
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["hits"]]

    assert set(search(filter={"allowed": [GROUP_A]})) == ids_a
    assert set(search(filter={"allowed": [GROUP_B, "public"]})) == ids_b
    assert search(filter={"allowed": ["C-nobody"]}) == []
    assert set(search(filter={"tags": ["cold"]})) == ids_b
    assert set(search(filter={"sources": [GROUP_A], "tags": ["cold"]})) == set()
    unfiltered = search()
    excluded = unfiltered[:2]
    remaining = search(exclude_ids=excluded)
    assert remaining == unfiltered[2:]
    within_a = search(filter={"allowed": [GROUP_A]}, exclude_ids=excluded, k=2)
    assert len(within_a) == 2 and set(within_a) <= ids_a - set(excluded)


def test_images_thumbnails_and_mime(indexed):
    client = indexed["client"]
    ids = _ids_by_path(indexed["service"])
    png, jpg = indexed["files"][GROUP_A][3], indexed["files"][GROUP_B][0]  # 180x90 and 64x96

    original = client.get(f"/v1/images/{ids[str(png)]}")
    assert original.status_code == 200 and original.headers["content-type"] == "image/png"
    assert original.content == png.read_bytes()
    assert client.get(f"/v1/images/{ids[str(jpg)]}").headers["content-type"] == "image/jpeg"

    thumb = client.get(f"/v1/images/{ids[str(png)]}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(thumb.content))
    assert image.format == "JPEG" and image.size == (THUMB_SIZE, THUMB_SIZE // 2)
    assert (indexed["settings"].thumbnails_dir / f"{ids[str(png)]}_{THUMB_SIZE}.jpg").is_file()  # cached

    small = Image.open(io.BytesIO(client.get(f"/v1/images/{ids[str(jpg)]}/thumbnail?size=48").content))
    assert small.size == (32, 48)
    assert client.get(f"/v1/images/{ids[str(jpg)]}/thumbnail?size=4").status_code == 422


def test_missing_things_are_json_404(indexed):
    client = indexed["client"]
    for path in (
        "/v1/images/" + "0" * 32,
        "/v1/images/" + "0" * 32 + "/thumbnail",
        "/v1/images/nope",
        "/v1/index/jobs/nope",
        "/v1/nowhere",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error", "detail"} and response.json()["error"]
    assert client.delete("/v1/images/" + "0" * 32).status_code == 404


def test_bad_requests_are_422_naming_the_field(indexed):
    client = indexed["client"]
    cases = {
        "dialog.caption": {"dialog": {"caption": ""}},
        "dialog.rounds.0.answer": {"dialog": {"caption": "x", "rounds": [{"question": "q"}]}},
        "k": {"dialog": {"caption": "x"}, "k": 0},
        "dialog": {"k": 3},
    }
    for field, body in cases.items():
        response = client.post("/v1/search", json=body)
        assert response.status_code == 422, field
        error = response.json()
        assert field in error["error"] and error["detail"][0]["field"] == field
    broken = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["field"] == "body"
    missing = client.post("/v1/index", json={"paths": [str(indexed["root"] / "no-such-folder")]})
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "paths.0"


def test_oversize_bodies_are_413(indexed, tiny_clip_dir, tmp_path):
    from retriever_service.api import create_app

    client = indexed["client"]
    huge = b'{"dialog": {"caption": "' + b"x" * (3 << 20) + b'"}}'
    response = client.post("/v1/search", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(4):
            yield b" " * (1 << 20)

    streamed = client.post("/v1/encode", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]

    small = Settings(home=tmp_path, model=str(tiny_clip_dir), max_upload_mb=1)
    upload_client = TestClient(create_app(small, indexed["service"]))
    big_upload = upload_client.post(
        "/v1/index", files=[("files", ("big.png", b"\0" * (2 << 20), "image/png"))]
    )
    assert big_upload.status_code == 413 and big_upload.json()["error"]
    assert not list((tmp_path / "uploads").glob("*/big.png"))


def test_upload_index_fetch_and_delete(indexed, tmp_path):
    client, settings = indexed["client"], indexed["settings"]
    upload = _noise_image(tmp_path / "my holiday.png", seed=999, size=(50, 40))
    response = client.post(
        "/v1/index",
        files=[("files", ("../../my holiday.png", upload.read_bytes(), "image/png"))],
        data={"allowed": ["C-uploads"], "tags": ["trip"], "text": "sunset at the beach"},
    )
    assert response.status_code == 202, response.text
    job = _wait_job(client, response.json()["id"])
    assert job["state"] == "done" and job["added"] == 1, job

    hits = client.post(
        "/v1/search", json={"dialog": {"caption": "holiday"}, "filter": {"allowed": ["C-uploads"]}}
    ).json()["hits"]
    assert len(hits) == 1 and hits[0]["source"] == "upload" and hits[0]["tags"] == ["trip"]
    assert hits[0]["text"] == "sunset at the beach"
    stored = Path(hits[0]["uri"])
    assert stored.is_relative_to(settings.home / "uploads") and stored.name == "my_holiday.png"
    assert client.get(f"/v1/images/{hits[0]['id']}").content == upload.read_bytes()
    client.get(f"/v1/images/{hits[0]['id']}/thumbnail")

    deleted = client.delete(f"/v1/images/{hits[0]['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": hits[0]["id"], "deleted": True}
    assert not stored.exists() and not list(settings.thumbnails_dir.glob(f"{hits[0]['id']}_*"))
    assert client.get(f"/v1/images/{hits[0]['id']}").status_code == 404
    assert (
        client.post(
            "/v1/search", json={"dialog": {"caption": "holiday"}, "filter": {"allowed": ["C-uploads"]}}
        ).json()["hits"]
        == []
    )

    empty = client.post("/v1/index", files=[], data={"allowed": ["x"]})
    assert empty.status_code == 422


def test_bearer_auth_guards_v1_only(indexed, tiny_clip_dir):
    from retriever_service.api import create_app

    base = indexed["settings"]
    settings = Settings(home=base.home, model=base.model, api_key="s3cret-token")
    client = TestClient(create_app(settings, indexed["service"]))
    body = {"dialog": {"caption": CAPTION}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
        response = client.post("/v1/search", json=body, headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/images/" + "0" * 32).status_code == 401  # no probing without the token
    ok = client.post("/v1/search", json=body, headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()["hits"]
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/search",
        "/v1/encode",
        "/v1/index",
        "/v1/index/jobs/{job_id}",
        "/v1/images/{image_id}",
        "/v1/images/{image_id}/thumbnail",
        "/healthz",
        "/readyz",
    } <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/index"]["post"]["requestBody"]["content"]


def test_readyz_is_503_while_the_model_cannot_load(tmp_path):
    from retriever_service.api import create_app

    settings = Settings(home=tmp_path, model=str(tmp_path / "no-such-model"), device="cpu")
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.chatir.wait_loaded(60)
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no-such-model" in ready.json()["error"]
        search = client.post("/v1/search", json={"dialog": {"caption": "x"}})
        assert search.status_code == 503 and "could not start" in search.json()["error"]


def test_readyz_is_503_when_the_index_is_unreachable(tiny_clip_dir, tmp_path):
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings = Settings(home=tmp_path, model=str(tiny_clip_dir), device="cpu")
    service = RetrieverService.open(settings)
    service.close()  # the store is gone from under the app
    client = TestClient(create_app(settings, service))
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "unavailable" in ready.json()["error"]
    search = client.post("/v1/search", json={"dialog": {"caption": "x"}})
    assert search.status_code == 503


def test_the_store_is_locked_while_the_service_holds_it(indexed):
    from retriever_service.errors import StoreLockedError
    from retriever_service.service import RetrieverService

    with pytest.raises(StoreLockedError, match="in use by another process"):
        RetrieverService.open(indexed["settings"])


def test_index_job_failure_is_reported_not_raised(indexed, monkeypatch):
    client, service = indexed["client"], indexed["service"]
    folder = indexed["root"] / "pics"
    _noise_image(folder / "x.png", seed=5, size=(40, 40))

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(type(service), "run_index", explode)
    job = _wait_job(client, client.post("/v1/index", json={"paths": [str(folder)]}).json()["id"])
    assert job["state"] == "failed" and "disk on fire" in job["error"]
    assert client.get("/readyz").status_code == 200
    shutil.rmtree(folder)


def test_closing_stops_a_running_job_and_the_next_one_resumes(tiny_clip_dir, tmp_path, monkeypatch):
    from chatir.schemas import IndexRequest
    from retriever_service.models import RetrievalModel
    from retriever_service.service import RetrieverService

    folder = tmp_path / "many"
    for i in range(6):
        _noise_image(folder / f"img{i}.png", seed=200 + i, size=(40, 30))
    original = RetrievalModel.encode_images

    def slow(self, images):
        time.sleep(0.25)
        return original(self, images)

    monkeypatch.setattr(RetrievalModel, "encode_images", slow)
    settings = Settings(
        home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu", batch_size=1, index_roots=[tmp_path]
    )
    service = RetrieverService.open(settings)
    job = service.submit_index(IndexRequest(paths=[str(folder)]))
    deadline = time.monotonic() + 30
    while service.job(job.id).done < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    service.close()
    assert time.monotonic() - started < 1.5  # did not wait for the remaining images
    stopped = service.job(job.id)
    assert stopped.state == "failed" and "submit the job again" in stopped.error

    monkeypatch.setattr(RetrievalModel, "encode_images", original)
    with RetrieverService.open(settings) as again:
        kept = again.count()
        assert 1 <= kept < 6
        report = again.run_index(IndexRequest(paths=[str(folder)]), progress=False)
        assert (report.added, report.unchanged) == (6 - kept, kept)
        assert again.count() == 6


def test_unexpected_errors_are_json_500_without_internals(indexed, monkeypatch):
    from retriever_service.api import create_app

    service = indexed["service"]

    def broken(request):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(service, "search", broken)
    client = TestClient(create_app(indexed["settings"], service), raise_server_exceptions=False)
    response = client.post("/v1/search", json={"dialog": {"caption": "x"}})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal server error",
        "detail": "RuntimeError (see the service log)",
    }
    assert client.get("/v1/search").status_code == 405 and client.get("/v1/search").json()["error"]


def test_indexing_by_path_is_confined_to_index_roots(indexed, tmp_path, monkeypatch):
    client, root = indexed["client"], indexed["root"]
    outside = tmp_path / "elsewhere"
    _noise_image(outside / "secret.png", seed=9, size=(32, 32))
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    attempts = {
        "a folder outside": str(outside),
        "a .. escape": str(root / "team-a" / ".." / ".." / outside.relative_to(outside.anchor)),
        "a symbolic link out": str(root / "link-out"),
        "a system file": "/etc/passwd",
    }
    before = indexed["service"].count()
    for what, path in attempts.items():
        response = client.post("/v1/index", json={"paths": [str(root / "team-a"), path]})
        assert response.status_code == 403, what
        assert "paths.1" in response.json()["error"] and "CHATIR_INDEX_ROOTS" in response.json()["error"], (
            what
        )
    assert indexed["service"].count() == before  # nothing was queued, not even the allowed first path

    service = indexed["service"]
    monkeypatch.setattr(service, "settings", service.settings.model_copy(update={"index_roots": []}))
    response = client.post("/v1/index", json={"paths": [str(root / "team-a")]})
    assert response.status_code == 403
    assert "Upload the files instead" in response.json()["error"]
    fresh = _noise_image(tmp_path / "up.png", seed=77, size=(24, 24)).read_bytes()
    upload = client.post("/v1/index", files=[("files", ("up.png", fresh))])
    assert upload.status_code == 202  # uploads land under CHATIR_HOME/uploads, always allowed
    assert _wait_job(client, upload.json()["id"])["state"] == "done"


def test_image_fetches_are_scoped_when_the_caller_sends_its_groups(indexed):
    client, service = indexed["client"], indexed["service"]
    ids = _ids_by_path(service)
    image_a = ids[str(indexed["files"][GROUP_A][0])]
    for path in (f"/v1/images/{image_a}", f"/v1/images/{image_a}/thumbnail"):
        assert client.get(path).status_code == 200  # trusted caller, no scope
        assert client.get(path, params={"allowed": [GROUP_A]}).status_code == 200
        assert client.get(path, params={"allowed": ["public", GROUP_A]}).status_code == 200
        hidden = client.get(path, params={"allowed": [GROUP_B, "public"]})
        assert hidden.status_code == 404
        missing = client.get(path.replace(image_a, "0" * 32), params={"allowed": [GROUP_B]})
        assert hidden.json()["error"].replace(image_a, "ID") == missing.json()["error"].replace(
            "0" * 32, "ID"
        )


def test_index_roots_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATIR_INDEX_ROOTS", f"{tmp_path / 'a'}:~/pictures:")
    settings = Settings()
    assert settings.index_roots == [tmp_path / "a", Path("~/pictures").expanduser()]
    monkeypatch.delenv("CHATIR_INDEX_ROOTS")
    assert Settings().index_roots == []


def test_links_out_of_an_indexed_folder_are_not_followed_and_replaced_files_are_not_served(
    tiny_clip_dir, tmp_path
):
    """#13.1: a link inside a root to a file outside is skipped; a file replaced after indexing (here by a
    link to a system file) is no longer served under its id; unusable paths are 400s, not 500s."""
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    inside = _noise_image(root / "inside.png", seed=1, size=(40, 30))
    secret = _noise_image(outside / "secret.png", seed=2, size=(40, 30))
    (root / "link_file.png").symlink_to(secret)
    settings = Settings(home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu", index_roots=[root])
    with RetrieverService.open(settings) as service:
        client = TestClient(create_app(settings, service))
        job = _wait_job(client, client.post("/v1/index", json={"paths": [str(root)]}).json()["id"])
        assert job["state"] == "done"
        assert any("outside the indexed folder" in s["reason"] for s in job["skipped"])
        ids = _ids_by_path(service)
        assert str(inside) in ids and not any("secret" in p or "link_file" in p for p in ids)

        image_id = ids[str(inside)]
        assert client.get(f"/v1/images/{image_id}").content == inside.read_bytes()
        inside.unlink()
        inside.symlink_to("/etc/passwd")
        for path in (f"/v1/images/{image_id}", f"/v1/images/{image_id}/thumbnail?size=17"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert b"root:" not in response.content
        inside.unlink()
        inside.write_bytes(b"other bytes now")
        assert client.get(f"/v1/images/{image_id}").status_code == 404

        for bad in ("bad\x00path", "~nosuchuser-chatir/x.png"):
            response = client.post("/v1/index", json={"paths": [bad]})
            assert response.status_code in (400, 403, 422), (bad, response.status_code)
            assert response.json()["error"]


def test_rejected_uploads_do_not_stay_on_disk(tiny_clip_dir, tmp_path):
    """#13.5: an upload the indexer rejects is deleted; an accepted one stays (it is the image's file)."""
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings = Settings(home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu")
    good = _noise_image(tmp_path / "good.png", seed=5, size=(30, 30)).read_bytes()
    with RetrieverService.open(settings) as service:
        client = TestClient(create_app(settings, service))
        response = client.post(
            "/v1/index",
            files=[("files", ("notes.png", b"not an image at all")), ("files", ("good.png", good))],
        )
        job = _wait_job(client, response.json()["id"])
        assert job["state"] == "done" and job["added"] == 1 and len(job["skipped"]) == 1
        left = [p for p in service.uploads_dir.rglob("*") if p.is_file()]
        assert [p.name for p in left] == ["good.png"]


def test_search_types_are_strict_and_invisible_captions_are_blank(indexed):
    """#13.8: k must be a number and with_vectors a boolean (no "5" or 0); a caption of NUL or zero-width
    characters is as blank as "   "."""
    client = indexed["client"]
    dialog = {"caption": "a picture"}
    assert client.post("/v1/search", json={"dialog": dialog, "k": 3}).status_code == 200
    for bad in ({"k": "5"}, {"k": True}, {"with_vectors": 0}, {"with_vectors": "yes"}):
        assert client.post("/v1/search", json={"dialog": dialog, **bad}).status_code == 422, bad
    for blank in ("   ", "\x00\x00", "\u200b\u200d", "\u00a0\t"):
        response = client.post("/v1/search", json={"dialog": {"caption": blank}})
        assert response.status_code == 422 and "blank" in response.text, repr(blank)


def test_duplicate_bytes_show_each_caller_only_its_own_copy(indexed, tmp_path):
    """The same bytes posted in two channels: each channel's search shows its own copy's path, text and tags,
    never the other's (issue #13, 6)."""
    client = indexed["client"]
    data = _noise_image(tmp_path / "x.png", seed=4242, size=(40, 40)).read_bytes()

    def upload(name: str, group: str, text: str, tag: str) -> None:
        response = client.post(
            "/v1/index",
            files=[("files", (name, data, "image/png"))],
            data={"allowed": [group], "tags": [tag], "text": text},
        )
        assert response.status_code == 202, response.text
        _wait_job(client, response.json()["id"])

    upload("q3-roadmap.png", "C-private", "Q3 roadmap, do not share", "confidential")
    upload("logo.png", "C-brand", "our logo", "brand")

    def only_hit(group: str) -> dict:
        hits = client.post(
            "/v1/search", json={"dialog": {"caption": "anything"}, "filter": {"allowed": [group]}, "k": 50}
        ).json()["hits"]
        mine = [
            h for h in hits if h["text"] in ("our logo", "Q3 roadmap, do not share") or "roadmap" in h["uri"]
        ]
        assert len(mine) == 1, hits
        return mine[0]

    brand = only_hit("C-brand")
    assert brand["text"] == "our logo" and brand["tags"] == ["brand"]
    assert "roadmap" not in brand["uri"] and brand["uri"].endswith("logo.png")
    private = only_hit("C-private")
    assert private["id"] == brand["id"]
    assert private["text"] == "Q3 roadmap, do not share" and private["tags"] == ["confidential"]
    # the file a brand caller fetches is its own copy (same bytes, never the private path's)
    fetched = client.get(f"/v1/images/{brand['id']}", params={"allowed": ["C-brand"]})
    assert fetched.status_code == 200 and fetched.content == data
    client.delete(f"/v1/images/{brand['id']}")


def test_wrong_method_is_405_naming_every_method_of_the_path(indexed):
    client = indexed["client"]
    some_id = "0" * 32
    answer = client.options(f"/v1/images/{some_id}")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, DELETE" and "GET, DELETE" in answer.json()["detail"]
    assert client.put("/v1/search").headers["allow"] == "POST"


def test_unparseable_bodies_are_the_documented_422(indexed):
    client = indexed["client"]
    for body in (b'{"dialog": ', b"\xff\xfe", b"[" * 5000 + b"]" * 5000):
        answer = client.post("/v1/search", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and answer.json()["error"].startswith("invalid request: body"), body[
            :20
        ]


def test_an_upload_survives_its_folder_being_cleaned_up_under_it(tmp_path, monkeypatch):
    """A job discarding a rejected upload of the same bytes may remove the (empty) content folder between
    `mkdir` and the final rename of a new upload: the upload makes the folder again instead of failing (500)."""
    from retriever_service import uploads

    settings = Settings(home=tmp_path / "home")
    real_replace, calls = os.replace, []

    def racing_replace(source, target):
        calls.append(target)
        if len(calls) == 1:
            Path(target).parent.rmdir()  # the cleanup wins the race once
        return real_replace(source, target)

    monkeypatch.setattr(uploads.os, "replace", racing_replace)
    path, size = uploads.save_upload(settings, "same.png", io.BytesIO(b""))
    assert len(calls) == 2 and size == 0 and path.is_file()


def test_an_upload_survives_its_folder_vanishing_inside_mkdir(tmp_path, monkeypatch):
    """The same race one step earlier: `mkdir(exist_ok=True)` finds the content folder there, the cleanup
    removes it, and mkdir's own check then raises FileExistsError. The upload retries instead of failing (the
    service fuzz test found this as a 500)."""
    from retriever_service import uploads

    settings = Settings(home=tmp_path / "home")
    real_mkdir, raced = os.mkdir, []

    def racing_mkdir(path, mode=0o777):
        if Path(path).parent.name == "uploads" and not raced:
            raced.append(path)
            raise FileExistsError(17, "File exists", str(path))  # it was there; it is gone by the check
        return real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    path, size = uploads.save_upload(settings, "same.png", io.BytesIO(b"bytes"))
    assert len(raced) == 1 and size == 5 and path.read_bytes() == b"bytes"

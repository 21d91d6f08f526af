"""The formats teams share (HEIC, AVIF, SVG, PDF, animations, multi-page TIFF, CMYK, 16-bit): decoded by
retriever_service/decode.py, then round-tripped through a real service on a tiny CLIP -- indexed from a folder
and as uploads, found by search, given thumbnails -- and the broken ones refused with their reason.

Every file is written by the libraries in the test (tests/formats_support.py); nothing binary is checked in.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from chatir.settings import Settings
from retriever_service.decode import MAX_SVG_BYTES, MAX_VECTOR_RENDER_SIDE, DecodeError, open_rgb
from retriever_service.models import ImageFailure, load_image
from tests.formats_support import BROKEN, GOOD, centre_colour, close, write_broken, write_good

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
THUMB = 64


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> tuple[dict, dict]:
    root = tmp_path_factory.mktemp("formats")
    return write_good(root / "good"), write_broken(root / "broken")


# --- decoding -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [s.name for s in GOOD])
def test_each_format_decodes_to_its_first_frame_in_rgb(samples, name):
    path, sample = samples[0][name]
    opened = open_rgb(path, max_side=768)
    assert opened.image.mode == "RGB" and opened.format == sample.format
    assert (opened.width, opened.height) == (48, 32)  # the picture's own size (a vector's intrinsic size)
    colour = centre_colour(opened.image)
    assert close(colour, sample.colour, sample.tolerance), f"{name}: {colour} != {sample.colour}"
    decoded = load_image(path, max_side=768)
    assert not isinstance(decoded, ImageFailure) and decoded.mime


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_file_is_refused_with_its_reason(samples, name):
    path, reason = samples[1][name]
    with pytest.raises(DecodeError) as caught:
        open_rgb(path)
    assert reason in str(caught.value)
    failure = load_image(path)
    assert isinstance(failure, ImageFailure) and reason in failure.reason


def test_vectors_render_at_the_asked_size_and_never_beyond_the_bound(tmp_path):
    huge = tmp_path / "huge.svg"
    huge.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="1000000" height="500000"><rect width="9" height="9"/></svg>'
    )
    assert open_rgb(huge, max_side=300).image.size == (300, 150)
    assert max(open_rgb(huge, max_side=100_000).image.size) == MAX_VECTOR_RENDER_SIDE
    wide = tmp_path / "wide.svg"
    wide.write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100000 1"/>')
    assert open_rgb(wide, max_side=256).image.size == (256, 1)


def test_svg_input_size_entities_and_nested_documents_are_bounded(tmp_path):
    big = tmp_path / "big.svg"
    big.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><!--' + b"x" * MAX_SVG_BYTES + b"--></svg>")
    with pytest.raises(DecodeError, match="SVG too large"):
        open_rgb(big)
    laughs = tmp_path / "laughs.svg"
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    laughs.write_text(
        f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY l0 "ha">{entities}]>'
        '<svg xmlns="http://www.w3.org/2000/svg"><text>&l9;</text></svg>'
    )
    with pytest.raises(DecodeError, match="billion laughs"):
        open_rgb(laughs)
    nested = tmp_path / "nested.svg"
    nested.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/svg+xml;base64,PHN2Zy8+"/></svg>'
    )
    with pytest.raises(DecodeError, match="embeds another SVG"):
        open_rgb(nested)
    linked = tmp_path / "linked.svg"
    linked.write_text(
        '<?xml-stylesheet href="https://example.com/a.css"?><svg xmlns="http://www.w3.org/2000/svg"/>'
    )
    with pytest.raises(DecodeError, match="links a style sheet"):
        open_rgb(linked)
    not_svg = tmp_path / "page.svg"
    not_svg.write_text("<html><body>hi</body></html>")
    with pytest.raises(DecodeError, match="root element is <html>"):
        open_rgb(not_svg)


def test_an_unsafe_svg_never_reaches_the_renderer(samples, monkeypatch):
    import resvg_py

    def renderer_called(**_kwargs):
        raise AssertionError("an unsafe SVG was handed to the renderer")

    monkeypatch.setattr(resvg_py, "svg_to_bytes", renderer_called)
    for name in ("href.svg", "remote.svg", "css.svg", "entity.svg"):
        with pytest.raises(DecodeError, match="unsafe SVG"):
            open_rgb(samples[1][name][0])


def test_pdfs_decode_correctly_from_many_threads_at_once(samples):
    path, sample = samples[0]["slides.pdf"]
    colours: list[tuple[int, int, int]] = []

    def decode() -> None:
        for _ in range(5):
            colours.append(centre_colour(open_rgb(path, max_side=200).image))

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(colours) == 30 and all(close(c, sample.colour, sample.tolerance) for c in colours)


def test_cmyk_with_an_icc_profile_goes_through_colour_management(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = tmp_path / "tagged.png"
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tagged, icc_profile=srgb)
    assert close(centre_colour(open_rgb(tagged).image), (10, 200, 30), 2)
    mismatched = tmp_path / "mismatched.tif"  # an RGB profile on CMYK data: converted without the profile
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(mismatched, "TIFF", icc_profile=srgb)
    assert close(centre_colour(open_rgb(mismatched).image), (255, 0, 255), 2)


# --- through the service: folders, uploads, search, thumbnails --------------------------------------------
def _wait_job(client: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/index/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def service(tiny_clip_dir, tmp_path_factory, samples):
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    root = tmp_path_factory.mktemp("formats-service")
    settings = Settings(
        _env_file=None,
        home=root / "home",
        model=str(tiny_clip_dir),
        device="cpu",
        qdrant_url=None,
        api_key=None,
        thumbnail_size=THUMB,
        index_roots=[samples[0]["logo.svg"][0].parent.parent],
    )
    with RetrieverService.open(settings) as opened:
        client = TestClient(create_app(settings, opened))
        folders = [str(samples[0]["logo.svg"][0].parent), str(samples[1]["href.svg"][0].parent)]
        job = client.post("/v1/index", json={"paths": folders, "allowed": ["C-design"]})
        assert job.status_code == 202, job.text
        yield client, opened, _wait_job(client, job.json()["id"])


def test_a_folder_of_every_format_is_indexed_and_the_broken_ones_are_listed(service, samples):
    _, opened, job = service
    assert job["state"] == "done", job
    assert job["added"] == len(GOOD)
    reasons = {Path(s["path"]).name: s["reason"] for s in job["skipped"]}
    assert set(reasons) == set(BROKEN)
    for name, (_, reason) in samples[1].items():
        assert reason in reasons[name], (name, reasons[name])
    mimes = {Path(r.uri).name: r.mime for r in opened.index.iter_records()}
    assert mimes["photo.heic"] == "image/heic" and mimes["logo.svg"] == "image/svg+xml"
    assert mimes["slides.pdf"] == "application/pdf" and mimes["photo.avif"] == "image/avif"


def test_every_format_is_found_by_search_with_the_score_of_its_decoded_picture(service, samples):
    client, opened, _ = service
    from chatir.dialog import Dialog
    from retriever_service.index.indexer import DECODE_MAX_SIDE

    dialog = Dialog(caption="a flat coloured logo", rounds=[])
    response = client.post(
        "/v1/search",
        json={"dialog": dialog.model_dump(), "k": 50, "filter": {"allowed": ["C-design"]}},
    )
    assert response.status_code == 200, response.text
    scores = {hit["id"]: hit["score"] for hit in response.json()["hits"]}
    ids = {Path(r.uri).name: r.id for r in opened.index.iter_records()}
    names = sorted(samples[0])
    assert set(names) <= set(ids) and len(scores) == len(names)
    pictures = [open_rgb(samples[0][name][0], max_side=DECODE_MAX_SIDE).image for name in names]
    expected = opened.model.encode_images(pictures) @ opened.model.encode_dialogs([dialog])[0]
    got = np.array([scores[ids[name]] for name in names])
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_every_format_gets_a_jpeg_thumbnail_of_its_first_frame_and_its_original(service, samples):
    client, opened, _ = service
    ids = {Path(r.uri).name: r.id for r in opened.index.iter_records()}
    for name, (path, sample) in samples[0].items():
        response = client.get(f"/v1/images/{ids[name]}/thumbnail")
        assert response.status_code == 200, (name, response.text)
        thumb = Image.open(io.BytesIO(response.content))
        assert thumb.format == "JPEG" and max(thumb.size) <= THUMB, (name, thumb.size)
        assert close(centre_colour(thumb), sample.colour, sample.tolerance + 8), (name, centre_colour(thumb))
        original = client.get(f"/v1/images/{ids[name]}")
        assert original.status_code == 200 and original.content == path.read_bytes()
    svg = client.get(f"/v1/images/{ids['logo.svg']}")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert (
        "sandbox" in svg.headers["content-security-policy"]
        and svg.headers["x-content-type-options"] == "nosniff"
    )


def test_uploads_of_new_formats_are_indexed_and_broken_ones_discarded(service, samples):
    client, opened, _ = service
    heic_bytes = samples[0]["photo.heic"][0].read_bytes() + b"\x00"  # other bytes: a new image
    unsafe = samples[1]["href.svg"][0].read_bytes()
    response = client.post(
        "/v1/index",
        files=[("files", ("upload.heic", heic_bytes)), ("files", ("upload.svg", unsafe))],
        data={"allowed": "C-design"},
    )
    assert response.status_code == 202, response.text
    job = _wait_job(client, response.json()["id"])
    assert job["added"] == 1, job
    assert [Path(s["path"]).name for s in job["skipped"]] == ["upload.svg"]
    assert "unsafe SVG" in job["skipped"][0]["reason"]
    uploads = opened.uploads_dir
    assert [p.name for p in uploads.rglob("*") if p.is_file()] == ["upload.heic"]  # the unsafe one is gone


def test_the_web_chat_shows_an_svg_or_pdf_original_as_the_services_rendering(service, samples, tmp_path):
    from agent import build_engine
    from agent.questioners.baselines import NoQuestioner
    from chatir.scope import SearchScope
    from frontends.web.app import create_web_app
    from retriever_service.api import create_app
    from tests.frontend_support import frontend_settings
    from tests.test_tools_support import live_server
    from tools.client import RetrieverClient

    _, opened, _ = service
    ids = {Path(r.uri).name: r.id for r in opened.index.iter_records()}
    with live_server(create_app(opened.settings, opened)) as url:
        settings = frontend_settings(opened.settings.model, tmp_path / "web", service_url=url, top_k=30)
        engine = build_engine(settings, questioner=NoQuestioner())
        app = create_web_app(engine, RetrieverClient(url), scope=SearchScope(allowed=["C-design"]))
        with TestClient(app) as web:
            cid = web.post("/api/conversations").json()["conversation_id"]
            turn = web.post(f"/api/conversations/{cid}/messages", json={"text": "a logo"}).json()
            assert {ids["logo.svg"], ids["slides.pdf"], ids["print.jpg"]} <= {
                hit["id"] for hit in turn["hits"]
            }
            for name in ("logo.svg", "slides.pdf"):
                response = web.get(f"/api/images/{ids[name]}")
                assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
                shown = Image.open(io.BytesIO(response.content))
                assert shown.format == "JPEG" and max(shown.size) == 2048  # vectors render at the size asked
            jpeg = web.get(f"/api/images/{ids['print.jpg']}")  # a format browsers show: the original bytes
            assert jpeg.content == samples[0]["print.jpg"][0].read_bytes()

"""Slack files in the formats teams share (HEIC, AVIF, SVG, PDF): the real bolt app indexes them as they are
shared (fake Slack Web API, real retriever service on a tiny model), they are found and thumbnailed in their
channel's scope, a broken one is refused with its reason, and "This one" posts a picture Slack can show."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from PIL import Image
from slack_sdk import WebClient

from chatir.schemas import PUBLIC, SearchFilter, SearchRequest
from tests import test_slack_app as _slack_app
from tests.fakes.slack_api import BOT_TOKEN
from tests.formats_support import centre_colour, close, write_broken, write_good
from tests.test_slack_app import make_app, send_event
from tools.client import RetrieverClient

# the workspace and the service of the Slack app tests (fixtures shared by reference, their tests not collected)
retriever, slack, settings = _slack_app.retriever, _slack_app.slack, _slack_app.settings

pytest.importorskip("pillow_heif", reason="HEIC support is not installed")

SHARED = {  # sample -> the mimetype Slack gives it
    "photo.heic": "image/heic",
    "photo.avif": "image/avif",
    "logo.svg": "image/svg+xml",
    "slides.pdf": "application/pdf",
}


def _wait_for_hits(client: RetrieverClient, sources: set[str], channel: str) -> dict[str, str]:
    """source -> image id of the hits from ``sources``, once all of them are searchable."""
    deadline = time.monotonic() + 60
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        request = SearchRequest(dialog={"caption": "a file"}, k=100, filter=SearchFilter(allowed=[channel]))
        found = {h.source: h.id for h in client.search(request).hits if h.source in sources}
        if set(found) == sources:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not indexed: {sources - set(found)}")


def test_is_image_knows_the_shared_formats():
    from frontends.slack.indexing import is_image

    for mimetype in [*SHARED.values(), "image/jpeg", "image/heif"]:
        assert is_image({"mimetype": mimetype})
    assert is_image({"mimetype": "application/octet-stream", "filetype": "heic"})
    assert not is_image({"mimetype": "application/zip", "filetype": "zip"})
    assert not is_image({"mimetype": "application/octet-stream", "filetype": "docx"})
    assert not is_image({"mimetype": "text/plain", "filetype": "svg"})  # a typed file is judged by its type


def test_shared_files_of_every_format_are_indexed_found_and_thumbnailed(settings, slack, retriever, tmp_path):
    url, _ = retriever
    samples = write_good(tmp_path / "good")
    app = make_app(settings)
    sources: dict[str, str] = {}
    for name, mimetype in SHARED.items():
        fake = slack.add_file(name, samples[name][0].read_bytes(), mimetype=mimetype, channel="C_GENERAL")
        sources[f"slack:C_GENERAL/{fake.id}"] = name
        send_event(
            app,
            {
                "type": "file_shared",
                "file_id": fake.id,
                "user_id": "U1",
                "channel_id": "C_GENERAL",
                "event_ts": f"17000010{len(sources)}.000100",
            },
        )
    client = RetrieverClient(url)
    ids = _wait_for_hits(client, set(sources), "C_GENERAL")
    for source, image_id in ids.items():
        sample = samples[sources[source]][1]
        thumb = Image.open(io.BytesIO(client.thumbnail(image_id, allowed=["C_GENERAL"])))
        assert thumb.format == "JPEG"
        assert close(centre_colour(thumb), sample.colour, sample.tolerance + 8), (sources[source], thumb)
    public_only = SearchFilter(allowed=[PUBLIC])
    public = client.search(SearchRequest(dialog={"caption": "a file"}, k=100, filter=public_only)).hits
    assert not set(ids.values()) & {h.id for h in public}  # the channel's files stay in the channel


def test_a_broken_shared_file_is_refused_with_its_reason(settings, slack, retriever, tmp_path, caplog):
    from frontends.slack.indexing import SlackIndexer

    caplog.set_level(logging.INFO, logger="retriever_service.service")

    url, _ = retriever
    broken = write_broken(tmp_path / "broken")
    client = RetrieverClient(url)
    indexer = SlackIndexer(WebClient(token=BOT_TOKEN, base_url=slack.base_url + "/api/"), client, BOT_TOKEN)
    for name, mimetype in (("href.svg", "image/svg+xml"), ("empty.pdf", "application/pdf")):
        path, reason = broken[name]
        fake = slack.add_file(name, path.read_bytes(), mimetype=mimetype, channel="C_GENERAL")
        info = WebClient(token=BOT_TOKEN, base_url=slack.base_url + "/api/").files_info(file=fake.id)["file"]
        job_id = indexer.index_file(info, channel="C_GENERAL")
        assert job_id
        deadline = time.monotonic() + 30
        job = client.index_job(job_id)
        while job.state not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.index_job(job_id)
        assert job.state == "done" and job.added == 0, job
        assert [reason in s["reason"] for s in job.skipped] == [True], job.skipped
        assert f"(slack:C_GENERAL/{fake.id}) refused" in caplog.text and reason in caplog.text  # for admins


def test_this_one_for_an_svg_posts_a_jpeg_rendering_slack_can_show(settings, slack, retriever, tmp_path):
    from frontends.slack.images import SlackImagePublisher

    url, _ = retriever
    path, sample = write_good(tmp_path / "good")["logo.svg"]
    client = RetrieverClient(url)
    unique = (
        path.read_bytes() + b"<!-- -->"
    )  # not the bytes another test shared (an id is its content's hash)
    job = client.index_upload([("logo.svg", unique)], source="slack:C_GENERAL/FH", allowed=["C_GENERAL"])
    image_id = _wait_for_hits(client, {"slack:C_GENERAL/FH"}, "C_GENERAL")["slack:C_GENERAL/FH"]
    assert job.id
    web = WebClient(token=BOT_TOKEN, base_url=slack.base_url + "/api/")
    publisher = SlackImagePublisher(web, client, tmp_path / "thumbs.json")
    publisher.post_original(
        image_id=image_id,
        title="logo.svg",
        where="Slack",
        channel="C_GENERAL",
        thread_ts="1700000001.000100",
        allowed=["C_GENERAL"],
    )
    complete = slack.wait_for("files.completeUploadExternal", where=lambda c: c.args.get("thread_ts"))[-1]
    files = complete.args["files"]
    files = json.loads(files) if isinstance(files, str) else files  # the SDK sends the list as JSON text
    uploaded = slack.uploads[files[0]["id"]]
    posted = Image.open(io.BytesIO(uploaded))
    assert posted.format == "JPEG" and close(centre_colour(posted), sample.colour, sample.tolerance + 8)

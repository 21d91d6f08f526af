"""The web chat's JSON API and the terminal chat, over a real engine and a real retriever service.

The stack is the demo's own (``frontends.demo.demo_stack``) on a tiny CLIP with random weights and a
small gallery of the procedural world: the service runs under uvicorn in this process and indexes the
gallery; the engine searches it over HTTP with the information-gain questioner.
"""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agent import ConversationStore, build_engine
from agent.questioners.baselines import NoQuestioner
from chatir.dialog import Dialog
from chatir.schemas import SearchRequest
from frontends.demo import demo_stack
from frontends.terminal import render, run_chat
from frontends.web.app import create_web_app
from retriever_service.index.records import file_content_id
from tests.frontend_support import frontend_settings, small_world_bank
from tests.test_tools_support import closed_port_url
from tools.client import RetrieverClient

GALLERY = 24
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def stack(tiny_clip_dir, tmp_path_factory):
    # 5 matches a turn (CHATIR_TOP_K=5): the small gallery leaves room for "none of these" and "more"
    settings = frontend_settings(tiny_clip_dir, tmp_path_factory.mktemp("web-home"), top_k=5)
    with demo_stack(
        settings,
        gallery_size=GALLERY,
        service_port=0,
        bank=small_world_bank(),
        warm_up=False,
        progress=False,
        say=lambda _: None,
    ) as ready:
        yield ready


@pytest.fixture(scope="module")
def web(stack):
    with TestClient(stack.web_app()) as client:
        yield client


def new_conversation(web) -> str:
    response = web.post("/api/conversations")
    assert response.status_code == 200
    cid = response.json()["conversation_id"]
    assert HEX32.match(cid)
    return cid


def say(web, cid: str, text: str) -> dict:
    response = web.post(f"/api/conversations/{cid}/messages", json={"text": text})
    assert response.status_code == 200, response.text
    return response.json()


def direct_rank(stack, dialog: dict, target: str) -> int | None:
    """The target's rank asked of the service directly (what the web chat must report)."""
    with RetrieverClient.from_settings(stack.local.settings) as client:
        hits = client.search(
            SearchRequest(dialog=Dialog.model_validate(dialog), k=100, filter=stack.scope.to_filter())
        ).hits
    return next((rank for rank, hit in enumerate(hits, 1) if hit.id == target), None)


def test_page_static_files_and_info(web):
    page = web.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js">' in page.text and "cdn" not in page.text.lower()
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = web.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    info = web.get("/api/info").json()
    assert info["title"] == "ChatIR demo" and info["demo_targets"] is True
    assert "coloured shapes" in info["about"] and len(info["examples"]) == 3  # the demo says what it holds


def test_conversation_start_answer_reject_choose_restart(web, stack):
    cid = new_conversation(web)
    started = say(web, cid, "there is a big red star")
    assert started["conversation_id"] == cid and started["action"] == "started"
    assert started["state"] == "asking" and started["question"]
    assert started["round"] == 0 and started["dialog"]["caption"] == "there is a big red star"
    assert len(started["hits"]) == 5
    for hit in started["hits"]:
        assert hit["thumbnail"] == f"/api/images/{hit['id']}/thumbnail"
        image = web.get(hit["thumbnail"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(image.content)).size[0] > 0
    original = web.get(started["hits"][0]["image"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/png"

    answered = say(web, cid, "no")
    assert answered["action"] == "answered" and answered["round"] == 1
    assert answered["dialog"]["rounds"] == [{"question": started["question"], "answer": "no"}]
    assert answered["question"] and answered["question"] != started["question"]

    shown = {hit["id"] for hit in answered["hits"]}
    rejected = web.post(f"/api/conversations/{cid}/reject").json()
    assert rejected["action"] == "rejected" and rejected["excluded_count"] == 5
    assert rejected["hits"] and not shown & {hit["id"] for hit in rejected["hits"]}

    pick = rejected["hits"][1]
    chosen = web.post(f"/api/conversations/{cid}/choose", json={"image_id": pick["id"]}).json()
    assert chosen["state"] == "found" and chosen["chosen"]["id"] == pick["id"]
    assert chosen["found_target"] is False  # no demo target in this conversation

    restarted = web.post(f"/api/conversations/{cid}/restart").json()
    assert restarted["state"] == "awaiting_description" and restarted["dialog"] is None
    assert restarted["question"] is None and restarted["hits"] == []
    assert web.get(f"/api/conversations/{cid}").json()["state"] == "awaiting_description"


def test_target_is_a_gallery_image_and_its_rank_is_the_services(web, stack):
    gallery_ids = {file_content_id(path) for path in stack.files}
    cid = new_conversation(web)
    target = web.post(f"/api/conversations/{cid}/target").json()
    assert target["id"] in gallery_ids and target["rank"] is None
    assert web.get(target["image"]).status_code == 200

    turn = say(web, cid, "there is a small blue circle")
    assert turn["target_id"] == target["id"]
    assert turn["target_rank"] == direct_rank(stack, turn["dialog"], target["id"])
    assert 1 <= turn["target_rank"] <= GALLERY  # the gallery is smaller than the rank limit
    assert [hit["is_target"] for hit in turn["hits"]] == [hit["id"] == target["id"] for hit in turn["hits"]]

    turn = say(web, cid, "yes")
    assert turn["target_rank"] == direct_rank(stack, turn["dialog"], target["id"])
    assert web.get(f"/api/conversations/{cid}").json()["target_rank"] == turn["target_rank"]

    # finding the target is marked
    while target["id"] not in {hit["id"] for hit in turn["hits"]}:
        turn = web.post(f"/api/conversations/{cid}/reject").json()
        assert turn["hits"], "the target must show up once the others are rejected"
    found = web.post(f"/api/conversations/{cid}/choose", json={"image_id": target["id"]}).json()
    assert found["found_target"] is True and found["chosen"]["is_target"] is True


def test_errors_are_json_with_clear_messages(web):
    cid = new_conversation(web)
    empty = web.post(f"/api/conversations/{cid}/messages", json={"text": "   "})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    missing = web.post(f"/api/conversations/{cid}/messages", json={})
    assert missing.status_code == 422 and "text" in missing.json()["error"]
    too_long = web.post(f"/api/conversations/{cid}/messages", json={"text": "x" * 2500})
    assert too_long.status_code == 400 and "2,000" in too_long.json()["error"]

    unknown = "0" * 32
    for method, path in (("get", ""), ("post", "/reject"), ("post", "/restart")):
        response = getattr(web, method)(f"/api/conversations/{unknown}{path}")
        assert response.status_code == 404 and "has not started" in response.json()["error"]
        assert "web:" not in response.json()["error"] and unknown not in response.json()["error"]
    malformed = web.post("/api/conversations/not-an-id/messages", json={"text": "a red star"})
    assert malformed.status_code == 404 and "reload the page" in malformed.json()["error"]

    say(web, cid, "a red star")
    stranger = web.post(f"/api/conversations/{cid}/choose", json={"image_id": "f" * 32})
    assert stranger.status_code == 400 and "not one of the matches" in stranger.json()["error"]
    image = web.get(f"/api/images/{'f' * 32}/thumbnail")
    assert image.status_code == 404 and "not among the images shown" in image.json()["error"]
    route = web.get("/api/nothing-here")
    assert route.status_code == 404 and route.json()["error"]


def test_image_proxy_serves_only_images_the_chat_has_shown(stack):
    """An id learnt elsewhere (another channel, another app) does not open an image through the web chat."""
    with TestClient(stack.web_app()) as fresh:
        cid = new_conversation(fresh)
        gallery_image = file_content_id(stack.files[0])
        assert fresh.get(f"/api/images/{gallery_image}").status_code == 404
        turn = say(fresh, cid, "there is a big red star")
        shown = turn["hits"][0]["id"]
        assert fresh.get(f"/api/images/{shown}").status_code == 200
        assert {hit["id"] for hit in turn["hits"]} != {file_content_id(p) for p in stack.files}  # some unseen
        unseen = next(
            i for i in map(file_content_id, stack.files) if i not in {h["id"] for h in turn["hits"]}
        )
        assert fresh.get(f"/api/images/{unseen}/thumbnail").status_code == 404


def test_other_front_ends_conversations_are_out_of_reach(web, stack):
    """The web chat only reaches ``web:`` conversations: a terminal or Slack conversation stays private."""
    other = "ab" * 16
    stack.engine.handle(other, "a green ring", stack.scope)  # as another front-end with this raw id
    assert web.get(f"/api/conversations/{other}").status_code == 404


def test_service_down_is_503_and_loses_nothing(stack, tmp_path):
    dead = frontend_settings(stack.local.settings.model, tmp_path, service_url=closed_port_url())
    engine = build_engine(dead, questioner=NoQuestioner(), store=ConversationStore(tmp_path / "state.sqlite"))
    engine.searcher.client.retries = 0
    app = create_web_app(engine, RetrieverClient(dead.service_url, retries=0), scope=stack.scope)
    with TestClient(app) as client:
        cid = client.post("/api/conversations").json()["conversation_id"]
        down = client.post(f"/api/conversations/{cid}/messages", json={"text": "a red star"})
        assert down.status_code == 503 and "unavailable" in down.json()["error"]
        assert client.get(f"/api/conversations/{cid}").status_code == 404  # nothing half-recorded
    # the images go through their own client: when only that one is cut off, images are 503 as well
    half = create_web_app(stack.engine, RetrieverClient(dead.service_url, retries=0), scope=stack.scope)
    with TestClient(half) as client:
        cid = client.post("/api/conversations").json()["conversation_id"]
        hit = client.post(f"/api/conversations/{cid}/messages", json={"text": "a red star"}).json()["hits"][0]
        image = client.get(hit["thumbnail"])
        assert image.status_code == 503 and "unavailable" in image.json()["error"]
        assert client.get("/api/info").json()["demo_targets"] is False
        no_target = client.post(f"/api/conversations/{cid}/target")
        assert no_target.status_code == 404 and "no demo gallery" in no_target.json()["error"]


# --- the terminal chat -----------------------------------------------------------------------------
def scripted(lines: list[str]):
    pending = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(pending)
        except StopIteration:
            raise EOFError from None

    return read


def test_terminal_chat_scripted_conversation(stack):
    output: list[str] = []
    last = run_chat(
        stack.engine,
        stack.scope,
        read=scripted(["help", "there is a big yellow square", "no", "none", "2", "#9", "#2", "quit"]),
        write=output.append,
        inline_images=False,
    )
    text = "\n".join(output)
    assert "none       none of these" in text and "a bare 3 is an answer" in text  # help
    assert "Top matches after your description:" in text and "? " in text
    assert "Top matches after 1 answer:" in text
    assert "I won't show those 5 again" in text
    assert "! there are only 5 matches shown" in text
    assert last is not None and last.state == "found"
    assert f"Found it: {last.chosen.text}" in text and last.chosen.uri in text
    assert last.dialog.caption == "there is a big yellow square"
    assert [r.answer for r in last.dialog.rounds][:2] == ["no", "2"]  # the bare number was an answer


def test_terminal_chat_restart_errors_and_end_of_input(stack):
    output: list[str] = []
    last = run_chat(
        stack.engine,
        stack.scope,
        read=scripted(["a purple cross", "restart", "   ", "a black disc"]),
        write=output.append,
        inline_images=False,
    )
    text = "\n".join(output)
    assert "Starting over" in text
    assert last.dialog.caption == "a black disc" and last.round == 0  # Ctrl-D (EOF) ended the loop


def test_terminal_previews_use_inline_images(stack):
    with RetrieverClient.from_settings(stack.local.settings) as client:
        result = stack.engine.handle("cli:previews", "a white triangle", stack.scope)
        text = render(result, client.thumbnail)
    assert text.count("\033]1337;File=inline=1") == len(result.hits) == 5


def test_the_page_and_the_terminal_say_what_the_demo_gallery_holds(stack):
    from frontends.demo import GALLERY_ABOUT, GALLERY_EXAMPLES

    app = create_web_app(
        stack.engine,
        RetrieverClient.from_settings(stack.local.settings),
        scope=stack.scope,
        about=GALLERY_ABOUT,
        examples=GALLERY_EXAMPLES,
    )
    info = TestClient(app).get("/api/info").json()
    assert "coloured shapes" in info["about"] and info["examples"] == list(GALLERY_EXAMPLES)
    assert (
        TestClient(create_web_app(stack.engine, RetrieverClient.from_settings(stack.local.settings)))
        .get("/api/info")
        .json()["about"]
        is None
    )  # own collections: nothing claimed
    output: list[str] = []
    run_chat(
        stack.engine,
        stack.scope,
        read=scripted(["quit"]),
        write=output.append,
        inline_images=False,
        about=GALLERY_ABOUT,
        examples=GALLERY_EXAMPLES,
    )
    assert GALLERY_ABOUT in output[0] and GALLERY_EXAMPLES[0] in output[1]

"""End-to-end: the web chat in headless Chromium (Debian's /usr/bin/chromium driven by Playwright from PyPI).

The visitor plays the user of the demo: "Show me a target", types the target's description, answers two
questions through the page (answers from the world's oracle, i.e. the truth about the target), and the
test checks that the images render, the dialog is shown and the target's rank is tracked; then pages with
"More matches", opens the larger view, reloads (the view comes back), picks a match from the second page
(the found view keeps its number and location) and starts a new hunt (the old one folds away). With the starter
model (when its weights ship with the project) the rank must improve; with the tiny random model used
otherwise a rank carries no meaning, so the test checks only that the page shows the service's rank.
Screenshots (desktop and a 390 px phone) go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from frontends.demo import DEMO_WORLD_SEED, demo_stack
from frontends.serving import ThreadedServer, bind_socket
from frontends.web.app import create_web_app
from retriever_service.index.records import file_content_id
from tests.conftest import REPO_ROOT
from tests.frontend_support import frontend_settings, small_world_bank
from tools.client import RetrieverClient
from world.language import caption_for
from world.oracle import Oracle
from world.scene import sample_scene

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTER_TARGET = 17
"""Gallery index of the target when the starter model is used (fixed, so the run is deterministic)."""


def starter_shipped() -> bool:
    from retriever_service.models.starter import MANIFEST_FILE, STARTER_WEIGHTS_DIR

    return (STARTER_WEIGHTS_DIR / MANIFEST_FILE).is_file()


@pytest.fixture(scope="module")
def browser_setup(tiny_clip_dir, tmp_path_factory):
    """(settings, gallery size, target index, whether ranks are meaningful) for this run."""
    home = tmp_path_factory.mktemp("browser-home")
    if starter_shipped():
        return frontend_settings("starter", home), 300, STARTER_TARGET, True
    return frontend_settings(tiny_clip_dir, home), 24, 5, False


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it")
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def service_rank(stack, dialog, target: str) -> int | None:
    hits = stack.engine.searcher.search(dialog, k=100, scope=stack.scope)
    return next((rank for rank, hit in enumerate(hits, 1) if hit.id == target), None)


def rank_of(page) -> int | None:
    value = page.get_attribute("#target-rank", "data-rank")
    return int(value) if value else None


def send(page, text: str, round_number: int) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    page.wait_for_selector(f"li.msg.bot[data-round='{round_number}']", timeout=60_000)


def last_question(page) -> str:
    return page.locator("li.msg.bot").last.locator(".question").inner_text()


def wait_images_loaded(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log li.msg.bot:last-child img, #target-image')]"
        ".every(img => img.complete)",
        timeout=30_000,
    )


def test_describe_answer_two_questions_and_watch_the_rank(browser_setup, chromium):
    settings, gallery_size, target_index, meaningful = browser_setup
    scene = sample_scene(DEMO_WORLD_SEED, target_index)
    oracle = Oracle(scene)
    bank = small_world_bank(40 if meaningful else 24)  # the whole bank takes long to embed on 2 cores
    with demo_stack(
        settings,
        gallery_size=gallery_size,
        service_port=0,
        bank=bank,
        warm_up=False,
        progress=False,
        say=lambda _: None,
    ) as stack:
        target = file_content_id(stack.files[target_index])
        app = create_web_app(
            stack.engine,
            RetrieverClient.from_settings(stack.local.settings),
            scope=stack.scope,
            pick_target=lambda: target,
            title="ChatIR demo",
        )
        with ThreadedServer(app, bind_socket("127.0.0.1", 0), name="browser-test") as web:
            page = chromium.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(web.url)
            page.wait_for_selector("body[data-ready='1']")
            page.click("#show-target")
            page.wait_for_selector("#target-panel:not([hidden])")
            assert page.get_attribute("#target-image", "data-id") == target

            description = caption_for(DEMO_WORLD_SEED, target_index, scene).text
            send(page, description, 0)
            ranks = [rank_of(page)]
            questions, answers = [], []
            for round_number in (1, 2):
                question = last_question(page)
                answer = oracle.answer(question)
                questions.append(question)
                answers.append(answer)
                send(page, answer, round_number)
                ranks.append(rank_of(page))

            # the page shows what the engine did: the dialog, the matches, the target's rank each turn
            dialog = page.locator("#dialog li").all_inner_texts()
            assert dialog[0] == f"You: {description}"
            shown = [item.strip() for item in dialog[1:]]
            assert shown == [f"{q} {a}" for q, a in zip(questions, answers, strict=False)]
            assert len(page.locator("#rank-history li").all()) == 3
            top_k = settings.top_k
            hits = page.locator("#log li.msg.bot").last.locator("figure.hit")
            assert hits.count() == top_k
            wait_images_loaded(page)
            widths = page.eval_on_selector_all(
                "#log li.msg.bot:last-child img, #target-image", "imgs => imgs.map(img => img.naturalWidth)"
            )
            assert len(widths) == top_k + 1 and all(width > 0 for width in widths), widths
            state = stack.engine.get("web:" + page.evaluate("sessionStorage.getItem('chatir.cid')"))
            assert [r.answer for r in state.dialog.rounds] == answers
            assert ranks == [
                service_rank(
                    stack, state.dialog.model_copy(update={"rounds": state.dialog.rounds[:i]}), target
                )
                for i in range(3)
            ]  # the page shows the service's ranks
            if meaningful:
                assert ranks[0] is not None and ranks[2] is not None and ranks[2] < ranks[0], (
                    f"the target's rank did not improve: {ranks} (after a rebuild of the starter, the fixed "
                    "STARTER_TARGET may need another pick: with the first starter it went 41 -> 3 -> 1)"
                )
            else:
                assert all(rank is not None and 1 <= rank <= gallery_size for rank in ranks), ranks
            assert not errors, errors

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web-chat-desktop.png"))
            page.set_viewport_size({"width": 390, "height": 844})
            page.locator("li.msg.bot").last.scroll_into_view_if_needed()
            page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
            page.wait_for_timeout(200)
            page.screenshot(path=str(ARTIFACTS / "web-chat-phone.png"))
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
            send(page, "x" * 400, 3)  # one unbroken 400-character word must not widen the page either
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"a long word makes the page {overflow} px wider than a phone screen"
            page.set_viewport_size({"width": 1280, "height": 900})

            # "More matches" adds the next page to the same grid, numbered on
            current = page.locator("#log li.msg.bot").last
            current.locator("button.more").click()
            page.wait_for_function(
                f"document.querySelectorAll('#log .grid.current figure.hit').length == {2 * top_k}"
            )
            labels = current.locator(".rank-label").all_inner_texts()
            assert labels == [f"#{n}" for n in range(1, 2 * top_k + 1)], labels
            # a click on a match opens the larger view of the image
            current.locator("figure.hit img").nth(top_k + 1).click()
            page.wait_for_selector("#viewer[open]")
            page.wait_for_function("document.getElementById('viewer-image').complete")
            assert page.eval_on_selector("#viewer-image", "img => img.naturalWidth") > 0
            assert page.inner_text("#viewer-title").startswith(f"#{top_k + 2} ")
            page.click("#viewer-close")
            page.wait_for_selector("#viewer:not([open])", state="attached")

            # a reload restores the conversation view, the matches (both pages) and the rank history
            before = page.locator("#log li.msg").count()
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            assert page.locator("#log li.msg").count() == before
            assert page.locator("#log .grid.current figure.hit").count() == 2 * top_k
            assert page.locator("#dialog li").all_inner_texts()[0] == f"You: {description}"
            assert len(page.locator("#rank-history li").all()) == 4
            assert not page.is_hidden("#target-panel")

            # picking #12 (on the second page): the found view keeps its number and says where it lives
            chosen = page.locator("#log .grid.current figure.hit").nth(top_k + 1)
            chosen_id = chosen.get_attribute("data-id")
            chosen.locator("button.this-one").click()
            page.wait_for_selector("li.msg.bot[data-state='found']")
            found = page.locator("li.msg.bot[data-state='found']").last
            assert found.locator(".rank-label").inner_text() == f"#{top_k + 2}"
            assert found.locator("figure.hit").get_attribute("data-id") == chosen_id
            assert "It lives at" in found.locator(".where").inner_text()

            # a new hunt starts a new view: the earlier one folds away
            page.fill("#message", description)
            page.press("#message", "Enter")
            page.wait_for_selector("#log > li.earlier details", timeout=60_000)
            page.wait_for_selector("#log > li.msg.bot:not(.pending)", timeout=60_000)
            assert page.locator("#log > li.msg").count() == 2  # the new description and its answer
            assert not errors, errors
            page.close()

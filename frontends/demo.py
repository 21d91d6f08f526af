"""``chatir demo``: the whole experience offline, in the browser, with no configuration.

What it does, each step cached so that later runs are ready in seconds:

1. the starter model (``CHATIR_MODEL=starter``, the default) is assembled under ``CHATIR_HOME``;
2. a sample gallery of the procedural world (5,000 images, fixed seed) is generated under
   ``CHATIR_HOME/demo/gallery`` (skipped when complete);
3. the retriever service starts in this process (the only opener of the embedded store) and indexes the
   gallery into its own collection (incremental: later runs embed nothing);
4. the web chat starts, with the LLM-free information-gain questioner and the world's question bank, and a
   "Show me a target" button that picks a random gallery image so a visitor can play the user.
"""

from __future__ import annotations

import hashlib
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatir.errors import ChatIRError
from chatir.settings import STARTER_MODEL, Settings

if TYPE_CHECKING:
    from agent.engine import ConversationEngine
    from agent.questioners.bank import QuestionBank
    from agent.questioners.base import Questioner
    from chatir.schemas import IndexJob
    from frontends.serving import LocalRetriever
    from tools.scope import SearchScope

DEMO_WORLD_SEED = 2024
"""Seed of the demo gallery: not one of the starter's training or validation worlds."""
DEFAULT_GALLERY_SIZE = 5000
GALLERY_ABOUT = (
    "The sample gallery holds 5,000 pictures of coloured shapes (circles, squares, stars, hearts, crosses, rings, "
    "triangles, diamonds; plain, striped, dotted or checked) on plain, tiled or gradient backgrounds. It has no "
    "photos: to search your own pictures, index a folder (chatir index DIR) and run chatir chat."
)
GALLERY_EXAMPLES = (
    "a big red star on a blue background",
    "two green rings and a dotted heart on a tiled floor",
    "a small striped triangle in the top left, dark picture",
)
DEFAULT_WEB_PORT = 8700
GALLERY_IMAGE_SIZE = 96
"""The starter's input size (its vision tower reads 96 px; 64 px patterns were hard to see in the demo)."""
DEMO_SOURCE = "demo-gallery"
DEMO_COLLECTION = "chatir_demo"

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- settings ---------------------------------------------------------------------------------------
def demo_collection(model: str) -> str:
    """The demo's own collection (never the user's index); one per model, since collections are per model."""
    if model == STARTER_MODEL:
        return DEMO_COLLECTION
    return f"{DEMO_COLLECTION}_{hashlib.sha256(model.encode()).hexdigest()[:10]}"


DEMO_BATCH_SIZE = 128
"""Images per indexing batch: the gallery's images are small, and fewer batches mean fewer store flushes."""


def demo_settings(settings: Settings) -> Settings:
    """``settings`` for the demo: its own collection, the LLM-free questioner with the world's questions."""
    return settings.model_copy(
        update={
            "collection": demo_collection(settings.model),
            "question_bank": "world",
            "questioner": "info_gain",
            "batch_size": max(settings.batch_size, DEMO_BATCH_SIZE),
        }
    )


def own_images_settings(settings: Settings, folder: Path) -> Settings:
    """``settings`` for ``chatir demo --images DIR``: a collection of that folder's own, everyday questions."""
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    return settings.model_copy(
        update={
            "collection": f"{demo_collection(settings.model)}_own_{key}",
            "question_bank": "generic",
            "questioner": "info_gain",
            "batch_size": max(settings.batch_size, DEMO_BATCH_SIZE),
        }
    )


def demo_scope(source: str = DEMO_SOURCE) -> SearchScope:
    """What the demo's conversations may search: the public demo gallery (or the folder given to --images)."""
    from chatir.schemas import PUBLIC
    from tools.scope import SearchScope

    return SearchScope(allowed=[PUBLIC], sources=[source])


# --- the gallery -----------------------------------------------------------------------------------
def gallery_dir(settings: Settings) -> Path:
    return Path(settings.home) / "demo" / "gallery"


def gallery_files(root: Path, n: int, seed: int = DEMO_WORLD_SEED) -> list[Path]:
    """The image files of a gallery of ``n`` images, in world order."""
    from world.generator import image_relpath

    return [root / image_relpath(seed, index) for index in range(n)]


def ensure_gallery(
    root: Path,
    n: int = DEFAULT_GALLERY_SIZE,
    *,
    seed: int = DEMO_WORLD_SEED,
    size: int = GALLERY_IMAGE_SIZE,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[list[Path], bool]:
    """The gallery's files, generated when missing or incomplete; (files, whether anything was generated).

    The folder belongs to the demo: a gallery of another seed, size or world version is replaced, and
    images beyond ``n`` (from a larger gallery) are removed.
    """
    import shutil

    from world.generator import WorldError, generate_world, read_world_info
    from world.scene import SCENE_VERSION

    files = gallery_files(root, n, seed)
    try:
        info = read_world_info(root)
    except WorldError:
        info = None
    if info is not None and (info.seed, info.size, info.version) != (seed, size, SCENE_VERSION):
        shutil.rmtree(root)
        info = None
    if info is not None and info.complete and info.n == n and all(path.is_file() for path in files):
        return files, False
    generate_world(root, n, seed, size=size, workers=workers, progress=progress)
    _remove_surplus(root, set(files))
    return files, True


def _remove_surplus(root: Path, keep: set[Path]) -> None:
    for path in (root / "images").rglob("*.png"):
        if path not in keep:
            path.unlink(missing_ok=True)


class GalleryTargets:
    """The demo's "show me a target": a random gallery image, by the id the index gives it."""

    def __init__(self, files: Sequence[Path], *, seed: int | None = None) -> None:
        if not files:
            raise ChatIRError("the demo gallery is empty")
        self.files = list(files)
        self._random = random.Random(seed)

    def __call__(self) -> str:
        from chatir.ids import file_content_id

        return file_content_id(self._random.choice(self.files))


def index_gallery(
    local: LocalRetriever, folder: Path, *, progress: bool = True, source: str = DEMO_SOURCE
) -> IndexJob:
    """Index ``folder`` through the running service's HTTP API (incremental, prunes removed files); the
    finished job. The demo's service lists ``folder`` among its index roots (:func:`demo_stack`)."""
    from tqdm import tqdm

    from chatir.schemas import PUBLIC, IndexRequest
    from tools.client import RetrieverClient

    request = IndexRequest(paths=[str(folder)], source=source, allowed=[PUBLIC], prune=True)
    with (
        RetrieverClient.from_settings(local.settings) as client,
        tqdm(desc="indexing the gallery", unit="img", disable=not progress) as bar,
    ):
        job = client.index(request)
        while job.state not in ("done", "failed"):
            time.sleep(0.2)
            job = client.index_job(job.id)
            if job.total:
                bar.total = job.total
                bar.n = job.done
                bar.refresh()
    if job.state == "failed":
        raise ChatIRError(f"indexing {folder} failed: {job.error}")
    return job


# --- the conversation engine -----------------------------------------------------------------------
def build_demo_engine(
    local: LocalRetriever, *, bank: QuestionBank | None = None, warm_up: bool = True
) -> ConversationEngine:
    """The engine of the demo: searches through the service, the LLM-free questioner with the world's
    question bank (or ``bank``), sharing the service's loaded model (one copy in memory)."""
    from agent.factory import build_engine

    questioner = demo_questioner(local.settings, bank=bank, warm_up=warm_up)
    return build_engine(local.settings, questioner=questioner)


def demo_questioner(
    settings: Settings, *, bank: QuestionBank | None = None, warm_up: bool = False
) -> Questioner:
    """The LLM-free questioner over the service at ``settings.service_url``: it embeds answers with the
    service's model (``/v1/encode/texts``), the bank's embeddings kept on disk between runs."""
    from agent.factory import build_questioner
    from agent.search import ServiceTextEncoder
    from frontends.text_cache import PersistentTextEncoder
    from tools.client import RetrieverClient

    encoder = PersistentTextEncoder(
        ServiceTextEncoder(RetrieverClient.from_settings(settings)), bank_cache_path(settings)
    )
    questioner = build_questioner(settings, "info_gain", text_encoder=encoder, bank=bank)
    if warm_up and callable(getattr(questioner, "warm_up", None)):
        questioner.warm_up()  # embed the question bank now (once: cached on disk), not in the first conversation
        encoder.save()
    return questioner


def bank_cache_path(settings: Settings) -> Path:
    """Where the embeddings of the question bank's answers are kept between runs."""
    return Path(settings.home) / "demo" / f"question-bank-{settings.collection}.npz"


# --- the whole demo --------------------------------------------------------------------------------
@dataclass
class DemoStack:
    """A ready demo: the service, the engine and the web chat's parts."""

    local: LocalRetriever
    engine: ConversationEngine
    targets: GalleryTargets
    scope: SearchScope
    files: list[Path]
    index_report: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    about: str = GALLERY_ABOUT
    examples: tuple[str, ...] = GALLERY_EXAMPLES

    def web_app(self) -> Any:
        from frontends.web.app import create_web_app
        from tools.client import RetrieverClient

        client = RetrieverClient.from_settings(self.local.settings)
        return create_web_app(
            self.engine,
            client,
            scope=self.scope,
            pick_target=self.targets,
            title="ChatIR demo",
            about=self.about,
            examples=self.examples,
        )


@contextmanager
def demo_stack(
    settings: Settings,
    *,
    gallery_size: int = DEFAULT_GALLERY_SIZE,
    service_port: int | None = None,
    bank: QuestionBank | None = None,
    warm_up: bool = True,
    progress: bool = True,
    say: Say = _stderr,
    images: Path | None = None,
) -> Iterator[DemoStack]:
    """Prepare everything the demo needs (steps 1-3 of the module docstring) and yield it, running.

    ``images``: the user's own folder instead of the sample gallery (indexed with the same model into a
    collection of its own; everyday questions instead of the world's)."""
    from frontends.serving import local_retriever

    if images is not None:
        images = Path(images).expanduser().resolve()
        if not images.is_dir():
            raise ChatIRError(f"--images {images}: not a folder")
    settings = demo_settings(settings) if images is None else own_images_settings(settings, images)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    if settings.model == STARTER_MODEL:
        from retriever_service.models.starter import ensure_starter_model

        say("[1/4] starter model")
        ensure_starter_model(settings, progress=progress)
    else:
        say(f"[1/4] model {settings.model} (CHATIR_MODEL)")
    timings["model"] = time.perf_counter() - clock

    clock = time.perf_counter()
    about, examples, source = GALLERY_ABOUT, GALLERY_EXAMPLES, DEMO_SOURCE
    if images is None:
        root = gallery_dir(settings)
        say(f"[2/4] gallery: {gallery_size:,} images of the world (seed {DEMO_WORLD_SEED}) in {root}")
        files, generated = ensure_gallery(root, gallery_size, progress=progress)
        say("      generated" if generated else "      already there")
        folder = root / "images"
    else:
        from evaluation.data import IMAGE_SUFFIXES

        folder, source = images, f"folder:{images}"
        files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ChatIRError(
                f"--images {images}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it"
            )
        say(f"[2/4] your images: {len(files):,} files in {images}")
        about = f"Your images: {len(files):,} files in {images}."
        examples = ()
        if settings.model == STARTER_MODEL:
            about += (
                " The starter model only understands the sample world of coloured shapes; to search photos,"
                " set CHATIR_MODEL to a real image-text model (docs/deploy.md)."
            )
            say("      note: " + about.split(". ", 1)[1])
    timings["gallery"] = time.perf_counter() - clock

    clock = time.perf_counter()
    say("[3/4] retriever service (loading the model, opening the index)")
    served = settings.model_copy(
        update={"index_roots": [*settings.index_roots, folder]}
    )  # it indexes over HTTP
    with local_retriever(served, port=service_port, command="demo") as local:
        say(f"      serving on {local.url} (collection {settings.collection!r})")
        timings["service"] = time.perf_counter() - clock
        clock = time.perf_counter()
        report = index_gallery(local, folder, progress=progress, source=source)
        say(
            f"      index: {report.added} added, {report.unchanged} unchanged, {report.pruned} removed"
            + (f", {len(report.skipped)} skipped" if report.skipped else "")
        )
        timings["index"] = time.perf_counter() - clock

        clock = time.perf_counter()
        which = "the world's question bank" if images is None else "everyday questions"
        say(f"[4/4] conversation engine (LLM-free questioner, {which})")
        engine = build_demo_engine(local, bank=bank, warm_up=warm_up)
        timings["engine"] = time.perf_counter() - clock
        scope = demo_scope(source)
        yield DemoStack(
            local=local,
            engine=engine,
            targets=GalleryTargets(files),
            scope=scope,
            files=files,
            index_report=report,
            timings=timings,
            about=about,
            examples=examples,
        )


def can_open_browser() -> bool:
    """True where a graphical browser can open (a console browser would take over the terminal)."""
    import os

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(
    settings: Settings,
    *,
    port: int = DEFAULT_WEB_PORT,
    host: str = "127.0.0.1",
    gallery_size: int = DEFAULT_GALLERY_SIZE,
    open_browser: bool = True,
    say: Say = _stderr,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    bank: QuestionBank | None = None,
    images: Path | None = None,
) -> None:
    """``chatir demo``: prepare, then serve the web chat until Ctrl-C (or until ``stop`` is set).

    ``on_ready`` gets the web chat's URL once it answers (default: printed on stdout); ``bank`` replaces the
    world's question bank.
    """
    from frontends.serving import ThreadedServer, bind_socket

    started = time.perf_counter()
    say(f"ChatIR demo -- CHATIR_HOME={settings.home}")
    web_socket = bind_socket(host, port)  # fail early when the port is taken
    try:
        with (
            demo_stack(settings, gallery_size=gallery_size, bank=bank, say=say, images=images) as stack,
            ThreadedServer(stack.web_app(), web_socket, name="web-chat") as web,
        ):
            seconds = time.perf_counter() - started
            steps = ", ".join(f"{name} {value:.1f} s" for name, value in stack.timings.items())
            say(f"\nReady in {seconds:.1f} s ({steps}).")
            (on_ready or _print_url)(web.url)
            say(
                f"Retriever service: {stack.local.url} (`chatir chat --demo` in another terminal talks to it)"
            )
            say("Press Ctrl-C to stop.")
            if open_browser and can_open_browser():
                import webbrowser

                webbrowser.open(web.url)
            try:
                while web.thread.is_alive() and not (stop is not None and stop.is_set()):
                    web.thread.join(0.25)
            except KeyboardInterrupt:
                say("\nstopping ...")
    finally:
        web_socket.close()


def _print_url(url: str) -> None:
    print(f"Web chat: {url}", flush=True)

"""Front-end commands: ``chatir slack``, ``chatir demo`` and ``chatir chat``.

Imports stay light here (the engine, torch and uvicorn are imported inside the commands).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatir.errors import ChatIRError


def register(app: typer.Typer) -> None:
    """Adds the front-end commands to the ``chatir`` app."""
    from frontends.slack.cli import register as register_slack

    register_slack(app)
    app.command("demo")(demo)
    app.command("chat")(chat)


def demo(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the web chat.")] = 8700,
    host: Annotated[
        str, typer.Option(help="Interface of the web chat (default: this machine only).")
    ] = "127.0.0.1",
    gallery_size: Annotated[
        int, typer.Option(min=10, max=200_000, help="Images in the sample gallery of the procedural world.")
    ] = 5000,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser window.")] = False,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Your own folder of images instead of the sample gallery (same model, same chat).",
        ),
    ] = None,
) -> None:
    """The whole experience offline: starter model, sample gallery, retriever service and web chat.

    Everything it makes (the assembled starter, the gallery, its index, conversations) lives under CHATIR_HOME
    (default ~/.cache/chatir). The web chat listens on --port (8700); the retriever service on the port of
    CHATIR_SERVICE_URL (8600), or the next free one when that is taken. The gallery is coloured shapes, not
    photos: `chatir demo --images DIR` runs the same chat over your own folder (indexed into a collection of its
    own), best with a real model in CHATIR_MODEL.
    """
    from chatir.settings import get_settings
    from frontends.demo import run_demo

    run_demo(
        get_settings(),
        port=port,
        host=host,
        gallery_size=gallery_size,
        open_browser=not no_browser,
        images=images,
    )


def chat(
    demo_gallery: Annotated[
        bool, typer.Option("--demo", help="Search the demo gallery of `chatir demo` (prepared when missing).")
    ] = False,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="Visibility group to search (repeatable; default: public)."),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Search every image in the index.")] = False,
    previews: Annotated[
        bool | None,
        typer.Option("--previews/--no-previews", help="Inline image previews (default: detected)."),
    ] = None,
) -> None:
    """Chat in the terminal: describe an image, answer questions, pick a match.

    Talks to the retriever service at CHATIR_SERVICE_URL; when none answers there, starts it in this process.
    """
    from chatir.settings import get_settings
    from frontends.serving import running_service
    from tools.scope import SearchScope

    settings = get_settings()
    if demo_gallery:
        from frontends.demo import demo_scope, demo_settings

        settings = demo_settings(settings)
        scope = demo_scope()
    elif everything:
        scope = SearchScope.unrestricted()
    else:
        scope = SearchScope(allowed=allow or SearchScope().allowed)

    found = running_service(settings)
    if found is not None:
        settings = settings.model_copy(update={"service_url": found.url})
        _chat_with_running_service(
            settings, found.health, scope, demo_gallery=demo_gallery, previews=previews
        )
    elif demo_gallery:
        from frontends.demo import demo_stack

        typer.echo(
            f"no retriever service answers at {settings.service_url}; starting the demo's here", err=True
        )
        with demo_stack(settings) as stack:
            _run(stack.engine, scope, stack.local.settings, previews, demo_gallery=True)
    else:
        from agent.factory import build_engine
        from frontends.serving import local_retriever

        typer.echo(f"no retriever service answers at {settings.service_url}; starting one here", err=True)
        with local_retriever(settings) as local:
            _run(build_engine(local.settings), scope, local.settings, previews)


def _chat_with_running_service(
    settings, health: dict, scope, *, demo_gallery: bool, previews: bool | None
) -> None:
    from agent.factory import build_engine
    from chatir.runfile import store_fingerprint

    if demo_gallery and health.get("store_id") != store_fingerprint(settings):
        raise ChatIRError(
            f"the retriever service at {settings.service_url} does not serve the demo gallery; start `chatir demo` "
            "(or stop that service and run `chatir chat --demo` again)"
        )
    typer.echo(f"using the retriever service at {settings.service_url}", err=True)
    if not demo_gallery:
        from frontends.demo import demo_settings

        if health.get("store_id") == store_fingerprint(demo_settings(settings)):
            typer.echo(
                "it serves the demo gallery: `chatir chat --demo` asks the world's questions", err=True
            )
    questioner = None
    if demo_gallery:  # the demo's questioner, with the bank embeddings `chatir demo` saved
        from frontends.demo import demo_questioner

        questioner = demo_questioner(settings)
    _run(build_engine(settings, questioner=questioner), scope, settings, previews, demo_gallery=demo_gallery)


def _run(engine, scope, settings, previews: bool | None, *, demo_gallery: bool = False) -> None:
    from frontends.terminal import run_chat
    from tools.client import RetrieverClient

    about, examples = None, ()
    if demo_gallery:  # say what the sample gallery holds: a newcomer should not ask it for a dog
        from frontends.demo import GALLERY_ABOUT, GALLERY_EXAMPLES

        about, examples = GALLERY_ABOUT, GALLERY_EXAMPLES
    with RetrieverClient.from_settings(settings) as client:
        run_chat(
            engine, scope, thumbnail=client.thumbnail, inline_images=previews, about=about, examples=examples
        )

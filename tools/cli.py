"""``chatir mcp``: serve ``search_images`` to MCP clients, with the scope fixed by flags at start."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


def mcp_command(
    transport: Annotated[
        Transport,
        typer.Option("--transport", "-t", help="stdio (launched by the client) or http (streamable HTTP)."),
    ] = Transport.stdio,
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
    path: Annotated[str, typer.Option(help="HTTP endpoint path.")] = "/mcp",
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", help="Visibility group (channel id, group, 'public') it may search; repeatable."
        ),
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only these sources; repeatable.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only images with these tags; repeatable.")
    ] = None,
    unrestricted: Annotated[
        bool, typer.Option("--unrestricted", help="Search every image (trusted local use only).")
    ] = False,
    service_url: Annotated[
        str | None, typer.Option("--service-url", help="Retriever service URL (default: CHATIR_SERVICE_URL).")
    ] = None,
) -> None:
    """Serve the image-search tool over MCP. Without --allow it searches public images only."""
    from chatir.settings import get_settings
    from tools.client import AsyncRetrieverClient
    from tools.mcp_server import build_server, serve
    from tools.scope import SearchScope

    if unrestricted and allow:
        raise typer.BadParameter("use either --unrestricted or --allow, not both")
    scope = SearchScope(
        allowed=None if unrestricted else list(allow or ["public"]), sources=source or None, tags=tag or None
    )
    settings = get_settings()
    client = AsyncRetrieverClient.from_settings(
        settings, **({"base_url": service_url} if service_url else {})
    )
    typer.echo(
        f"search_images over MCP ({transport.value}) -> {client.base_url}; "
        f"scope: {'everything' if scope.allowed is None else ', '.join(scope.allowed)}",
        err=True,  # stdout carries the stdio protocol
    )
    serve(build_server(client, scope), transport.value, host=host, port=port, path=path)


def register(app: typer.Typer) -> None:
    """Adds ``chatir mcp`` to the ``chatir`` app."""
    app.command("mcp")(mcp_command)

"""``search_images`` as an MCP server (stdio or streamable HTTP), for any MCP client.

The scope is fixed when the server starts (``--allow``, ``--source``, ``--tag`` flags; public images
only by default) and is never read from tool arguments. Run it with ``chatir mcp`` or
``python -m tools.mcp_server [--transport stdio|http] [--allow GROUP ...]``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from chatir.dialog import MAX_TEXT_CHARS, Round
from chatir.schemas import Hit
from tools.client import AsyncRetrieverClient
from tools.scope import SearchScope
from tools.search import (
    EXPECTED_ERRORS,
    MAX_K,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    SearchImagesArgs,
    SearchImagesFilter,
    asearch,
    failed,
)

SERVER_NAME = "chatir-image-search"
_FIELDS = SearchImagesArgs.model_fields


class SearchImagesResult(BaseModel):
    """Structured result of ``search_images`` (the MCP ``structuredContent``)."""

    hits: list[Hit] = Field(default_factory=list, description="Best match first.")
    model: str | None = Field(None, description="The retrieval model that ranked the images.")


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def build_server(
    client: AsyncRetrieverClient, scope: SearchScope, *, log_level: LogLevel = "WARNING"
) -> MCPServer:
    """An MCP server exposing ``search_images`` over ``client``, always searching inside ``scope``."""
    server = MCPServer(
        SERVER_NAME,
        instructions="Find images by describing them; refine with the user's answers to clarifying questions.",
        log_level=log_level,
    )

    async def search_images(
        caption: Annotated[
            str, Field(min_length=1, max_length=MAX_TEXT_CHARS, description=_FIELDS["caption"].description)
        ],
        rounds: Annotated[list[Round], Field(max_length=50, description=_FIELDS["rounds"].description)] = [],  # noqa: B006
        k: Annotated[int, Field(ge=1, le=MAX_K, description=_FIELDS["k"].description)] = 5,
        filter: Annotated[SearchImagesFilter | None, Field(description=_FIELDS["filter"].description)] = None,
    ) -> Annotated[CallToolResult, SearchImagesResult]:
        try:
            args = SearchImagesArgs(caption=caption, rounds=rounds, k=k, filter=filter)
            outcome = await asearch(client, args, scope)
        except EXPECTED_ERRORS as error:
            outcome = failed(error)
        content = [TextContent(type="text", text=outcome.text)]
        if outcome.is_error:
            return CallToolResult(content=content, is_error=True)
        result = SearchImagesResult(hits=outcome.hits, model=outcome.model)
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    server.add_tool(
        search_images,
        name=TOOL_NAME,
        title="Search images",
        description=TOOL_DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True),
    )
    return server


def serve(
    server: MCPServer,
    transport: str = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
) -> None:
    """Run until interrupted: ``stdio`` (the client launches this process) or ``http`` (streamable HTTP)."""
    if transport == "stdio":
        server.run("stdio")
    elif transport == "http":
        server.run("streamable-http", host=host, port=port, streamable_http_path=path)
    else:
        raise ValueError(f"unknown MCP transport {transport!r}: use stdio or http")


def main() -> None:
    """``python -m tools.mcp_server [flags]``: the ``chatir mcp`` command on its own."""
    import typer

    from chatir.errors import ChatIRError
    from tools.cli import mcp_command

    try:
        typer.run(mcp_command)
    except ChatIRError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

"""The image-search tool for LLM apps: HTTP client, LangChain tool, MCP server, OpenAI function schema.

Public API (imported lazily so ``chatir --help`` stays fast)::

    from tools import RetrieverClient, AsyncRetrieverClient, SearchScope, SearchImagesTool
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RetrieverClient": "tools.client",
    "AsyncRetrieverClient": "tools.client",
    "RetrieverRequestError": "tools.client",
    "SearchScope": "tools.scope",
    "SearchImagesArgs": "tools.search",
    "SearchOutcome": "tools.search",
    "SearchImagesTool": "tools.search_tool",
    "build_server": "tools.mcp_server",
    "search_images_tool_schema": "tools.openai_schema",
    "call_search_images": "tools.openai_schema",
}

__all__ = [  # noqa: RUF022 - grouped by module
    "RetrieverClient",
    "AsyncRetrieverClient",
    "RetrieverRequestError",
    "SearchScope",
    "SearchImagesArgs",
    "SearchOutcome",
    "SearchImagesTool",
    "build_server",
    "search_images_tool_schema",
    "call_search_images",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tools' has no attribute {name!r}")

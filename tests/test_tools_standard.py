"""The standard LangChain tool suites (langchain-tests) for ``search_images``.

Unit suite: construction and schema. Integration suite: real HTTP calls to a service speaking the
retriever protocol (the fake from ``test_tools_support``; ``test_tools_integration`` runs the same
suite against the real service app on a tiny model).
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from chatir.schemas import PUBLIC
from tests.test_tools_support import fake_service, live_server
from tools.client import AsyncRetrieverClient, RetrieverClient
from tools.scope import SearchScope
from tools.search_tool import SearchImagesTool

EXAMPLE_ARGS = {
    "caption": "a dog playing in the park",
    "rounds": [{"question": "what is the dog doing?", "answer": "playing with a ball"}],
    "k": 3,
    "filter": {"tags": ["dog"]},
}


class TestSearchImagesToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[SearchImagesTool]:
        return SearchImagesTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"client": RetrieverClient("http://127.0.0.1:9"), "scope": SearchScope(allowed=[PUBLIC])}

    @property
    def tool_invoke_params_example(self) -> dict:
        return EXAMPLE_ARGS


@pytest.fixture(scope="class")
def fake_service_url(request):
    with live_server(fake_service()) as url:
        request.cls.service_url = url
        yield url


@pytest.mark.usefixtures("fake_service_url")
class TestSearchImagesToolIntegration(ToolsIntegrationTests):
    service_url: str = ""

    @property
    def tool_constructor(self) -> type[SearchImagesTool]:
        return SearchImagesTool

    @property
    def tool_constructor_params(self) -> dict:
        return {
            "client": RetrieverClient(self.service_url, retries=1),
            "async_client": AsyncRetrieverClient(self.service_url, retries=1),
            "scope": SearchScope(allowed=[PUBLIC]),
        }

    @property
    def tool_invoke_params_example(self) -> dict:
        return EXAMPLE_ARGS

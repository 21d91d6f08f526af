"""RetrieverClient / AsyncRetrieverClient against a fake service speaking the real protocol."""

from __future__ import annotations

import time

import httpx
import pytest

from chatir.dialog import Dialog, Round
from chatir.errors import ServiceUnavailableError
from chatir.schemas import PUBLIC, SearchFilter, SearchRequest
from chatir.settings import Settings
from tests.test_tools_support import CATALOGUE, FakeState, closed_port_url, fake_service, live_server
from tools.client import AsyncRetrieverClient, RetrieverClient, RetrieverRequestError

DOG = SearchRequest(
    dialog=Dialog(
        caption="a dog in the park",
        rounds=[Round(question="what is it doing?", answer="playing with a ball")],
    ),
    k=3,
    filter=SearchFilter(allowed=[PUBLIC]),
)
FAST = {"backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture(scope="module")
def service():
    state = FakeState()
    with live_server(fake_service(state)) as url:
        yield url, state


@pytest.fixture
def fake(service):
    url, state = service
    state.fail_with.clear()
    state.requests.clear()
    state.headers.clear()
    state.calls, state.delay_s, state.api_key = 0, 0.0, None
    return url, state


def test_search_round_trip_over_http(fake):
    url, state = fake
    with RetrieverClient(url, **FAST) as client:
        response = client.search(DOG)
    assert response.model == "fake-word-overlap"
    assert response.hits[0].text.startswith("golden retriever dog")
    assert all(PUBLIC in next(i for i in CATALOGUE if i.id == h.id).allowed for h in response.hits)
    assert state.requests == [DOG]  # the request arrives intact


def test_bearer_token_is_sent_and_a_wrong_one_is_a_4xx_without_retry(fake):
    url, state = fake
    state.api_key = "s3cret"
    with RetrieverClient(url, api_key="s3cret", **FAST) as client:
        assert client.search(DOG).hits
    assert state.headers[-1]["authorization"] == "Bearer s3cret"

    state.calls = 0
    with (
        RetrieverClient(url, api_key="wrong", retries=3, **FAST) as client,
        pytest.raises(RetrieverRequestError) as err,
    ):
        client.search(DOG)
    assert err.value.status_code == 401
    assert "missing or wrong bearer token" in str(err.value)
    assert state.calls == 1  # 4xx is never retried


def test_503_twice_then_success_is_retried_with_back_off(fake):
    url, state = fake
    state.fail_with[:] = [503, 503]
    started = time.perf_counter()
    with RetrieverClient(url, retries=3, backoff=0.05, max_backoff=1.0) as client:
        response = client.search(DOG)
    elapsed = time.perf_counter() - started
    assert response.hits and state.calls == 3
    assert elapsed >= 0.05 + 0.1 - 0.01  # waited 0.05 s then 0.1 s (exponential), at least


def test_persistent_500_ends_as_service_unavailable(fake):
    url, state = fake
    state.fail_with[:] = [500] * 10
    with RetrieverClient(url, retries=2, **FAST) as client, pytest.raises(ServiceUnavailableError) as err:
        client.search(DOG)
    assert state.calls == 3
    message = str(err.value)
    assert message.startswith("the image index is unavailable:")
    assert "internal server error" in message and "after 3 attempts" in message


def test_422_is_a_request_error_with_the_services_message(fake):
    url, state = fake
    with RetrieverClient(url, **FAST) as client, pytest.raises(RetrieverRequestError) as err:
        client._request("POST", "/v1/search", json={"k": 3})
    assert err.value.status_code == 422
    assert "dialog.caption" in err.value.error
    assert state.calls == 1


def test_connection_refused_is_unavailable():
    with (
        RetrieverClient(closed_port_url(), retries=1, **FAST) as client,
        pytest.raises(ServiceUnavailableError) as err,
    ):
        client.health()
    assert "cannot connect to the retriever service" in str(err.value)
    assert "after 2 attempts" in str(err.value)


def test_timeout_is_unavailable(fake):
    url, state = fake
    state.delay_s = 1.0
    with (
        RetrieverClient(url, timeout=0.2, retries=0) as client,
        pytest.raises(ServiceUnavailableError) as err,
    ):
        client.search(DOG)
    assert "did not answer in time" in str(err.value)


def test_images_thumbnails_and_urls(fake):
    url, _ = fake
    image_id = CATALOGUE[0].id
    with RetrieverClient(url + "/", **FAST) as client:
        hit = client.search(DOG).hits[0]
        assert client.image(image_id) == b"IMAGE:" + image_id.encode()
        assert client.thumbnail(image_id) == b"THUMB:" + image_id.encode()
        assert client.thumbnail_url(hit) == f"{url}/v1/images/{hit.id}/thumbnail"
        assert client.image_url(hit) == f"{url}/v1/images/{hit.id}"
        assert client.health()["status"] == "ok"
        with pytest.raises(RetrieverRequestError) as err:
            client.thumbnail("0" * 32)
    assert err.value.status_code == 404


def test_from_settings_takes_url_key_and_timeout():
    settings = Settings(service_url="http://retriever.internal:9000", api_key="k", service_timeout_s=7)
    client = RetrieverClient.from_settings(settings, retries=5)
    assert (client.base_url, client.api_key, client.timeout, client.retries) == (
        "http://retriever.internal:9000/",
        "k",
        7,
        5,
    )
    assert client._http.headers["authorization"] == "Bearer k"
    twin = AsyncRetrieverClient.like(client)
    assert (twin.base_url, twin.api_key, twin.retries) == (client.base_url, "k", 5)


# --- async, in-process through httpx.ASGITransport -------------------------------------------------
async def test_async_search_retries_503_through_asgi_transport():
    state = FakeState(fail_with=[503])
    transport = httpx.ASGITransport(app=fake_service(state))
    async with AsyncRetrieverClient("http://service", transport=transport, **FAST) as client:
        response = await client.search(DOG)
        thumb = await client.thumbnail(response.hits[0].id)
    assert state.calls == 3 and response.hits[0].text.startswith("golden retriever")
    assert thumb.startswith(b"THUMB:")


async def test_async_connection_refused_is_unavailable():
    async with AsyncRetrieverClient(closed_port_url(), retries=1, **FAST) as client:
        with pytest.raises(ServiceUnavailableError, match="the image index is unavailable"):
            await client.search(DOG)


async def test_async_4xx_is_not_retried():
    state = FakeState(api_key="k")
    transport = httpx.ASGITransport(app=fake_service(state))
    async with AsyncRetrieverClient("http://service", transport=transport, **FAST) as client:
        with pytest.raises(RetrieverRequestError) as err:
            await client.search(DOG)
    assert err.value.status_code == 401 and state.calls == 1

"""Micro-batching of text encodes across concurrent requests (retriever_service/models/batching.py), on a tiny
BLIP through the real loader and on the real service over HTTP."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from chatir.dialog import Dialog, Round
from chatir.errors import ChatIRError
from chatir.settings import Settings

WORDS = ("red", "blue", "green", "star", "circle", "square", "large", "small", "striped", "dark")


def _dialogs(n: int) -> list[Dialog]:
    """Dialogs of different lengths (so a batch pads), each different."""
    return [
        Dialog(
            caption=f"a {WORDS[i % 10]} {WORDS[(i * 3) % 10]} picture number {i}",
            rounds=[
                Round(question=f"is it {WORDS[(i + r) % 10]}?", answer="yes" if r % 2 else "no")
                for r in range(i % 6)
            ],
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def blip(tiny_blip_dir):
    from retriever_service.models import load_model

    return load_model(str(tiny_blip_dir), device="cpu")


def _concurrently(function, items, workers: int) -> list:
    """``function(item)`` for every item from ``workers`` threads released together; results or exceptions."""
    barrier = threading.Barrier(workers)

    def call(item):
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=30)
        try:
            return function(item)
        except Exception as error:  # noqa: BLE001 -- compared by the test
            return error

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(call, items))


def test_batched_vectors_equal_one_by_one_and_batches_form(blip):
    from retriever_service.models.batching import TextBatcher

    dialogs = _dialogs(24)
    one_by_one = np.stack([blip.encode_dialogs([d])[0] for d in dialogs])
    batcher = TextBatcher(blip, threading.RLock(), window_ms=50, max_batch=8)
    try:
        results = _concurrently(batcher.encode_dialog, dialogs, workers=24)
    finally:
        batcher.close()
    texts = [text for text, _ in results]
    vectors = np.stack([vector for _, vector in results])
    assert texts == [blip.dialog_text(d) for d in dialogs]
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    assert batcher.stats.texts == 24 and batcher.stats.largest > 1 and batcher.stats.largest <= 8
    assert batcher.stats.batches < 24


class _Flaky:
    """The real model, failing on purpose for one dialog's text (as a tokenizer or forward error would)."""

    def __init__(self, model, poison: str, where: str) -> None:
        self.model, self.poison, self.where = model, poison, where
        self.calls: list[int] = []

    def dialog_text(self, dialog: Dialog) -> str:
        if self.where == "text" and self.poison in dialog.caption:
            raise ChatIRError("this dialog cannot be read")
        return self.model.dialog_text(dialog)

    def encode_texts(self, texts):
        self.calls.append(len(texts))
        if self.where == "forward" and any(self.poison in t for t in texts):
            raise RuntimeError("forward failed")
        return self.model.encode_texts(texts)


@pytest.mark.parametrize("where", ["text", "forward"])
def test_one_failing_request_does_not_fail_the_others(blip, where):
    from retriever_service.models.batching import TextBatcher

    dialogs = _dialogs(12)
    dialogs[5] = Dialog(caption="POISON picture", rounds=[])
    flaky = _Flaky(blip, "POISON", where)
    batcher = TextBatcher(flaky, threading.RLock(), window_ms=50, max_batch=16)
    try:
        results = _concurrently(batcher.encode_dialog, dialogs, workers=12)
    finally:
        batcher.close()
    assert isinstance(results[5], ChatIRError if where == "text" else RuntimeError)
    good = [i for i in range(12) if i != 5]
    assert all(isinstance(results[i], tuple) for i in good), results
    expected = blip.encode_dialogs([dialogs[i] for i in good])
    np.testing.assert_allclose(np.stack([results[i][1] for i in good]), expected, atol=1e-5)
    assert max(flaky.calls) > 1  # they were batched together
    if where == "forward":
        assert batcher.stats.fallbacks >= 1


def test_closed_batcher_refuses_and_releases_waiters(blip):
    from retriever_service.models.batching import BatcherClosedError, TextBatcher

    batcher = TextBatcher(blip, threading.RLock(), window_ms=0, max_batch=4)
    assert batcher.encode_text("a red star").shape == (blip.dim,)
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.encode_text("a red star")


def test_service_batches_concurrent_searches_and_matches_unbatched(tiny_blip_dir, tmp_path):
    """The real service over HTTP: 16 concurrent searches (batched) rank as the same service with batching off,
    and a request with a bad body among them fails alone."""
    import httpx

    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService
    from tests.test_tools_support import live_server

    dialogs = _dialogs(16)
    results: dict[str, list] = {}
    for label, max_batch in (("batched", 16), ("one-by-one", 1)):
        settings = Settings(
            home=tmp_path / label, model=str(tiny_blip_dir), device="cpu", text_fastpath="fp32",
            encode_max_batch=max_batch, encode_batch_window_ms=30,
        )  # fmt: skip
        with RetrieverService.open(settings) as service:
            assert (service._batcher is not None) == (max_batch > 1)
            with (
                live_server(create_app(settings, service)) as url,
                httpx.Client(base_url=url, timeout=60) as client,
            ):

                def encode(dialog, client=client):
                    if dialog is None:
                        return client.post("/v1/encode", json={"dialog": {"caption": ""}})
                    return client.post("/v1/encode", json={"dialog": dialog.model_dump()})

                responses = _concurrently(encode, [*dialogs, None], workers=17)
            if max_batch > 1:
                assert service._batcher.stats.largest > 1
        assert responses[-1].status_code == 422
        assert all(r.status_code == 200 for r in responses[:-1])
        results[label] = [r.json() for r in responses[:-1]]
    batched, single = results["batched"], results["one-by-one"]
    assert [b["text"] for b in batched] == [s["text"] for s in single]
    np.testing.assert_allclose([b["vector"] for b in batched], [s["vector"] for s in single], atol=1e-5)

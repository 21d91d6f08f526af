"""Micro-batching of text encodes across concurrent requests.

Concurrent ``POST /v1/search`` (and ``/v1/encode``) calls each need one dialog embedded. Run one by one behind
the model lock, a hundred waiting conversations wait for a hundred forward passes; on a CPU a forward of 32
texts costs far less than 32 forwards of one. :class:`TextBatcher` collects the texts that arrive within a
short window (``CHATIR_ENCODE_BATCH_WINDOW_MS``, up to ``CHATIR_ENCODE_MAX_BATCH``), encodes them in one
forward under the model lock and hands each caller its own vector. While one batch runs, the next one fills,
so under load the batches grow by themselves. A caller that arrives while no other is in flight encodes in its
own thread at once (no window, no hand-off to the worker thread and back).

Each caller gets exactly what it asked for: a text that fails (its dialog text cannot be built, or the batch
forward raises) fails only its own request -- the others of the batch are encoded again one by one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Protocol

import numpy as np

from chatir.dialog import Dialog
from chatir.errors import ServiceUnavailableError

log = logging.getLogger(__name__)


class TextModel(Protocol):
    """What the batcher needs of :class:`retriever_service.models.RetrievalModel`."""

    def dialog_text(self, dialog: Dialog) -> str: ...
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class _Job:
    """One caller's text (or dialog, turned into text inside the batch) and where its answer goes."""

    dialog: Dialog | None
    text: str | None
    future: Future[tuple[str, np.ndarray]] = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters for logs and benchmarks: batches run, texts encoded, the largest batch."""

    batches: int = 0
    texts: int = 0
    largest: int = 0
    fallbacks: int = 0

    def record(self, size: int) -> None:
        self.batches += 1
        self.texts += size
        self.largest = max(self.largest, size)


class BatcherClosedError(ServiceUnavailableError):
    """The batcher was closed (the service is stopping): a 503 for the caller."""


class TextBatcher:
    """Encodes texts for many threads at once: ``encode_dialog`` / ``encode_text`` block until their vector
    is ready. ``lock`` is the model's lock (held for the dialog texts and the forward of each batch)."""

    def __init__(
        self,
        model: TextModel,
        lock: threading.RLock | threading.Lock,
        *,
        window_ms: float = 2.0,
        max_batch: int = 32,
        name: str = "chatir-encode",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._model = model
        self._lock = lock
        self._window_s = max(0.0, float(window_ms)) / 1000.0
        self._max_batch = int(max_batch)
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._closed = threading.Event()
        self._count_lock = threading.Lock()
        self._in_flight = 0  # callers between submit and answer: a lone caller encodes inline
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- callers -----------------------------------------------------------------------------------
    def encode_dialog(self, dialog: Dialog, timeout_s: float | None = None) -> tuple[str, np.ndarray]:
        """The text the model encodes for ``dialog`` and its (dim,) float32 embedding."""
        return self._submit(_Job(dialog=dialog, text=None), timeout_s)

    def encode_text(self, text: str, timeout_s: float | None = None) -> np.ndarray:
        """The (dim,) float32 embedding of ``text`` as it is."""
        return self._submit(_Job(dialog=None, text=text), timeout_s)[1]

    def _submit(self, job: _Job, timeout_s: float | None) -> tuple[str, np.ndarray]:
        if self._closed.is_set():
            raise BatcherClosedError("The text encoder is shutting down.")
        with self._count_lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            if alone:  # nobody to batch with: encode in this thread, no hand-off to the worker and back
                return self._encode_inline(job)
            self._queue.put(job)
            if self._closed.is_set() and not self._thread.is_alive():  # closed meanwhile: nobody serves it
                self._fail_queued()
            return job.future.result(timeout=timeout_s)
        finally:
            with self._count_lock:
                self._in_flight -= 1

    def _encode_inline(self, job: _Job) -> tuple[str, np.ndarray]:
        with self._lock:
            text = job.text if job.dialog is None else self._model.dialog_text(job.dialog)
            vector = self._model.encode_texts([str(text)])[0]
            self.stats.record(1)
        return str(text), np.asarray(vector, dtype=np.float32)

    def close(self, timeout_s: float = 30.0, *, drain: bool = False) -> None:
        """Finish the batch in progress, fail what is still queued, stop the worker thread. ``drain``: encode
        what is queued first (a model switch: the requests already given to this batcher still get answers)."""
        if self._closed.is_set():
            return
        self._queue.put(None)
        if drain:
            self._thread.join(timeout_s)
        self._closed.set()
        self._thread.join(timeout_s)
        self._fail_queued()

    # --- the worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed.is_set():
            first = self._queue.get()
            if first is None:
                break
            batch = self._collect(first)
            try:
                self._encode_batch(batch)
            except BaseException as error:  # noqa: BLE001 -- never leave a caller waiting
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
        self._fail_queued()

    def _collect(self, first: _Job) -> list[_Job]:
        """``first`` and what arrives within the window (everything already queued is taken at once)."""
        batch = [first]
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
            except Empty:
                break
            if job is None:  # closing: finish this batch, then stop
                self._closed.set()
                break
            batch.append(job)
        return batch

    def _encode_batch(self, batch: list[_Job]) -> None:
        with self._lock:
            ready: list[tuple[_Job, str]] = []
            for job in batch:
                try:
                    text = job.text if job.dialog is None else self._model.dialog_text(job.dialog)
                except Exception as error:  # noqa: BLE001 -- this caller's problem only
                    job.future.set_exception(error)
                    continue
                ready.append((job, str(text)))
            if not ready:
                return
            try:
                vectors = self._model.encode_texts([text for _, text in ready])
            except Exception:
                self.stats.fallbacks += 1
                log.warning("a batch of %d texts failed; encoding them one by one", len(ready), exc_info=True)
                self._encode_one_by_one(ready)
                return
            self.stats.record(len(ready))
        for (job, text), vector in zip(ready, vectors, strict=True):
            job.future.set_result((text, np.asarray(vector, dtype=np.float32)))

    def _encode_one_by_one(self, ready: list[tuple[_Job, str]]) -> None:
        for job, text in ready:
            try:
                vector = self._model.encode_texts([text])[0]
            except Exception as error:  # noqa: BLE001
                job.future.set_exception(error)
                continue
            self.stats.record(1)
            job.future.set_result((text, np.asarray(vector, dtype=np.float32)))

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except Empty:
                return
            if job is not None and not job.future.done():
                job.future.set_exception(BatcherClosedError("The text encoder is shutting down."))


def encode_one(batcher: TextBatcher | None, model: TextModel, dialog: Dialog) -> tuple[str, np.ndarray]:
    """``batcher.encode_dialog(dialog)``, or the model directly when batching is off."""
    if batcher is not None:
        return batcher.encode_dialog(dialog)
    text = model.dialog_text(dialog)
    return text, model.encode_texts([text])[0]


__all__ = ["BatchStats", "BatcherClosedError", "TextBatcher", "TextModel", "encode_one"]

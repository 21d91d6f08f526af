"""A real retrieval model wrapped to count the images it embeds, for the indexer's tests."""

from __future__ import annotations

from collections.abc import Callable


class CountingModel:
    """The real model, counting the images it embeds; ``before_first_call`` runs once before the first batch;
    ``interrupt_on_call`` N raises KeyboardInterrupt on the Nth batch."""

    def __init__(
        self,
        model,
        *,
        interrupt_on_call: int | None = None,
        before_first_call: Callable[[], None] | None = None,
    ) -> None:
        self._model = model
        self.calls = 0
        self.images = 0
        self.interrupt_on_call = interrupt_on_call
        self._hook = before_first_call

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _count(self, n: int) -> None:
        if self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        self.calls += 1
        if self.interrupt_on_call is not None and self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        self.images += n

    def encode_images(self, images):
        self._count(len(images))
        return self._model.encode_images(images)

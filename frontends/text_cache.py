"""A text encoder whose embeddings persist on disk: the demo's question bank is embedded once, not per run.

:class:`PersistentTextEncoder` wraps a model (anything with ``encode_texts``); every other attribute passes
through. The file keeps the embedding of a fixed probe text: when the model changes, the probe no longer
matches and the cache is ignored (and rewritten), so a stale cache can never be used.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROBE_TEXT = "chatir text cache probe: a small red circle in the top left, is it striped? no"


class PersistentTextEncoder:
    """``encode_texts`` served from a cache saved at ``path`` (``.npz``); call :meth:`save` to write it."""

    def __init__(self, model: Any, path: str | os.PathLike[str]) -> None:
        self._model = model
        self.path = Path(path)
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._probe = np.asarray(model.encode_texts([PROBE_TEXT]), dtype=np.float32)[0]
        self._load()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __len__(self) -> int:
        return len(self._vectors)

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                texts, vectors, probe = data["texts"], data["vectors"], data["probe"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as error:
            log.warning("ignoring the unreadable text cache %s: %s", self.path, error)
            return
        if probe.shape != self._probe.shape or not np.allclose(probe, self._probe, atol=1e-4):
            log.info("the text cache %s was made by another model; it will be rebuilt", self.path)
            return
        if len(texts) != len(vectors):
            return
        self._vectors = {str(text): vector for text, vector in zip(texts, vectors, strict=True)}

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 embeddings; only texts never seen are given to the model."""
        with self._lock:
            missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            encoded = np.asarray(self._model.encode_texts(missing), dtype=np.float32)
            with self._lock:
                self._vectors.update(zip(missing, encoded, strict=True))
                self._dirty = True
        with self._lock:
            if not texts:
                return np.zeros((0, self._probe.shape[0]), dtype=np.float32)
            return np.stack([self._vectors[text] for text in texts])

    def save(self) -> None:
        """Write the cache (atomically) when it learnt new texts."""
        with self._lock:
            if not self._dirty or not self._vectors:
                return
            texts = list(self._vectors)
            vectors = np.stack([self._vectors[text] for text in texts])
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, texts=np.asarray(texts, dtype=str), vectors=vectors, probe=self._probe)
        os.replace(tmp, self.path)

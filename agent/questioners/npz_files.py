"""The ``.npz`` files the questioners ship (answer models, caption readers): arrays plus a JSON ``meta`` with a
``format`` tag, written atomically, read with a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from chatir.errors import ChatIRError


def write_npz(path: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``meta`` (JSON) to ``path`` through a partial file (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        payload: dict[str, Any] = {**arrays, "meta": np.array(json.dumps(meta))}
        np.savez_compressed(handle, **payload)
    partial.replace(path)
    return path


def read_npz(
    path: str | Path, expected_format: str, error: type[ChatIRError], what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a file written by :func:`write_npz` in ``expected_format``; ``error`` otherwise."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except (OSError, ValueError, KeyError) as failure:
        raise error(f"cannot read the {what} {path}: {failure}") from failure
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise error(f"{path}: not a {expected_format} file (format {found!r})")
    return meta, arrays

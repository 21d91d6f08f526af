"""Evaluation inputs: ChatIR-format dialog files and image corpora (a folder or a list file)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError

from chatir.dialog import Dialog
from chatir.errors import ChatIRError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class EvaluationInputError(ChatIRError):
    """A dialog file or an image corpus cannot be used for evaluation (the message says why)."""


class TargetDialog(BaseModel):
    """One test query: the full dialog (caption + rounds) and the relative path of its target image."""

    model_config = ConfigDict(frozen=True)

    img: str
    dialog: Dialog


def normalise_relpath(path: str) -> str:
    """A corpus-relative path in one spelling: forward slashes, no leading "./"."""
    text = str(path).replace("\\", "/").strip()
    pure = PurePosixPath(text)
    parts = [p for p in pure.parts if p not in (".", "")]
    return "/".join(parts)


def load_chatir_dialogs(path: Path, *, limit: int | None = None) -> list[TargetDialog]:
    """Read a ChatIR dialog file ``[{"img": rel path, "dialog": [caption, "q a", ...]}, ...]``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationInputError(f"dialog file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationInputError(f"dialog file {path} is not readable JSON: {error}") from None
    if not isinstance(raw, list):
        raise EvaluationInputError(
            f"dialog file {path} must hold a JSON list of {{'img': ..., 'dialog': [...]}} objects"
        )
    dialogs: list[TargetDialog] = []
    for position, entry in enumerate(raw[:limit] if limit is not None else raw):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("img"), str)
            or not isinstance(entry.get("dialog"), list)
        ):
            raise EvaluationInputError(
                f"{path}, entry {position}: expected an object with 'img' (a string) and 'dialog' (a list)"
            )
        parts = entry["dialog"]
        bad = next((i for i, part in enumerate(parts) if not isinstance(part, str)), None)
        if bad is not None:  # str(None) would silently become the text "None"
            raise EvaluationInputError(
                f"{path}, entry {position}: dialog part {bad} is {json.dumps(parts[bad])}, not a string "
                f"({'the caption' if bad == 0 else f'round {bad}'})"
            )
        try:
            dialog = Dialog.from_chatir(parts)
        except (ValueError, ValidationError) as error:
            raise EvaluationInputError(f"{path}, entry {position}: invalid dialog: {error}") from None
        dialogs.append(TargetDialog(img=normalise_relpath(entry["img"]), dialog=dialog))
    if not dialogs:
        raise EvaluationInputError(f"dialog file {path} holds no dialogs")
    return dialogs


class ImageCorpus(BaseModel):
    """The search space: image files under ``root``, in a fixed order (the index of a path is its corpus id)."""

    model_config = ConfigDict(frozen=True)

    root: Path
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def absolute(self, index: int) -> Path:
        return self.root / self.paths[index]

    def index_of(self) -> dict[str, int]:
        return {path: i for i, path in enumerate(self.paths)}

    def target_indices(self, targets: Sequence[str]) -> list[int]:
        """Corpus ids of the targets; a clear error when some target is not in the corpus."""
        index = self.index_of()
        missing = [t for t in targets if normalise_relpath(t) not in index]
        if missing:
            examples = ", ".join(missing[:3])
            raise EvaluationInputError(
                f"{len(missing)} of {len(targets)} target images are not in the corpus under {self.root} "
                f"(e.g. {examples}); the corpus must contain every target (paths are matched relative to the root)"
            )
        return [index[normalise_relpath(t)] for t in targets]

    @classmethod
    def from_folder(cls, root: Path) -> ImageCorpus:
        """Every image file below ``root`` (recursively), sorted by relative path."""
        root = Path(root)
        if not root.is_dir():
            raise EvaluationInputError(f"image root {root} is not a folder")
        found: list[str] = []
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    found.append(normalise_relpath(os.path.relpath(os.path.join(folder, name), root)))
        if not found:
            raise EvaluationInputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
        return cls(root=root, paths=tuple(sorted(found)))

    @classmethod
    def from_list(cls, list_file: Path, root: Path, *, complete: bool = False) -> ImageCorpus:
        """Paths relative to ``root`` from a JSON list (ChatIR's ``Search_Space_val_50k.json``) or a text file.

        The order of the list is kept (it defines the corpus ids, as in ChatIR); duplicates are an error.
        Files are spot-checked (1 in 50), or every one with ``complete`` (ChatIR's protocol).
        """
        list_file, root = Path(list_file), Path(root)
        try:
            text = list_file.read_text(encoding="utf-8")
        except OSError as error:
            raise EvaluationInputError(f"corpus list {list_file} is not readable: {error}") from None
        if list_file.suffix.lower() == ".json":
            try:
                entries = json.loads(text)
            except json.JSONDecodeError as error:
                raise EvaluationInputError(f"corpus list {list_file} is not valid JSON: {error}") from None
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise EvaluationInputError(f"corpus list {list_file} must be a JSON list of relative paths")
        else:
            entries = [
                line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
            ]
        paths = [normalise_relpath(e) for e in entries]
        if not paths:
            raise EvaluationInputError(f"corpus list {list_file} is empty")
        if len(set(paths)) != len(paths):
            raise EvaluationInputError(f"corpus list {list_file} lists some images more than once")
        if complete:
            absent = [p for p in paths if not (root / p).is_file()]
            if absent:
                raise EvaluationInputError(
                    f"{len(absent):,} of the {len(paths):,} images of corpus list {list_file} are missing under "
                    f"{root} (e.g. {absent[0]}); ChatIR's protocol needs all of them (a missing one shifts every "
                    "corpus id after it)"
                )
        absent = [p for p in paths[:: max(1, len(paths) // 50)] if not (root / p).is_file()]
        if absent:
            raise EvaluationInputError(
                f"images of corpus list {list_file} are missing under {root} (e.g. {absent[0]})"
            )
        return cls(root=root, paths=tuple(paths))

    @classmethod
    def open(cls, root: Path, list_file: Path | None = None, *, complete: bool = False) -> ImageCorpus:
        return (
            cls.from_list(list_file, root, complete=complete)
            if list_file is not None
            else cls.from_folder(root)
        )

"""Files coming into the service: uploads stored under ``CHATIR_HOME/uploads``, and which paths sent over HTTP
it may index (``CHATIR_INDEX_ROOTS``)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from retriever_service.errors import ForbiddenError, InvalidRequestError, PayloadTooLargeError

if TYPE_CHECKING:
    from chatir.settings import Settings

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


def uploads_dir(settings: Settings) -> Path:
    """The folder uploads are stored in."""
    return Path(settings.home) / "uploads"


def save_upload(
    settings: Settings, filename: str | None, stream: IO[bytes], budget: int | None = None
) -> tuple[Path, int]:
    """Copy an uploaded file under ``CHATIR_HOME/uploads/<sha256>/<name>``; returns (path, size).

    ``budget`` caps the bytes accepted (:class:`PayloadTooLargeError` beyond); identical bytes land
    in the same folder, so re-uploading a file stores it once.
    """
    budget = settings.max_upload_mb * (1 << 20) if budget is None else budget
    folder = uploads_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".part-", delete=False) as tmp:
        try:
            while chunk := stream.read(_COPY_CHUNK):
                size += len(chunk)
                if size > budget:
                    raise PayloadTooLargeError(
                        f"Upload too large: more than {settings.max_upload_mb} MB in all."
                    )
                digest.update(chunk)
                tmp.write(chunk)
        except BaseException:
            tmp.close()
            Path(tmp.name).unlink(missing_ok=True)
            raise
    target_dir = folder / digest.hexdigest()[:32]
    target = target_dir / safe_filename(filename)
    for attempt in range(3):
        try:
            target_dir.mkdir(exist_ok=True)
            os.replace(tmp.name, target)
            break
        except (FileNotFoundError, FileExistsError):
            # an indexing job discarding a rejected upload of the same bytes removed the (then empty) folder
            # under us: between mkdir and replace (FileNotFoundError), or inside mkdir, after it found the
            # folder there and before it checked that it is one (FileExistsError): make it again
            if attempt == 2 or not Path(tmp.name).exists():
                raise
    return target, size


def check_index_root(settings: Settings, raw: str, position: int) -> None:
    """Paths sent over HTTP must lie in ``CHATIR_INDEX_ROOTS`` (or be this service's own uploads).

    Checked on the resolved path, so ``..`` and symbolic links cannot step outside a root. A path the
    machine cannot use at all (a NUL byte, ``~nosuchuser``) is a bad request, never a server error."""
    try:
        path = Path(raw).expanduser().resolve()
    except (ValueError, RuntimeError, OSError) as error:  # NUL byte; unknown user in "~user"; loops
        raise InvalidRequestError(
            f"paths.{position}: {raw!r} is not a usable path ({error})", field=f"paths.{position}"
        ) from None
    roots = [uploads_dir(settings), *settings.index_roots]
    if any(path.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        return
    if not settings.index_roots:
        raise ForbiddenError(
            f"Indexing by path is off for this service (paths.{position}: {raw}). Upload the files "
            "instead (multipart POST /v1/index), or start the service with CHATIR_INDEX_ROOTS set to "
            "the folders it may index."
        )
    raise ForbiddenError(
        f"paths.{position}: {raw} is outside the folders this service may index "
        f"(CHATIR_INDEX_ROOTS: {', '.join(str(r) for r in settings.index_roots)})."
    )


def discard_rejected_uploads(folder: Path, report: Any) -> None:
    """Uploaded files the indexer rejected (not an image, unreadable) are deleted: nothing refers to them."""
    uploads = folder.resolve()
    for skipped in report.skipped:
        path = Path(skipped.path)
        try:
            if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(uploads):
                path.unlink()
                remove_empty_dirs(path.parent, stop=uploads)
        except OSError as error:  # already gone, or not ours to delete: leave it
            log.info("could not remove rejected upload %s: %s", path, error)


def remove_uploaded_copies(folder: Path, locations: Iterable[str]) -> None:
    """Delete the files among ``locations`` that are uploads (in ``folder``), and the folders left empty."""
    uploads = folder.resolve()
    for location in locations:
        path = Path(location)
        if path.is_file() and path.resolve().is_relative_to(uploads):
            path.unlink(missing_ok=True)
            remove_empty_dirs(path.parent, stop=uploads)


def safe_filename(name: str | None) -> str:
    """The last part of ``name`` with nothing but letters, digits, ``.``, ``_`` and ``-`` (``upload`` if empty)."""
    base = Path(name or "").name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    return base[:120]


def remove_empty_dirs(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents while they are empty, up to (not including) ``stop``."""
    folder = folder.resolve()
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


__all__ = [
    "check_index_root",
    "discard_rejected_uploads",
    "remove_empty_dirs",
    "remove_uploaded_copies",
    "safe_filename",
    "save_upload",
    "uploads_dir",
]

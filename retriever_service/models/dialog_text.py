"""Dialog -> the one string the text encoder sees, within the model's token limit.

ChatIR evaluates ``", ".join([caption, "q1 a1", ..., "qi ai"])``. When that string is longer than the
text encoder's limit, two policies are offered:

* ``keep_caption`` (default): keep the caption and as many of the *newest* rounds as fit (oldest rounds are
  dropped first); a caption that alone overflows is cut at the limit.
* ``tail``: cut the joined text at the token limit, as ChatIR's training code did
  (``tokenizer(..., truncation=True, max_length=200)``), so a ChatIR checkpoint is evaluated as trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from chatir.dialog import Dialog

TruncationPolicy = Literal["keep_caption", "tail"]
TextPooling = Literal["joined", "clauses"]
TEXT_POOLINGS: tuple[str, ...] = ("joined", "clauses")
"""How a model reads a dialog text: ``joined``, the whole text in one pass (BLIP, CLIP, ChatIR's retriever);
``clauses``, each clause between separators in its own pass and the clause vectors added (see
:func:`split_clauses`)."""
TRUNCATION_POLICIES: tuple[str, ...] = ("keep_caption", "tail")


class _Tokenizer(Protocol):  # the slice of a transformers tokenizer used here
    is_fast: bool

    def __call__(self, text, **kwargs): ...

    def decode(self, ids, **kwargs) -> str: ...


def token_counts(tokenizer: _Tokenizer, texts: Sequence[str]) -> list[int]:
    """Number of tokens of each text, special tokens ([CLS], [SEP], <eos>, ...) included."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False)
    return [len(ids) for ids in encoded["input_ids"]]


def cut_to_tokens(tokenizer: _Tokenizer, text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` whose tokenization (special tokens included) fits ``max_tokens``.

    With a fast tokenizer the cut is made in the original string (character offsets), so the text keeps
    its case and spacing; otherwise the kept tokens are decoded.
    """
    if token_counts(tokenizer, [text])[0] <= max_tokens:
        return text
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(
            text, add_special_tokens=True, truncation=True, max_length=max_tokens, return_offsets_mapping=True
        )
        end = max((stop for _, stop in encoded["offset_mapping"]), default=0)
        candidate = text[:end].rstrip()
    else:
        encoded = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_tokens)
        candidate = tokenizer.decode(encoded["input_ids"], skip_special_tokens=True).strip()
    # Re-tokenising a cut string can rarely merge differently; shrink word by word until it fits.
    while candidate and token_counts(tokenizer, [candidate])[0] > max_tokens:
        head, _, _ = candidate.rpartition(" ")
        candidate = head if head != candidate else candidate[:-1]
    return candidate


def dialog_text(
    dialog: Dialog,
    tokenizer: _Tokenizer,
    max_tokens: int,
    *,
    separator: str = ", ",
    policy: TruncationPolicy = "keep_caption",
) -> str:
    """The text actually encoded for ``dialog``: ChatIR's joined form, truncated per ``policy``."""
    if policy not in TRUNCATION_POLICIES:
        raise ValueError(f"unknown truncation policy {policy!r}; use one of {', '.join(TRUNCATION_POLICIES)}")
    parts = dialog.parts()
    full = separator.join(parts)
    if token_counts(tokenizer, [full])[0] <= max_tokens:
        return full
    if policy == "tail":
        return cut_to_tokens(tokenizer, full, max_tokens)

    caption, rounds = parts[0], parts[1:]
    # Candidates drop 1, 2, ... of the oldest rounds; the last one is the caption alone.
    candidates = [separator.join([caption, *rounds[dropped:]]) for dropped in range(1, len(rounds) + 1)]
    for candidate, count in zip(candidates, token_counts(tokenizer, candidates), strict=True):
        if count <= max_tokens:
            return candidate
    return cut_to_tokens(tokenizer, caption, max_tokens)


def split_clauses(text: str, separator: str = ", ") -> list[str]:
    """The clauses of a dialog text: its pieces between ``separator`` s, stripped, empty ones dropped.

    A model with ``clauses`` pooling encodes each clause alone and adds the (unnormalised) clause vectors. Its
    text side is trained so that a clause's vector is the evidence that clause gives about the image (a
    log-likelihood ratio per attribute), so the sum is the evidence of the whole dialog: every round counts
    the same however long the dialog is, "I don't know" adds nothing, and a new round costs one short pass.
    Training splits its texts with this same function, so a comma inside a description is read the same way
    in training and in serving.
    """
    return [clause for clause in (piece.strip() for piece in text.split(separator)) if clause]

"""Captions as searchable text: a lexical leg beside the dense search, fused by reciprocal rank.

When a captioner (``CHATIR_CAPTIONER``) wrote a sentence about each image, the words a person uses can find an
image the dialog encoder ranks low (a product name, a word the model never learnt). The dialog's content words
-- the description and the answers, not the questions, and not answers that deny something ("no", "there isn't
a dog") -- are matched against the stored captions inside the same scope as the vector query (Qdrant's
``MatchTextAny`` on the ``caption`` field, a full-text payload index on a server). Matching images are scored by
the summed rarity (idf) of the words they share; the two rankings are fused with reciprocal rank fusion
(``1 / (60 + rank)``, Cormack et al. 2009), so an image both legs like comes first and an image only the
captions find can still enter the top ``k``. Every hit keeps its cosine to the dialog as ``score``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from chatir.dialog import Dialog

RRF_K = 60
"""Reciprocal rank fusion's constant (the value of the original paper, used by Qdrant's own RRF)."""
MAX_TERMS = 32
"""At most this many distinct words of a dialog go into the caption query."""
MAX_SCANNED = 2000
"""At most this many caption matches are scored per search (the rest share only very common words)."""

_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_NEGATION = re.compile(r"^\s*(no|not|none|nothing|never|nope|neither|nor)\b|\b(isn't|aren't|no|not)\b", re.I)
STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        """
    about above after again against all also and any are around as at back because been before being below
    between both but can could did does doing down during each either else ever every few for from further had
    has have having her here hers him his how into its itself just like looks many maybe more most much must
    near next off once one only other our out over own picture image photo photograph shows showing same she
    should some such than that the their them then there these they this those through too under until upon very
    was were what when where which while who whom why will with would yes you your
""",
    )
)


def terms(text: str) -> list[str]:
    """Lower-case content words of ``text`` (letters only, 3+ long, no stopwords), first occurrence order."""
    return list(dict.fromkeys(w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS))


def dialog_terms(dialog: Dialog) -> list[str]:
    """The words of the description and of every answer that does not deny something (at most MAX_TERMS)."""
    parts = [dialog.caption, *(r.answer for r in dialog.rounds if not _NEGATION.search(r.answer))]
    return terms(" ".join(parts))[:MAX_TERMS]


def rank_by_terms(captions: dict[str, str], query: Sequence[str]) -> list[tuple[str, float]]:
    """``(id, score)`` best first: the summed idf (over ``captions``) of the query words each caption holds."""
    wanted = set(query)
    words = {i: set(terms(c)) & wanted for i, c in captions.items()}
    frequency = Counter(w for held in words.values() for w in held)
    n = len(captions)
    scored = [(i, sum(math.log(1.0 + n / frequency[w]) for w in held)) for i, held in words.items() if held]
    return sorted(scored, key=lambda item: (-item[1], item[0]))


def fuse(dense: Sequence[str], lexical: Sequence[str], k: int) -> list[str]:
    """The top ``k`` ids by reciprocal rank fusion of two rankings (ties: the dense ranking's order)."""
    score: dict[str, float] = {}
    for ranking in (dense, lexical):
        for rank, image_id in enumerate(ranking):
            score[image_id] = score.get(image_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    order = {image_id: n for n, image_id in enumerate(dict.fromkeys([*dense, *lexical]))}
    return sorted(score, key=lambda i: (-score[i], order[i]))[:k]


__all__ = ["MAX_SCANNED", "MAX_TERMS", "RRF_K", "STOPWORDS", "dialog_terms", "fuse", "rank_by_terms", "terms"]

"""What a user's chat message means: a command ("start over", "none of these", "it's the third one"), a
correction ("actually it's blue"), "more" (the next page of matches), "I don't know", or an ordinary
answer/description.

Only whole-message patterns are commands, so a real answer that merely contains such words ("the third one
from the left is red") stays an answer. A bare number ("3") is an answer too: it may answer "how many ...?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

IntentKind = Literal["restart", "reject_all", "more", "pick", "dont_know", "correction", "text"]

_ORDINAL_WORDS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10, "last": -1,
}  # fmt: skip
_CARDINALS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_ORDINAL = r"(?P<n>" + "|".join(sorted(_ORDINAL_WORDS, key=len, reverse=True)) + r")"
_NUMBER = r"(?P<n>\d{1,2}|" + "|".join(_CARDINALS) + r")"
_NOUN = r"(?:one|image|picture|photo|pic|result|match|option)"

_RESTART = re.compile(
    r"^(?:please\s+)?(?:let'?s\s+)?(?:start\s+(?:over|again|afresh)|restart|reset|new\s+search|"
    r"start\s+a\s+new\s+search|begin\s+again|from\s+scratch)(?:\s+please)?$"
)
_REJECT = re.compile(
    r"^(?:no[,.]?\s+)?(?:none\s+of\s+(?:these|those|them)(?:\s+(?:images|pictures|photos))?|"
    r"(?:it'?s\s+|it\s+is\s+)?not\s+(?:any\s+of\s+)?(?:these|those|them)|neither(?:\s+of\s+them)?|"
    r"none\s+(?:match|fit)|nope,?\s+none)$"
)
_MORE = re.compile(
    r"^(?:(?:please\s+)?show\s+(?:me\s+)?)?(?:some\s+)?more(?:\s+(?:matches|results|images|pictures|photos|please))?$|"
    r"^(?:next|next\s+page|see\s+more|show\s+(?:me\s+)?(?:the\s+)?next(?:\s+(?:ones|page))?)$"
)
_PICK = [
    # "it's the third one", "the 2nd image", "yes, the last one"
    re.compile(rf"^(?:(?:yes|yeah|yep)[,!]?\s+)?(?:(?:it'?s|it\s+is|that'?s|that\s+is|i\s+(?:want|pick|choose|mean))\s+)?"
               rf"(?:the\s+)?{_ORDINAL}\s+{_NOUN}(?:\s+please)?$"),
    # "it's the third", "that's the 2nd"
    re.compile(rf"^(?:it'?s|it\s+is|that'?s|that\s+is)\s+the\s+{_ORDINAL}$"),
    # "#3", "it's image 2", "pick option two" (not "number 3": it may answer "what number is on it?")
    re.compile(rf"^(?:(?:it'?s|that'?s|pick|choose)\s+)?(?:#\s*|option\s+|image\s+|picture\s+|"
               rf"photo\s+|result\s+|match\s+){_NUMBER}$"),
]  # fmt: skip
_DONT_KNOW = re.compile(
    r"^(?:i\s+)?(?:don'?t|do\s+not|dont)\s+(?:know|remember|recall)(?:\s+(?:that|either))?$|"
    r"^(?:i'?m\s+)?not\s+sure$|^no\s+idea$|^(?:i\s+)?(?:can'?t|cannot)\s+(?:tell|say|remember)$|"
    r"^dunno$|^idk$|^unsure$|^(?:i\s+have\s+)?no\s+clue$|^pass$|^skip$"
)
_CORRECTION = re.compile(
    r"^(?:actually|correction|sorry|oops|wait|i\s+meant|i\s+mean|let\s+me\s+correct|"
    r"i\s+was\s+wrong|my\s+mistake|scratch\s+that)\b[\s,:;.!-]*(?P<rest>.*)$"
)
_FILLER = re.compile(r"^(?:sorry|well|hmm+|um+|uh+|oh|honestly)\b[\s,.!-]*")
_ANSWER_START = re.compile(r"^(?:yes|yeah|yep|no|nope|i\s+don'?t|not\s+sure|there\s+(?:is|are)\s+no)\b")


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    text: str
    pick: int | None = None  # 1-based position among the shown hits; -1 = the last one


def normalize(text: str) -> str:
    """Lower case, single spaces, straight quotes, no trailing punctuation or emoji-ish decoration."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .!?;:,)(\"'*_~`")


def classify(text: str) -> Intent:
    """The intent of one chat message (``text`` is kept as the user wrote it)."""
    norm = normalize(text)
    if _RESTART.match(norm):
        return Intent("restart", text)
    if _REJECT.match(norm):
        return Intent("reject_all", text)
    if _MORE.match(norm):
        return Intent("more", text)
    for pattern in _PICK:
        if match := pattern.match(norm):
            token = match.group("n")
            position = int(token) if token.isdigit() else {**_ORDINAL_WORDS, **_CARDINALS}[token]
            if position != 0:
                return Intent("pick", text, pick=position)
    if _DONT_KNOW.match(norm) or _DONT_KNOW.match(_FILLER.sub("", norm)):
        return Intent("dont_know", text)
    if (match := _CORRECTION.match(norm)) and not _ANSWER_START.match(match.group("rest")):
        # "actually yes, two of them" answers the question; "actually it's blue" corrects an earlier answer
        return Intent("correction", text)
    return Intent("text", text)

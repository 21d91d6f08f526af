"""Masking augmentation: the probabilities hold empirically and the structure of a dialog is respected."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from chatir.dialog import Dialog, Round
from training.masking import NO_MASKING, MaskingConfig, mask_dialog

DIALOG = Dialog(
    caption="a red circle on a blue background",
    rounds=[Round(question=f"question number {i}?", answer=f"answer {i}") for i in range(1, 6)],
)
TRIALS = 20_000
TOLERANCE = 4.5 * np.sqrt(0.25 / TRIALS)  # > 4 standard deviations of a Bernoulli mean


def _rate(config: MaskingConfig, dialog: Dialog, predicate) -> float:
    rng = np.random.default_rng(0)
    return float(np.mean([predicate(mask_dialog(dialog, config, rng)) for _ in range(TRIALS)]))


def test_caption_is_dropped_with_probability_0_2_when_there_are_rounds():
    config = MaskingConfig()  # the paper's best: caption 0.2
    rate = _rate(config, DIALOG, lambda parts: parts[0] != DIALOG.caption)
    assert rate == pytest.approx(0.2, abs=TOLERANCE)
    # the rounds always stay, in order
    rng = np.random.default_rng(1)
    for _ in range(50):
        parts = mask_dialog(DIALOG, config, rng)
        assert parts[-5:] == [r.text() for r in DIALOG.rounds]


def test_caption_is_never_dropped_at_round_zero():
    caption_only = DIALOG.upto(0)
    assert _rate(MaskingConfig(caption=1.0), caption_only, lambda parts: parts == [DIALOG.caption]) == 1.0


@pytest.mark.parametrize("probability", [0.1, 0.5])
def test_round_question_and_answer_drops_follow_their_probabilities(probability):
    kept_rounds = _rate(MaskingConfig(caption=0, round=probability), DIALOG, lambda p: (len(p) - 1) / 5)
    assert kept_rounds == pytest.approx(1 - probability, abs=TOLERANCE)
    no_question = _rate(
        MaskingConfig(caption=0, question=probability),
        DIALOG,
        lambda p: np.mean(["?" not in x for x in p[1:]]),
    )
    assert no_question == pytest.approx(probability, abs=TOLERANCE)
    no_answer = _rate(
        MaskingConfig(caption=0, answer=probability),
        DIALOG,
        lambda p: np.mean([x.endswith("?") for x in p[1:]]),
    )
    assert no_answer == pytest.approx(probability, abs=TOLERANCE)


def test_token_drop_rate():
    words = len(DIALOG.text().split())
    kept = _rate(MaskingConfig(caption=0, token=0.3), DIALOG, lambda p: len(" ".join(p).split()) / words)
    assert kept == pytest.approx(0.7, abs=TOLERANCE)


def test_never_empty_and_no_masking_is_identity():
    rng = np.random.default_rng(2)
    everything = MaskingConfig(caption=1.0, round=1.0)
    assert mask_dialog(DIALOG, everything, rng) == [DIALOG.caption]
    assert mask_dialog(DIALOG, NO_MASKING, rng) == DIALOG.parts()
    with pytest.raises(ValidationError):
        MaskingConfig(caption=1.5)

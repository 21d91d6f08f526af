"""The symbolic ceiling ranks by facts satisfied; question quality flags absent objects and settled facts."""

from __future__ import annotations

from chatir.dialog import Dialog, Round
from evaluation.symbolic import (
    SymbolicRetriever,
    consistent_sizes,
    padded_ranks,
    question_quality,
    world_caption,
)
from world.dialogs import dialog_for
from world.generator import image_relpath
from world.oracle import Oracle
from world.scene import sample_scene


def test_ceiling_ranks_the_target_by_facts_and_shrinks_the_consistent_set():
    scenes = [sample_scene(31, i) for i in range(800)]
    retriever = SymbolicRetriever(scenes, seed=0)
    results = []
    for target in range(30):
        dialog = dialog_for(31, target)
        caption = world_caption(image_relpath(31, target), dialog.caption)
        assert caption is not None and caption.matches(scenes[target])
        result = retriever.evaluate(target, caption, dialog)
        assert len(result.ranks) == 11 and all(r >= 1 for r in result.ranks)
        assert result.consistent == sorted(result.consistent, reverse=True)  # facts only ever narrow it
        assert result.ranks[-1] <= result.consistent[-1]  # all consistent images tie at the top
        results.append(result)
    ranks = padded_ranks(results, 10)
    assert (ranks[:, 10] <= ranks[:, 0]).mean() > 0.9
    assert consistent_sizes(results, 10)[10] <= consistent_sizes(results, 10)[0]


def test_wrong_answers_lower_the_target():
    scenes = [sample_scene(32, i) for i in range(300)]
    retriever = SymbolicRetriever(scenes, seed=1)
    truth = Oracle(scenes[0]).answer("how many shapes are there?")
    wrong = "nine" if truth != "nine" else "one"
    right = retriever.evaluate(
        0, None, Dialog(caption="x", rounds=[Round(question="how many shapes are there?", answer=truth)])
    )
    lied = retriever.evaluate(
        0, None, Dialog(caption="x", rounds=[Round(question="how many shapes are there?", answer=wrong)])
    )
    assert right.ranks[1] < lied.ranks[1]


def test_absent_and_settled_questions_are_flagged():
    scenes = [sample_scene(33, i) for i in range(500)]
    retriever = SymbolicRetriever(scenes, seed=0)
    target = next(i for i, s in enumerate(scenes) if not s.select(shape="circle"))
    scene = scenes[target]
    background = Oracle(scene).answer("what colour is the background?")
    dialog = Dialog(
        caption="x",
        rounds=[
            Round(question="what colour is the background?", answer=background),
            Round(question="what colour is the circle?", answer="there is no circle"),
            Round(question="what colour is the background?", answer=background),
        ],
    )
    result = retriever.evaluate(target, None, dialog)
    assert result.absent == [False, True, False]
    assert result.settled[0] is False and result.settled[2] is True
    quality = question_quality([result])
    assert quality["asked"] == 3 and round(quality["absent_or_settled_pct"]) == 67


def test_world_caption_is_none_for_free_text():
    assert world_caption(image_relpath(31, 0), "a big olive ball somewhere") is None

"""Near-miss scenes and the consistency check that keeps a dialog's true matches out of the negatives."""

from __future__ import annotations

import random

import pytest

from world.dialogs import dialog_for
from world.language import caption_for
from world.perturb import IDK, consistent, perturb
from world.scene import Scene, sample_scene


@pytest.mark.parametrize("index", range(150))
def test_perturb_gives_a_valid_different_scene(index):
    scene = sample_scene(21, index)
    other = perturb(scene, random.Random(index))
    Scene.model_validate(other.model_dump())  # one object per cell, valid values
    assert other != scene
    assert all(o.colour != other.background for o in other.objects) or other.background == scene.background


def test_consistent_accepts_the_target_and_rejects_what_an_answer_rules_out():
    for index in range(40):
        scene = sample_scene(22, index)
        caption = caption_for(22, index, scene)
        dialog = dialog_for(22, index)
        facts = [(r.question, r.answer) for r in dialog.rounds]
        assert consistent(scene, caption, facts)
        for seed in range(10):
            near = perturb(scene, random.Random(seed))
            if not consistent(near, caption, facts):
                from world.oracle import Oracle

                differs = [q for q, a in facts if Oracle(near).answer(q) != a]
                assert differs or not caption.matches(near)


def test_i_dont_know_rules_nothing_out():
    scene, other = sample_scene(23, 0), sample_scene(23, 1)
    assert consistent(other, None, [("what colour is the background?", IDK)])
    assert not consistent(other, None, [("how many shapes are there?", "nine")])
    assert consistent(scene, None, [])

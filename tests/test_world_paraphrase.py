"""The training-only paraphrase layer: free descriptions are true of their scene, rewordings keep meaning."""

from __future__ import annotations

import random

import pytest

from world.language import make_caption
from world.paraphrase import free_description, idk_answer, reword
from world.scene import sample_scene
from world.stats import SceneTable


@pytest.mark.parametrize("index", range(200))
def test_free_descriptions_are_true_of_their_scene(index):
    scene = sample_scene(11, index)
    caption = free_description(scene, random.Random(index))
    assert caption.text and caption.claims.groups
    assert caption.matches(scene)


def test_free_descriptions_narrow_the_world_like_captions_and_use_other_words():
    scenes = [sample_scene(12, i) for i in range(3000)]
    table = SceneTable.from_scenes(scenes)
    free = [free_description(s, random.Random(i)) for i, s in enumerate(scenes[:300])]
    template = [make_caption(s, random.Random(i)) for i, s in enumerate(scenes[:300])]
    free_fit = sum(int(table.caption_mask(c).sum()) for c in free) / len(free)
    template_fit = sum(int(table.caption_mask(c).sum()) for c in template) / len(template)
    assert 1 <= free_fit < 3000 and 1 <= template_fit < 3000
    words = {w for c in free for w in c.text.split()}
    template_words = {w for c in template for w in c.text.split()}
    assert {"ball", "lilac", "olive", "mauve", "beige", "tiles"} & words
    assert len(words - template_words) > 50
    assert any(t in c.text for c in free for t in ("no ", "nothing", "empty", "isn't"))  # negations occur


def test_reword_keeps_the_kind_of_answer():
    rng = random.Random(0)
    assert reword("yes", rng) in {
        "yes",
        "yep",
        "yeah",
        "yes it is",
        "correct",
        "that's right",
        "sure",
        "uh-huh",
    }
    assert reword("no", rng) in {"no", "nope", "not really", "no it isn't", "negative", "nah"}
    forms = {reword("there is no star", random.Random(i)) for i in range(40)}
    assert all("star" in f for f in forms) and len(forms) > 2
    assert {reword("two", random.Random(i), rate=1.0) for i in range(20)} <= {"two", "2"}
    assert idk_answer(rng)

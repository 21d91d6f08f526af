"""The oracle answerer on a table of phrasings, the question bank and its answer sets."""

from __future__ import annotations

import pytest

from world.oracle import IDK, Oracle
from world.questions import possible_answers, question_bank
from world.scene import Scene, WorldObject, sample_scene


def _obj(shape, colour, size, pattern, position) -> WorldObject:
    return WorldObject(shape=shape, colour=colour, size=size, pattern=pattern, position=position)


# three objects, dark, framed, yellow tiled floor
SCENE_A = Scene(
    objects=(
        _obj("star", "red", "large", "striped", "top left"),
        _obj("circle", "blue", "small", "plain", "centre"),
        _obj("triangle", "green", "medium", "dotted", "bottom right"),
    ),
    background="yellow",
    backdrop="tiled",
    lighting="dark",
    frame=True,
)
# a single object on plain black
SCENE_B = Scene(
    objects=(_obj("heart", "white", "medium", "checkered", "right"),),
    background="black",
    backdrop="plain",
    lighting="bright",
    frame=False,
)
# two stars and a square on a gray gradient
SCENE_C = Scene(
    objects=(
        _obj("star", "red", "small", "plain", "top"),
        _obj("square", "red", "medium", "plain", "left"),
        _obj("star", "blue", "large", "striped", "bottom left"),
    ),
    background="gray",
    backdrop="gradient",
    lighting="bright",
    frame=False,
)
SCENES = {"A": SCENE_A, "B": SCENE_B, "C": SCENE_C}

TABLE = [
    # open attribute questions
    ("A", "what colour is the star?", "red"),
    ("A", "What color is the star", "red"),
    ("A", "what's the colour of the star?", "red"),
    ("A", "the star's colour?", "red"),
    ("A", "what colour is the light blue circle?", "blue"),
    ("A", "what shape is the big object?", "a star"),
    ("A", "what shape is the huge thing?", "a star"),
    ("A", "which shape is blue?", "a circle"),
    ("A", "what is the shape of the green object?", "a triangle"),
    ("A", "what kind of shape is in the bottom right corner?", "a triangle"),
    ("A", "what size is the circle?", "small"),
    ("A", "how big is the triangle?", "medium"),
    ("A", "what pattern does the triangle have?", "dotted"),
    ("A", "what colour is the biggest shape?", "red"),
    ("A", "what colour is the smallest object?", "blue"),
    ("A", "what colour is the star on the left?", "red"),
    ("A", "what colours are the shapes?", "red, green and blue"),
    ("A", "what objects are in the image?", "a circle, a triangle and a star"),
    ("A", "what is in the top left?", "a large red striped star"),
    # existence
    ("A", "is there a circle?", "yes"),
    ("A", "are there any hearts?", "no"),
    ("A", "any green shapes?", "yes"),
    ("A", "do you see a red star?", "yes"),
    ("A", "is there a blue star?", "no"),
    ("A", "is there a crimson star?", "yes"),
    ("A", "is there a red star and a blue circle?", "yes"),
    ("A", "is there a red star and a blue square?", "no"),
    ("A", "is there a star or a heart?", "yes"),
    ("A", "is there anything in the middle?", "yes"),
    ("A", "is the top right empty?", "yes"),
    ("A", "is the bottom right corner empty?", "no"),
    ("A", "is there a red star on a yellow background?", "yes"),
    ("A", "is there a red star on a blue background?", "no"),
    # counting
    ("A", "how many shapes are there?", "three"),
    ("A", "how many objects are in the picture?", "three"),
    ("A", "how many red objects?", "one"),
    ("A", "how many stars are there?", "one"),
    ("A", "how many purple things are there?", "none"),
    ("A", "count the shapes", "three"),
    ("A", "how many shapes are on the right?", "one"),
    ("A", "how many colours are there?", "three"),
    ("A", "are there more than two shapes?", "yes"),
    ("A", "is there only one star?", "yes"),
    ("A", "are there two stars?", "no"),
    # position
    ("A", "where is the triangle?", "bottom right"),
    ("A", "where's the star?", "top left"),
    ("A", "where is the circle?", "in the centre"),
    ("A", "is the circle on the left?", "no"),
    ("A", "is the star on the left?", "yes"),
    ("A", "is the star in the top left corner?", "yes"),
    ("A", "is the triangle at the top?", "no"),
    ("A", "is the object on the left red?", "yes"),
    # pattern and attribute checks
    ("A", "is the square striped?", "there is no square"),
    ("A", "is the star striped?", "yes"),
    ("A", "does the triangle have polka dots?", "yes"),
    ("A", "is the circle patterned?", "no"),
    ("A", "is the big object red?", "yes"),
    ("A", "are all the shapes red?", "no"),
    ("A", "is it a star?", "one of them is"),
    ("A", "are the shapes the same colour?", "no"),
    # choices
    ("A", "is the star plain or striped?", "striped"),
    ("A", "is the star red or blue?", "red"),
    ("A", "is the circle big or small?", "small"),
    ("A", "is the star green or blue?", "neither, it is red"),
    # the scene
    ("A", "what is the background colour?", "yellow"),
    ("A", "what colour is the background?", "yellow"),
    ("A", "is the background yellow?", "yes"),
    ("A", "is the background blue or green?", "neither, it is yellow"),
    ("A", "what kind of background is it?", "a tiled floor"),
    ("A", "is there a tiled floor?", "yes"),
    ("A", "is it dark?", "yes"),
    ("A", "is it daytime?", "no"),
    ("A", "is it day or night?", "night"),
    ("A", "is there a frame?", "yes"),
    ("A", "does the picture have a border?", "yes"),
    ("A", "is the picture taken at night?", "yes"),
    ("A", "what is the lighting like?", "dark"),
    ("A", "is the background solid or patterned?", "patterned"),
    ("A", "is the background striped?", "no"),
    # a single object: "it"
    ("B", "what colour is it?", "white"),
    ("B", "is it a heart?", "yes"),
    ("B", "is it checkered?", "yes"),
    ("B", "what shape is it?", "a heart"),
    ("B", "where is the heart?", "on the right"),
    ("B", "is the heart in the middle?", "no"),
    ("B", "is the background black?", "yes"),
    ("B", "is it bright?", "yes"),
    ("B", "is there a frame?", "no"),
    ("B", "is the background plain?", "yes"),
    ("B", "what does the background look like?", "plain black"),
    ("B", "how many shapes are there?", "one"),
    ("B", "is there more than one shape?", "no"),
    ("B", "what time of day is it?", "day"),
    # several objects of one kind
    ("C", "what colour is the star?", "red and blue"),
    ("C", "where are the stars?", "top middle and bottom left"),
    ("C", "how many stars are there?", "two"),
    ("C", "what shape is red?", "a square and a star"),
    ("C", "are there two stars?", "yes"),
    ("C", "is the star red?", "one of them is"),
    ("C", "are all the stars red?", "no"),
    ("C", "what shape is the big object?", "a star"),
    ("C", "what shapes are red?", "a square and a star"),
    ("C", "what colour is the big star?", "blue"),
    ("C", "are the stars the same colour?", "no"),
    ("C", "is the background a gradient?", "yes"),
    ("C", "is the square on the left?", "yes"),
    ("C", "what is in the middle left?", "a medium-sized red square"),
    ("C", "is there anything in the bottom right?", "no"),
    ("C", "what colour is the ring?", "there is no ring"),
    ("C", "what shape is at the top?", "a star"),
    ("C", "what shape is the small red object?", "a star"),
    ("C", "what objects are in the image?", "a square and two stars"),
    ("C", "is the background solid or patterned?", "neither, it is a gradient"),
]

GIBBERISH = [
    "",
    "   ",
    "asdf qwerty",
    "what is the meaning of life?",
    "is the dog happy?",
    "tell me a joke",
    "how are you?",
    "is the star bigger than the square?",
    "???",
]


@pytest.mark.parametrize(("scene", "question", "expected"), TABLE, ids=[f"{s}:{q}" for s, q, _ in TABLE])
def test_oracle_answers_phrasings(scene: str, question: str, expected: str) -> None:
    assert Oracle(SCENES[scene]).answer(question) == expected


@pytest.mark.parametrize("question", GIBBERISH)
def test_oracle_does_not_guess(question: str) -> None:
    assert Oracle(SCENE_A).answer(question) == IDK


def test_table_is_large_and_covers_every_kind() -> None:
    assert len(TABLE) >= 40
    starts = {q.split()[0].lower() for _, q, _ in TABLE}
    assert {"what", "is", "how", "where", "are", "any", "does", "which"} <= starts


def test_bank_is_a_few_hundred_distinct_questions() -> None:
    bank = question_bank()
    assert 200 <= len(bank) <= 600
    assert len(set(bank)) == len(bank)
    assert bank == question_bank()  # fixed order


def test_every_bank_question_is_understood_and_answered_within_its_answer_set() -> None:
    bank = question_bank()
    answer_sets = {q: set(possible_answers(q)) for q in bank}
    assert all(len(a) >= 2 for a in answer_sets.values())
    seen: dict[str, set[str]] = {q: set() for q in bank}
    scenes = [SCENE_A, SCENE_B, SCENE_C] + [sample_scene(11, i) for i in range(150)]
    for scene in scenes:
        oracle = Oracle(scene)
        for question in bank:
            answer = oracle.answer(question)
            assert answer != IDK, question
            assert answer in answer_sets[question], (question, answer)
            seen[question].add(answer)
    # every question tells scenes apart (it gets at least two different answers over the sample)
    assert all(len(answers) >= 2 for answers in seen.values()), [q for q, a in seen.items() if len(a) < 2]


def test_possible_answers_refuses_what_it_cannot_list() -> None:
    with pytest.raises(ValueError):
        possible_answers("is the dog happy?")
    with pytest.raises(ValueError):
        possible_answers("what is in the top left?")  # open-ended description


def test_possible_answers_examples() -> None:
    assert possible_answers("is there a red star?") == ["yes", "no"]
    assert possible_answers("how many shapes are there?") == ["one", "two", "three", "four"]
    colours = possible_answers("what colour is the star?")
    assert {"red", "red and blue", "several colours", "there is no star"} <= set(colours)
    assert "yellow" in possible_answers("what colour is the background?")

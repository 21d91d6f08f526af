"""``chatir world ...``: generate worlds and splits, ask the oracle, measure how much captions say.

Imports of the world modules happen inside the commands so that ``chatir --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

world_app = typer.Typer(
    name="world",
    help="The offline world: procedural images with ground truth, captions, oracle and dialogs.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Adds the ``world`` sub-command group to the ``chatir`` app."""
    app.add_typer(world_app, name="world")


@world_app.command("generate")
def generate(
    out: Annotated[Path, typer.Argument(help="Folder of the world (created; resumed when it exists).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 1000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="World seed: image i of seed s is the same everywhere.")
    ] = 0,
    size: Annotated[
        int, typer.Option("--size", min=16, help="Image side in pixels (96: the starter's input).")
    ] = 96,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes (default: all cores).")
    ] = None,
) -> None:
    """Render N images of the world with SEED into OUT, with manifest.jsonl and world.json."""
    import time

    from world.generator import generate_world

    start = time.perf_counter()
    info = generate_world(out, n, seed, size=size, workers=workers, progress=True)
    seconds = time.perf_counter() - start
    typer.echo(f"world seed {info.seed}: {info.n} images of {info.size} px in {out} ({seconds:.1f} s)")


@world_app.command("bank")
def bank(
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON here (default: stdout).")] = None,
) -> None:
    """The world's question bank as JSON ([{question, answers}]): what agent/questioners/banks/world.json
    ships. Regenerate it after changing the world's questions."""
    import json

    from world.questions import bank_entries

    text = json.dumps(bank_entries(), indent=1) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{out}: {len(bank_entries())} questions")


@world_app.command("splits")
def splits(
    root: Annotated[Path, typer.Argument(help="Folder for train/, val/, test/ and the dialog files.")],
    train: Annotated[int, typer.Option("--train", min=0, help="Training images (one dialog each).")] = 5000,
    val: Annotated[int, typer.Option("--val", min=0, help="Validation images.")] = 1000,
    test: Annotated[int, typer.Option("--test", min=0, help="Test corpus images.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Master seed (each split derives its own).")] = 0,
    size: Annotated[
        int, typer.Option("--size", min=16, help="Image side in pixels (96: the starter's input).")
    ] = 96,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes (default: all cores).")
    ] = None,
    val_dialogs: Annotated[
        int | None, typer.Option(help="Dialogs for the first val images (default all).")
    ] = None,
    test_dialogs: Annotated[
        int | None, typer.Option(help="Dialogs for the first test images (default all).")
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, max=50, help="Question rounds per dialog.")] = 10,
) -> None:
    """Make train/val/test worlds and their dialogs in ChatIR's JSON format."""
    from world.dialogs import make_splits

    info = make_splits(
        root,
        train,
        val,
        test,
        seed,
        size=size,
        workers=workers,
        val_dialogs=val_dialogs,
        test_dialogs=test_dialogs,
        rounds=rounds,
        progress=True,
    )
    for name, split in info.splits.items():
        typer.echo(
            f"{name}: {split.n_images} images (seed {split.seed}) in {root / split.world_dir}, "
            f"{split.n_dialogs} dialogs in {root / split.dialogs_file}"
        )


@world_app.command("ask")
def ask(
    image: Annotated[
        str, typer.Argument(help="A world image id (e.g. w7-000042) or the path of a world image.")
    ],
    question: Annotated[str, typer.Argument(help="A question in English, e.g. 'what colour is the star?'.")],
    show_scene: Annotated[bool, typer.Option("--scene", help="Also print the ground-truth scene.")] = False,
) -> None:
    """Answer a question about one world image, as the oracle does in dialogs and evaluation."""
    from world.generator import WorldError
    from world.oracle import Oracle

    try:
        oracle = Oracle.for_image(image)
    except ValueError as error:
        raise WorldError(str(error)) from None
    if show_scene:
        typer.echo(oracle.scene.model_dump_json(indent=2))
    typer.echo(oracle.answer(question))


@world_app.command("caption")
def caption(
    image: Annotated[
        str, typer.Argument(help="A world image id (e.g. w7-000042) or the path of a world image.")
    ],
    dialog: Annotated[bool, typer.Option("--dialog", help="Print the whole generated dialog.")] = False,
) -> None:
    """Print the caption (or the dialog) generated for one world image."""
    from world.dialogs import dialog_for
    from world.generator import WorldError
    from world.language import caption_for
    from world.scene import parse_image_id, sample_scene

    name = Path(image).stem if image.lower().endswith(".png") else image
    try:
        seed, index = parse_image_id(name)
    except ValueError as error:
        raise WorldError(str(error)) from None
    if dialog:
        for part in dialog_for(seed, index).parts():
            typer.echo(part)
    else:
        typer.echo(caption_for(seed, index, sample_scene(seed, index)).text)


@world_app.command("stats")
def stats(
    corpus: Annotated[
        int, typer.Option("--corpus", min=1, help="Corpus size (scenes sampled, no images needed).")
    ] = 50000,
    captions: Annotated[
        int, typer.Option("--captions", min=1, help="Captions measured (first images).")
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="World seed of the corpus.")] = 0,
) -> None:
    """How many corpus images each caption alone fits (ChatIR needs this to be large)."""
    from tqdm import tqdm

    from world.language import caption_for
    from world.scene import sample_scene
    from world.stats import SceneTable, caption_match_counts, summarize

    scenes = [sample_scene(seed, i) for i in tqdm(range(corpus), desc="scenes", unit="scene")]
    texts = [caption_for(seed, i, scenes[i]) for i in range(min(captions, corpus))]
    counts = caption_match_counts(SceneTable.from_scenes(scenes), texts)
    summary = summarize(counts)
    typer.echo(f"corpus of {corpus} scenes (seed {seed}), {summary['captions']} captions:")
    typer.echo(
        f"  images a caption fits: mean {summary['mean']:.0f}, median {summary['median']:.0f}, "
        f"quartiles {summary['p25']:.0f}-{summary['p75']:.0f}, min {summary['min']}, max {summary['max']}"
    )
    typer.echo(f"  captions fitting at most 10 images: {summary['share_at_most_10']:.1%}")

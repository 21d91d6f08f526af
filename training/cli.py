"""``chatir train`` (ChatIR dialog-encoder training) and ``chatir starter build|eval`` (the starter model).

Heavy imports (torch, transformers) happen inside the commands so that ``chatir --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatir.errors import ChatIRError

starter_app = typer.Typer(
    help="The project's own starter model, trained on the procedural world.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(starter_app, name="starter")


def _validated(factory, **values):
    from pydantic import ValidationError

    try:
        return factory(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in error.errors()
        )
        raise ChatIRError(f"invalid training options: {problems}") from None


def train(
    dialogs: Annotated[Path, typer.Option(help="Training dialogs (ChatIR JSON: [{'img', 'dialog'}]).")],
    images: Annotated[Path, typer.Option(help="Folder the dialogs' 'img' paths are relative to.")],
    model: Annotated[str, typer.Option(help="Hub id, local model folder or 'starter'.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, log.jsonl, final/.")],
    val_dialogs: Annotated[Path | None, typer.Option(help="Validation dialogs (ChatIR JSON).")] = None,
    val_images: Annotated[
        Path | None, typer.Option(help="Validation image root (its images are the corpus).")
    ] = None,
    val_corpus: Annotated[Path | None, typer.Option(help="List file of the validation corpus.")] = None,
    val_limit: Annotated[int, typer.Option(min=1, help="Validate on at most this many dialogs.")] = 500,
    loss: Annotated[str, typer.Option(help="recall (Recall@K surrogate) or infonce.")] = "recall",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=2, help="Dialogs per optimizer step.")] = 64,
    grad_accum: Annotated[
        int, typer.Option(min=1, help="Micro-batches per step (same gradient, less memory).")
    ] = 1,
    lr: Annotated[float, typer.Option(help="Learning rate of the first epoch.")] = 5e-5,
    lr_decay: Annotated[float, typer.Option(help="Learning-rate factor per epoch.")] = 0.93,
    min_lr: Annotated[float, typer.Option(help="Learning-rate floor.")] = 1e-6,
    weight_decay: Annotated[float, typer.Option()] = 0.01,
    mask_caption: Annotated[
        float, typer.Option(help="Drop the caption with this probability when i > 0.")
    ] = 0.2,
    mask_question: Annotated[float, typer.Option(help="Drop each question with this probability.")] = 0.0,
    mask_answer: Annotated[float, typer.Option(help="Drop each answer with this probability.")] = 0.0,
    mask_round: Annotated[float, typer.Option(help="Drop each whole round with this probability.")] = 0.0,
    mask_token: Annotated[float, typer.Option(help="Drop each word with this probability.")] = 0.0,
    hard_negatives: Annotated[
        int, typer.Option(min=0, help="Nearest cached images per target added to the gallery.")
    ] = 0,
    random_negatives: Annotated[
        int, typer.Option(min=0, help="Random cached images added to each gallery.")
    ] = 0,
    train_text_layers: Annotated[
        int | None, typer.Option(min=0, help="Train only the top N text layers.")
    ] = None,
    max_steps_per_epoch: Annotated[int | None, typer.Option(min=1, help="Cut epochs short.")] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Use only the first N training dialogs.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[str, typer.Option(help="Mixed precision on CUDA: auto, bf16, fp16 or off.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, help="Also checkpoint every N steps.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
) -> None:
    """Train a dialog encoder ChatIR's way: partial dialogs D_i against frozen, cached image embeddings."""
    from chatir.settings import get_settings
    from training.config import TrainConfig
    from training.dialog_task import train_dialog_encoder
    from training.masking import MaskingConfig

    masking = _validated(
        MaskingConfig,
        caption=mask_caption,
        question=mask_question,
        answer=mask_answer,
        round=mask_round,
        token=mask_token,
    )
    config = _validated(
        TrainConfig,
        dialogs=dialogs,
        images=images,
        val_dialogs=val_dialogs,
        val_images=val_images,
        val_corpus=val_corpus,
        val_limit=val_limit,
        model=model,
        out=out,
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        lr_decay=lr_decay,
        min_lr=min_lr,
        weight_decay=weight_decay,
        masking=masking,
        hard_negatives=hard_negatives,
        random_negatives=random_negatives,
        train_text_layers=train_text_layers,
        max_steps_per_epoch=max_steps_per_epoch,
        limit=limit,
        seed=seed,
        device=device,
        amp=amp,
        num_threads=threads,
        checkpoint_every_steps=checkpoint_every,
    )
    summary = train_dialog_encoder(config, get_settings(), resume=resume)
    last = summary.validation[-1] if summary.validation else {}
    typer.echo(f"trained {summary.epochs} epochs ({summary.steps} steps) in {summary.seconds / 60:.1f} min")
    if last.get("hits@10"):
        typer.echo("validation Hits@10 per round: " + " ".join(f"{h:.1f}" for h in last["hits@10"]))
    typer.echo(f"model: {summary.final_model}  (use it with CHATIR_MODEL={summary.final_model})")


@starter_app.command("build")
def starter_build(
    force: Annotated[bool, typer.Option("--force", help="Start over (discard the work folder).")] = False,
    work: Annotated[
        Path | None, typer.Option(help="Work folder (default CHATIR_HOME/starter-build).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where the shipped weights go (default: the package).")
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="torch CPU threads (1 on a shared machine, 2 on an idle one).")
    ] = 1,
    size: Annotated[
        str,
        typer.Option(help="full (the shipped recipe), quick (about 20 CPU minutes) or tiny (a smoke run)."),
    ] = "full",
    recipe: Annotated[
        str,
        typer.Option(
            help="scene-code (starter v4, the shipped one), joint (starter v2) or staged (the first starter's)."
        ),
    ] = "scene-code",
    init_text: Annotated[
        Path | None,
        typer.Option(
            help="scene-code recipe: a trained starter file whose text side the text run starts from."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="joint recipe: auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[
        int | None, typer.Option(min=0, help="joint recipe: processes drawing batches (default: cores - 1).")
    ] = None,
) -> None:
    """Build the starter model from scratch (resumable); see docs/starter-model.md for both recipes."""
    from chatir.settings import get_settings
    from retriever_service.models.starter import STARTER_WEIGHTS_DIR, ensure_starter_model
    from training.starter import build_starter
    from training.starter_spec import StarterSpec, scene_code_recipe, scene_code_tiny

    settings = get_settings()
    if size not in ("full", "quick", "tiny"):
        raise ChatIRError(f"--size must be full, quick or tiny, not {size!r}")
    if recipe not in ("scene-code", "joint", "staged"):
        raise ChatIRError(f"--recipe must be scene-code, joint or staged, not {recipe!r}")
    if init_text is not None and not init_text.is_file():
        raise ChatIRError(f"--init-text {init_text} is not a file")
    if recipe == "scene-code":
        spec = scene_code_recipe(quick=size == "quick") if size != "tiny" else scene_code_tiny()
    elif recipe == "joint":
        spec = StarterSpec.joint_recipe(quick=size == "quick") if size != "tiny" else StarterSpec.joint_tiny()
    else:
        spec = StarterSpec() if size != "tiny" else StarterSpec.tiny()
    weights_out = out or STARTER_WEIGHTS_DIR
    result = build_starter(
        spec,
        work=work or settings.home / "starter-build",
        weights_out=weights_out,
        settings=settings,
        force=force,
        threads=threads,
        device=device,
        workers=workers,
        init_text=init_text,
    )
    total = sum(result.seconds.values())
    typer.echo(
        f"built in {total / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        + ")"
    )
    hits = result.dialog_validation.get("hits@10")
    if hits:
        typer.echo("validation Hits@10 per round: " + " ".join(f"{h:.1f}" for h in hits))
    typer.echo(f"weights: {result.weights} ({result.weights.stat().st_size / 1e6:.1f} MB)")
    if Path(weights_out).resolve() == STARTER_WEIGHTS_DIR:
        typer.echo(f"assembled: {ensure_starter_model(settings)}")


@starter_app.command("answers")
def starter_answers(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where the answer model goes (default: the one shipped for --bank, in the package)."
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="Model (hub id, folder or 'starter'); default CHATIR_MODEL.")
    ] = "",
    bank: Annotated[
        str, typer.Option(help="Question bank whose answers are read ('world' or a JSON file).")
    ] = "world",
    images: Annotated[int, typer.Option(min=10, help="Training-world pictures to fit on.")] = 8000,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps (minibatches of 256).")] = 1500,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
) -> None:
    """Fit the bank's answer model (P(answer | image) read from image embeddings) on training-world pictures."""
    import torch

    from agent.questioners import load_bank
    from agent.questioners.answer_model import SHIPPED
    from chatir.settings import get_settings
    from retriever_service.models.loader import load_model
    from training.answer_model import AnswerRecipe, fit_answer_model

    settings = get_settings()
    target = out or SHIPPED.get(bank)
    if target is None:
        raise ChatIRError(f"no answer model ships for the bank {bank!r}: give --out")
    torch.set_num_threads(threads)
    retrieval_model = load_model(model or settings.model, settings=settings)
    answer_model = fit_answer_model(
        retrieval_model, load_bank(bank), AnswerRecipe(images=images, steps=steps), log=typer.echo
    )
    path = answer_model.save(target)
    typer.echo(f"answer model: {path} ({path.stat().st_size / 1e6:.1f} MB), for {answer_model.model}")


@starter_app.command("caption-reader")
def starter_caption_reader(
    out: Annotated[
        Path | None,
        typer.Option(help="Where the reader goes (default: the one shipped for --bank, in the package)."),
    ] = None,
    bank: Annotated[
        str, typer.Option(help="Question bank whose answers are read ('world' or a JSON file).")
    ] = "world",
    descriptions: Annotated[
        int, typer.Option(min=10, help="Training-world descriptions to fit on.")
    ] = 40_000,
    reference: Annotated[
        int, typer.Option(min=10, help="Training-world scenes that decide what a description implies.")
    ] = 20_000,
    min_fit: Annotated[
        int, typer.Option(min=1, help="Reference scenes a description must fit to be labelled.")
    ] = 20,
    chance: Annotated[
        float,
        typer.Option(min=1e-9, max=1.0, help="Agreements likelier than this by chance are not 'implied'."),
    ] = 0.01,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps (minibatches of 256).")] = 2000,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
) -> None:
    """Fit the bank's caption reader (which answers a description already implies) on training-world text."""
    import torch

    from agent.questioners import load_bank
    from agent.questioners.caption_reader import SHIPPED
    from training.caption_reader import CaptionReaderRecipe, fit_caption_reader

    target = out or SHIPPED.get(bank)
    if target is None:
        raise ChatIRError(f"no caption reader ships for the bank {bank!r}: give --out")
    torch.set_num_threads(threads)
    recipe = CaptionReaderRecipe(
        descriptions=descriptions,
        reference=reference,
        min_fit=min_fit,
        chance=chance,
        steps=steps,
        held_out=min(1500, descriptions // 10),
    )
    reader = fit_caption_reader(load_bank(bank), recipe, log=typer.echo)
    path = reader.save(target)
    typer.echo(f"caption reader: {path} ({path.stat().st_size / 1e6:.1f} MB)")


@starter_app.command("eval")
def starter_eval(
    work: Annotated[
        Path | None, typer.Option(help="The build's work folder (default CHATIR_HOME/starter-build).")
    ] = None,
    corpus: Annotated[int, typer.Option(min=100, help="Images in the held-out test corpus.")] = 50_000,
    dialogs: Annotated[int, typer.Option(min=1, help="Test dialogs (targets among the corpus).")] = 500,
    out: Annotated[Path | None, typer.Option(help="Report folder (default WORK/eval).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
) -> None:
    """Hits@10 per round of (a) zero-shot, (b) dialog-trained, (c) no caption masking; trains (c) if missing."""
    from chatir.settings import get_settings
    from evaluation.report import markdown_table
    from training.starter_eval import evaluate_starter

    settings = get_settings()
    results, files = evaluate_starter(
        work or settings.home / "starter-build",
        corpus_size=corpus,
        n_dialogs=dialogs,
        out=out,
        settings=settings,
        threads=threads,
    )
    typer.echo(markdown_table(results))
    typer.echo(f"report: {files.markdown_path}")

"""``chatir eval``: ChatIR's protocol on fixed dialog files or live with questioners on a world.

Imports stay light here (torch, transformers and the agent are imported inside the command).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

QUESTIONER_ALIASES = {
    "none": "none",
    "random": "random",
    "infogain": "info_gain",
    "info_gain": "info_gain",
    "llm": "llm",
}


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{what} must be a comma-separated list of whole numbers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{what} must list numbers >= 1")
    return values


def parse_questioners(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in QUESTIONER_ALIASES]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown questioner {', '.join(unknown) or '(none given)'}; choose from none, random, infogain, llm"
        )
    return list(dict.fromkeys(names))


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        dialogs: Annotated[
            list[Path] | None,
            typer.Option("--dialogs", help="ChatIR-format dialog JSON (repeat to compare several files)."),
        ] = None,
        images: Annotated[
            Path | None, typer.Option(help="Image root; dialog 'img' paths are relative to it.")
        ] = None,
        corpus: Annotated[
            Path | None,
            typer.Option(
                help="Corpus list (JSON list or one path per line, relative to --images); "
                "default: every image under --images."
            ),
        ] = None,
        world: Annotated[
            Path | None, typer.Option(help="A world folder: live evaluation with questioners.")
        ] = None,
        questioner: Annotated[
            str, typer.Option(help="World mode: comma list of none,random,infogain,llm.")
        ] = ("none,random,infogain"),
        n_dialogs: Annotated[
            int | None, typer.Option(min=1, help="Evaluate the first N dialogs only.")
        ] = None,
        split: Annotated[
            str, typer.Option(help="World mode: which dialog split to take targets from.")
        ] = "test",
        bank: Annotated[
            str,
            typer.Option(
                help="World mode: question bank of random/infogain ('world', 'generic' or a JSON file)."
            ),
        ] = "world",
        rounds: Annotated[
            int, typer.Option(min=1, max=50, help="Rounds after the caption (ChatIR: 10).")
        ] = 10,
        out: Annotated[Path, typer.Option(help="Output folder for results.json/.csv/.md/.png.")] = Path(
            "eval-out"
        ),
        model: Annotated[
            str | None, typer.Option(help="Model (hub id, folder or 'starter'); default CHATIR_MODEL.")
        ] = None,
        k: Annotated[str, typer.Option(help="Ks for Hits@K and Recall@K (Hits@10 always).")] = "1,5,10",
        ties: Annotated[
            str, typer.Option(help="Score ties: index (ChatIR's argsort, stable), optimistic, pessimistic.")
        ] = "index",
        protocol: Annotated[
            str,
            typer.Option(
                help="'chatir': ChatIR's exact settings (tail truncation, BLIP 200 tokens, fp32, index ties, "
                "a complete --corpus list in its order), recorded in the report."
            ),
        ] = "default",
        answerer: Annotated[
            str | None,
            typer.Option(
                help="Live on real images (--dialogs gives targets and first descriptions, --images the corpus): "
                "who answers for the user, llm (a vision chat model) or vqa (a transformers VQA model)."
            ),
        ] = None,
        answerer_model: Annotated[
            str | None,
            typer.Option(
                help="The answerer's model: chat model name (default CHATIR_LLM_MODEL) or VQA hub id/folder."
            ),
        ] = None,
        cache: Annotated[bool, typer.Option(help="Cache corpus embeddings under CHATIR_HOME.")] = True,
        resume: Annotated[
            bool, typer.Option(help="Live mode: continue dialogs finished by an interrupted run.")
        ] = True,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Rank each target after every round 0..R (ChatIR's protocol): Hits@K, Recall@K, ATR, BRI, repeats."""
        from evaluation.runner import EvalOptions, run_evaluation

        if world is None and not dialogs:
            raise typer.BadParameter("give --dialogs FILE (with --images ROOT) or --world ROOT")
        if world is not None and len(dialogs or []) > 1:
            raise typer.BadParameter(
                "with --world, --dialogs names one file of targets and first descriptions"
            )
        if dialogs and images is None and world is None:
            raise typer.BadParameter(
                "--dialogs needs --images ROOT (the folder the dialogs' 'img' paths are relative to)"
            )
        if answerer is not None and answerer not in ("llm", "vqa"):
            raise typer.BadParameter("--answerer must be llm or vqa")
        if answerer is not None and world is not None:
            raise typer.BadParameter("--answerer is for real images; the world answers with its own oracle")
        if answerer is not None and (not dialogs or images is None):
            raise typer.BadParameter(
                "--answerer needs --dialogs FILE (targets, descriptions) and --images ROOT"
            )
        if protocol not in ("default", "chatir"):
            raise typer.BadParameter("--protocol must be default or chatir")
        if ties not in ("index", "optimistic", "pessimistic"):
            raise typer.BadParameter("--ties must be index, optimistic or pessimistic")
        options = EvalOptions(
            dialogs=list(dialogs or []),
            images=images,
            corpus_list=corpus,
            world=world,
            questioners=[QUESTIONER_ALIASES[q] for q in parse_questioners(questioner)]
            if world or answerer
            else [],
            n_dialogs=n_dialogs,
            split=split,
            bank=bank,
            rounds=rounds,
            out=out,
            model=model,
            ks=parse_int_list(k, "--k"),
            ties=ties,
            protocol=protocol,
            answerer=answerer,
            answerer_model=answerer_model,
            cache=cache,
            resume=resume,
            progress=progress,
            command=" ".join(shlex.quote(arg) for arg in ["chatir", *sys.argv[1:]]),
        )
        summary = run_evaluation(options)
        typer.echo(summary)

"""Questioners on the procedural world: does the LLM-free questioner beat asking nothing (and random)?

Each target image of a small world gallery is searched for from its caption; a questioner asks, the world's
oracle answers for the user, and the conversation runs through the product's ConversationEngine (in-memory
searcher, no service). After every round the target's rank in the gallery is read. Prints, per questioner,
the average target rank (ATR) and ChatIR's cumulative Hits@10 by round, repeated questions per dialog, and
the time per turn.

    python benchmarks/questioner.py                      # starter model, 2,000 images, 100 dialogs
    python benchmarks/questioner.py --model PATH --images 500 --dialogs 30 --questioners info_gain,none

Image embeddings are cached under CHATIR_HOME/cache/bench-questioner (keyed by model and world).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.engine import ConversationEngine
from agent.questioners import (
    InfoGainQuestioner,
    ModelCandidateScorer,
    NoQuestioner,
    RandomQuestioner,
    is_repeat,
    load_bank,
)
from agent.search import InMemorySearcher
from agent.state import ConversationStore
from chatir.dialog import Dialog
from chatir.errors import ChatIRError
from chatir.settings import get_settings
from tools.scope import SearchScope

REPORT_ROUNDS = (0, 1, 2, 3, 5, 10)


class RankingSearcher(InMemorySearcher):
    """The in-memory searcher, remembering the scores of recent dialogs so ranks cost no extra encoding."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._recent: dict[str, np.ndarray] = {}

    def scores(self, dialog: Dialog) -> np.ndarray:
        key = dialog.model_dump_json()
        if key not in self._recent:
            if len(self._recent) > 64:
                self._recent.clear()
            self._recent[key] = super().scores(dialog)
        return self._recent[key]

    def rank(self, dialog: Dialog, target_row: int) -> int:
        scores = self.scores(dialog)
        ahead = np.sum(scores > scores[target_row]) + np.sum(scores[:target_row] == scores[target_row])
        return int(ahead) + 1


def gallery_vectors(model, seed: int, n: int, size: int, cache_dir: Path) -> np.ndarray:
    from world.render import render_scene
    from world.scene import sample_scene

    key = hashlib.sha256(f"{model.model_id}|{model.dim}|{seed}|{n}|{size}".encode()).hexdigest()[:16]
    path = cache_dir / f"vectors-{key}.npy"
    if path.is_file():
        return np.load(path)
    batch = 64
    out = np.zeros((n, model.dim), dtype=np.float32)
    for start in tqdm(range(0, n, batch), desc="embedding gallery", unit="batch"):
        images = [render_scene(sample_scene(seed, i), size) for i in range(start, min(n, start + batch))]
        out[start : start + len(images)] = model.encode_images(images)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def build_questioner(name: str, model, searcher, bank, args):
    if name == "none":
        return NoQuestioner()
    if name == "random":
        return RandomQuestioner(bank, seed=args.seed)
    if name == "info_gain":
        scorer = ModelCandidateScorer(model, searcher, mode=args.mode, temperature=args.temperature)
        return InfoGainQuestioner(
            scorer, bank, top_n=args.top_n, prior_temperature=args.prior_temperature, stop_threshold=args.stop
        )
    raise SystemExit(f"unknown questioner {name!r} (info_gain, random, none)")


def run(args: argparse.Namespace) -> int:
    from retriever_service.models import load_model
    from world.language import caption_for
    from world.oracle import Oracle
    from world.scene import image_id, sample_scene

    settings = get_settings()
    started = time.perf_counter()
    try:
        model = load_model(args.model, settings=settings)
    except ChatIRError as error:
        print(f"cannot load the model {args.model!r}: {error}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - started
    vectors = gallery_vectors(
        model, args.world_seed, args.images, args.size, settings.home / "cache" / "bench-questioner"
    )
    ids = [image_id(args.world_seed, i) for i in range(args.images)]
    searcher = RankingSearcher(model, vectors, [_item(i) for i in ids])
    bank = load_bank(args.bank)
    rng = random.Random(args.seed)
    targets = rng.sample(range(args.images), min(args.dialogs, args.images))
    scenes = {t: sample_scene(args.world_seed, t) for t in targets}
    captions = {t: caption_for(args.world_seed, t, scenes[t]).text for t in targets}

    names = [n.strip() for n in args.questioners.split(",") if n.strip()]
    table: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            questioner = build_questioner(name, model, searcher, bank, args)
            engine_settings = settings.model_copy(update={"max_rounds": args.rounds, "top_k": 10})
            engine = ConversationEngine(
                searcher, questioner, ConversationStore(Path(tmp) / f"{name}.sqlite"), engine_settings
            )
            ranks = np.zeros((len(targets), args.rounds + 1), dtype=np.int64)
            repeats, asked_total, idk, turns = 0, 0, 0, 0
            t0 = time.perf_counter()
            for row, target in enumerate(tqdm(targets, desc=name, unit="dialog")):
                oracle = Oracle(scenes[target])
                turn = engine.start(f"{name}-{target}", captions[target], SearchScope.unrestricted())
                turns += 1
                ranks[row, 0] = searcher.rank(turn.dialog, target)
                asked: list[str] = []
                for r in range(1, args.rounds + 1):
                    if turn.question is None:
                        ranks[row, r] = ranks[row, r - 1]
                        continue
                    repeats += is_repeat(turn.question, asked)
                    asked.append(turn.question)
                    answer = oracle.answer(turn.question)
                    idk += answer == "I don't know"
                    turn = engine.answer(f"{name}-{target}", answer)
                    turns += 1
                    ranks[row, r] = searcher.rank(turn.dialog, target)
                asked_total += len(asked)
            elapsed = time.perf_counter() - t0
            first_hit = np.where((ranks <= 10).any(axis=1), (ranks <= 10).argmax(axis=1), args.rounds + 1)
            table[name] = {
                "atr": ranks.mean(axis=0),
                "hits10": np.array([(first_hit <= r).mean() * 100 for r in range(args.rounds + 1)]),
                "repeats": repeats / len(targets),
                "asked": asked_total / len(targets),
                "idk": idk / max(asked_total, 1) * 100,
                "ms_per_turn": elapsed / max(turns, 1) * 1000,
            }

    print()
    print(f"model {model.model_id!r} (dim {model.dim}, loaded in {load_s:.1f}s), world seed {args.world_seed}: "
          f"{args.images} images, {len(targets)} dialogs, bank {bank.name!r} ({len(bank)} questions), "
          f"rounds {args.rounds}, info_gain mode={args.mode} T={args.temperature} T_prior={args.prior_temperature} "
          f"top_n={args.top_n} stop={args.stop}")  # fmt: skip
    rounds = [r for r in REPORT_ROUNDS if r <= args.rounds]
    header = ["questioner", *[f"ATR@{r}" for r in rounds], *[f"H@10@{r}" for r in rounds],
              "asked", "repeats", "idk%", "ms/turn"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, row in table.items():
        cells = [
            name,
            *[f"{row['atr'][r]:.1f}" for r in rounds],
            *[f"{row['hits10'][r]:.0f}" for r in rounds],
            f"{row['asked']:.1f}",
            f"{row['repeats']:.2f}",
            f"{row['idk']:.0f}",
            f"{row['ms_per_turn']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


def _item(image_id: str):
    from chatir.schemas import Hit

    return Hit(id=image_id, score=0.0, uri=image_id, thumbnail_url="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default=None, help="hub id, local folder or 'starter' (default CHATIR_MODEL)"
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--dialogs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--world-seed", type=int, default=2024)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="target sampling and the random baseline")
    parser.add_argument("--bank", default="world", help="'world', 'generic' or a JSON bank file")
    parser.add_argument("--questioners", default="info_gain,random,none")
    parser.add_argument("--mode", choices=("round", "dialog"), default="round")
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--prior-temperature", type=float, default=0.05)
    parser.add_argument("--top-n", type=int, default=20)
    parser.add_argument("--stop", type=float, default=None, help="stop asking above this top posterior (off)")
    args = parser.parse_args(argv)
    args.model = args.model or get_settings().model
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""ChatIR's protocol, live: a questioner talks with a simulated answerer through the product's engine.

Every test dialog starts from its caption; the questioner (``agent.questioners``) asks, the :class:`Answerer`
answers for the user (the world's oracle here; an LLM or VQA model for users who have one), and the
conversation runs through :class:`agent.ConversationEngine` exactly as in Slack or the web chat, searching an
in-memory corpus (:class:`agent.InMemorySearcher`, no service, no Qdrant). After every round the target's
rank is read from the dialog the engine holds.

Speed: dialogs advance in lockstep, a block at a time, so the dialog texts of a round are encoded in one
batch (the engine's searcher then finds them in a cache). Blocks are appended to a JSONL file as they
finish, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel
from tqdm.auto import tqdm

from chatir.dialog import MAX_TEXT_CHARS, Dialog, Round
from evaluation.data import EvaluationInputError, ImageCorpus, TargetDialog
from evaluation.harness import EvaluationModel
from evaluation.metrics import TiePolicy, rank_of_targets
from evaluation.results import DEFAULT_KS, SystemResult

if TYPE_CHECKING:
    from agent.questioners.base import Questioner
    from chatir.settings import Settings

BLOCK_SIZE = 128


@runtime_checkable
class Answerer(Protocol):
    """Answers a question about the target image for the simulated user.

    ``target`` is the target's path relative to the corpus root (the same string as ``"img"`` in ChatIR's
    dialog files), ``image`` its absolute path (for VQA models that look at pixels).
    """

    def answer(self, target: str, image: Path, question: str, dialog: Dialog) -> str: ...


class LiveDialog(BaseModel):
    """One finished live dialog: target, the dialog as the engine holds it, ranks per round, questions offered."""

    index: int
    img: str
    dialog: Dialog
    ranks: list[int]
    offered: list[str]

    def chatir_entry(self) -> dict[str, Any]:
        """The dialog in ChatIR's JSON form, for re-evaluation as fixed dialogs."""
        return {"img": self.img, "dialog": self.dialog.parts()}


class CachedDialogEncoder:
    """The model's dialog encoder with a per-round cache filled in batches (:meth:`prefetch`)."""

    def __init__(self, model: EvaluationModel) -> None:
        self.model = model
        self.cache: dict[str, np.ndarray] = {}
        self.misses = 0

    def prefetch(self, dialogs: Sequence[Dialog]) -> None:
        texts = [t for t in dict.fromkeys(self.model.dialog_text(d) for d in dialogs) if t not in self.cache]
        if texts:
            vectors = np.asarray(self.model.encode_texts(texts), dtype=np.float32)
            self.cache.update(zip(texts, vectors, strict=True))

    def vector(self, dialog: Dialog) -> np.ndarray:
        text = self.model.dialog_text(dialog)
        if text not in self.cache:
            self.misses += 1
            self.cache[text] = np.asarray(self.model.encode_texts([text]), dtype=np.float32)[0]
        return self.cache[text]

    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> np.ndarray:
        return (
            np.stack([self.vector(d) for d in dialogs])
            if dialogs
            else np.zeros((0, self.model.dim), np.float32)
        )

    def clear(self) -> None:
        self.cache.clear()


class RecordingQuestioner:
    """Wraps a questioner and records every question it offers, before the engine filters repeats."""

    def __init__(self, inner: Questioner, log: dict[str, list[str]], current: list[str]) -> None:
        self._inner = inner
        self._log = log
        self._current = current  # [conversation id] being served; set by the harness before each turn

    def next_question(self, dialog: Dialog, candidates: list, asked: list[str]) -> str | None:
        question = self._inner.next_question(dialog, candidates, asked)
        if question is not None:
            self._log.setdefault(self._current[0], []).append(question)
        return question

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name == "with_scope":  # the LLM agent binds its search tool per turn; keep recording
            return lambda scope: RecordingQuestioner(value(scope), self._log, self._current)
        return value


def _read_done(path: Path, resume_key: str) -> dict[int, LiveDialog]:
    """Dialogs finished by an earlier run with the same ``resume_key``; a file from another setup is set aside."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0]) if lines and lines[0].startswith('{"resume_key"') else {}
    if header.get("resume_key") != resume_key:
        path.replace(path.with_name(path.name + ".stale"))  # another model/world/setting: start afresh
        return {}
    done: dict[int, LiveDialog] = {}
    for line in lines[1:]:
        if line.strip():
            try:
                item = LiveDialog.model_validate_json(line)
            except ValueError:
                continue  # a line cut by an interruption: that dialog is simply run again
            done[item.index] = item
    return done


def evaluate_live(
    model: EvaluationModel,
    corpus: ImageCorpus,
    corpus_vectors: np.ndarray,
    dialogs: Sequence[TargetDialog],
    questioner: Questioner,
    answerer: Answerer,
    *,
    name: str,
    settings: Settings,
    rounds: int = 10,
    resume_file: Path | None = None,
    resume_key: str = "",
    ks: Sequence[int] = DEFAULT_KS,
    ties: TiePolicy = "index",
    block_size: int = BLOCK_SIZE,
    progress: bool = True,
    reranker=None,
) -> tuple[SystemResult, np.ndarray, list[LiveDialog]]:
    """Run every dialog from its caption for ``rounds`` rounds; ranks ``(n, rounds+1)`` and the transcripts.

    ``dialogs`` give the targets and captions (their recorded rounds are ignored). ``resume_file`` (JSONL)
    keeps finished dialogs; those already in it are not run again when its first line holds the same
    ``resume_key`` (describe the model, corpus and settings there).
    """
    from agent.engine import ConversationEngine
    from agent.search import InMemorySearcher
    from agent.state import ConversationStore
    from tools.scope import SearchScope

    if rounds < 1:
        raise EvaluationInputError("live evaluation needs at least one round")
    targets = np.asarray(corpus.target_indices([d.img for d in dialogs]), dtype=np.int64)
    encoder = CachedDialogEncoder(model)
    searcher = InMemorySearcher.from_ids(encoder, corpus_vectors, list(corpus.paths))
    offered: dict[str, list[str]] = {}
    current = [""]
    engine = ConversationEngine(
        searcher,
        RecordingQuestioner(questioner, offered, current),
        ConversationStore(":memory:"),
        settings.model_copy(update={"max_rounds": rounds}),
        reranker=reranker,
    )
    scope = SearchScope.unrestricted()

    done = _read_done(resume_file, resume_key) if resume_file is not None else {}
    done = {
        i: d
        for i, d in done.items()
        if i < len(dialogs) and d.img == dialogs[i].img and len(d.ranks) == rounds + 1
    }
    todo = [i for i in range(len(dialogs)) if i not in done]
    started = time.perf_counter()
    bar = tqdm(
        total=len(dialogs) * rounds,
        initial=len(done) * rounds,
        desc=f"live: {name}",
        unit="turn",
        disable=not progress,
    )
    try:
        for block_start in range(0, len(todo), block_size):
            block = todo[block_start : block_start + block_size]
            finished = _run_block(
                engine,
                encoder,
                answerer,
                corpus,
                corpus_vectors,
                dialogs,
                targets,
                block,
                rounds=rounds,
                scope=scope,
                ties=ties,
                offered=offered,
                current=current,
                bar=bar,
                reranker=reranker,
            )
            for item in finished:
                done[item.index] = item
            if resume_file is not None:
                resume_file.parent.mkdir(parents=True, exist_ok=True)
                if not resume_file.is_file():
                    resume_file.write_text(json.dumps({"resume_key": resume_key}) + "\n", encoding="utf-8")
                with resume_file.open("a", encoding="utf-8") as handle:
                    handle.writelines(item.model_dump_json() + "\n" for item in finished)
    finally:
        bar.close()

    transcripts = [done[i] for i in range(len(dialogs))]
    ranks = np.array([t.ranks for t in transcripts], dtype=np.int64)
    result = SystemResult.from_ranks(
        name,
        ranks,
        mode="live",
        model_id=str(model.model_id),
        ks=ks,
        questions=[t.offered for t in transcripts],
        timings_s={"live": time.perf_counter() - started},
        details={
            "corpus_size": len(corpus),
            "resumed_dialogs": len(dialogs) - len(todo),
            "questions_asked_per_dialog": float(np.mean([len(t.dialog.rounds) for t in transcripts])),
            "ties": ties,
        },
    )
    return result, ranks, transcripts


def _run_block(
    engine,
    encoder,
    answerer,
    corpus,
    corpus_vectors,
    dialogs,
    targets,
    block,
    *,
    rounds,
    scope,
    ties,
    offered,
    current,
    bar,
    reranker=None,
) -> list[LiveDialog]:
    """Advance one block of dialogs in lockstep through rounds 0..R; returns their transcripts."""
    conversation = {i: f"eval-{i}" for i in block}
    ranks = np.zeros((len(block), rounds + 1), dtype=np.int64)
    state: dict[int, Dialog] = {}
    pending: dict[int, str | None] = {}

    encoder.clear()
    captions = [Dialog(caption=dialogs[i].dialog.caption) for i in block]
    encoder.prefetch(captions)
    for i in block:
        current[0] = conversation[i]
        offered[conversation[i]] = []
        turn = engine.start(conversation[i], dialogs[i].dialog.caption, scope)
        state[i], pending[i] = turn.dialog, turn.question
    ranks[:, 0] = _ranks_now(
        encoder, [state[i] for i in block], corpus_vectors, targets[block], ties, reranker
    )

    for r in range(1, rounds + 1):
        answers: dict[int, str] = {}
        for i in block:
            if pending[i]:
                text = answerer.answer(dialogs[i].img, corpus.root / dialogs[i].img, pending[i], state[i])
                answers[i] = " ".join(str(text).split())[:MAX_TEXT_CHARS] or "I don't know"
        encoder.clear()
        encoder.prefetch(
            [
                Dialog(
                    caption=state[i].caption, rounds=[*state[i].rounds, Round(question=pending[i], answer=a)]
                )
                for i, a in answers.items()
            ]
        )
        for i in block:
            if i in answers:
                current[0] = conversation[i]
                turn = engine.answer(conversation[i], answers[i])
                state[i], pending[i] = turn.dialog, turn.question
            bar.update(1)
        changed = [row for row, i in enumerate(block) if i in answers]
        ranks[:, r] = ranks[:, r - 1]
        if changed:
            ranks[changed, r] = _ranks_now(
                encoder,
                [state[block[row]] for row in changed],
                corpus_vectors,
                targets[[block[row] for row in changed]],
                ties,
                reranker,
            )
    return [
        LiveDialog(
            index=i,
            img=dialogs[i].img,
            dialog=state[i],
            ranks=ranks[row].tolist(),
            offered=list(offered.pop(conversation[i], [])),
        )
        for row, i in enumerate(block)
    ]


def _ranks_now(
    encoder: CachedDialogEncoder, dialogs: Sequence[Dialog], corpus_vectors, targets, ties, reranker=None
) -> np.ndarray:
    """Targets' ranks by the dialog encoder, and with ``reranker`` as the engine shows them: a target in the
    encoder's top ``pool`` is ranked inside that pool by the re-ranker's combined score (ties: corpus order)."""
    queries = encoder.encode_dialogs(dialogs)
    ranks = np.asarray(rank_of_targets(queries, corpus_vectors, targets, ties=ties)).copy()
    if reranker is None:
        return ranks
    corpus = np.asarray(corpus_vectors, np.float32)
    pool = min(reranker.pool, len(corpus))
    for row, dialog in enumerate(dialogs):
        if ranks[row] > pool or not reranker.evidence(dialog):
            continue
        scores = corpus @ np.asarray(queries[row], np.float32)
        top = np.argpartition(-scores, pool - 1)[:pool]
        where = np.flatnonzero(top == targets[row])
        if not len(where):  # tied at the pool's edge
            continue
        combined = reranker.scores(dialog, corpus[top], scores[top])
        mine = combined[where[0]]
        ranks[row] = 1 + int((combined > mine).sum()) + int(((combined == mine) & (top < targets[row])).sum())
    return ranks


def write_chatir_dialogs(transcripts: Sequence[LiveDialog], path: Path) -> None:
    """Save live dialogs in ChatIR's JSON format (re-evaluate them with ``chatir eval --dialogs``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([t.chatir_entry() for t in transcripts], indent=1), encoding="utf-8")

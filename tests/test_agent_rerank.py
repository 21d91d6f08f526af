"""The answer re-ranker reads each answer against its question's alternatives, with the real model path."""

from __future__ import annotations

from agent.questioners import ModelCandidateScorer
from agent.rerank import AnswerReranker
from chatir.dialog import Dialog, Round
from tests.test_agent_support import GALLERY, TOY_BANK, KeywordModel, toy_oracle, toy_searcher
from tools.scope import SearchScope


def _rank(hits, target_id):
    return next(i for i, h in enumerate(hits, 1) if h.id == target_id)


def test_answers_move_the_target_up_and_negative_answers_count():
    model = KeywordModel()
    searcher = toy_searcher(model)
    reranker = AnswerReranker(
        ModelCandidateScorer(model, searcher, temperature=0.05), TOY_BANK, pool=len(GALLERY)
    )
    target = GALLERY[7]
    rounds = [
        Round(question=q.question, answer=toy_oracle(target, q.question)) for q in TOY_BANK.questions[1:4]
    ]
    dialog = Dialog(caption="a picture", rounds=rounds)
    hits = searcher.search(dialog, k=len(GALLERY), scope=SearchScope.unrestricted(), with_vectors=True)
    reranked = reranker.rerank(dialog, hits)
    assert sorted(h.id for h in reranked) == sorted(h.id for h in hits)  # a re-ordering, nothing lost
    assert _rank(reranked, target.id) <= _rank(hits, target.id)
    assert _rank(reranked, target.id) <= 2
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_rounds_it_cannot_read_change_nothing():
    model = KeywordModel()
    searcher = toy_searcher(model)
    reranker = AnswerReranker(ModelCandidateScorer(model, searcher), TOY_BANK)
    dialog = Dialog(
        caption="a red circle",
        rounds=[
            Round(question="Is it a holiday photo?", answer="yes"),
            Round(question="What shape is it?", answer="I don't know"),
        ],
    )
    assert reranker.answered_rounds(dialog) == []
    hits = searcher.search(dialog, k=10, scope=SearchScope.unrestricted(), with_vectors=True)
    assert reranker.rerank(dialog, hits) == hits
    own_words = Dialog(caption="x", rounds=[Round(question="what shape is it", answer="kind of a star")])
    ((question, answer),) = reranker.answered_rounds(own_words)  # any spelling of a bank question
    assert question.question == "What shape is it?" and answer == "kind of a star"


def test_the_product_engine_re_ranks_with_the_info_gain_questioners_scorer(tmp_path):
    from agent.factory import build_reranker
    from agent.questioners import InfoGainQuestioner, RandomQuestioner
    from chatir.settings import Settings

    model = KeywordModel()
    questioner = InfoGainQuestioner(ModelCandidateScorer(model, toy_searcher(model)), TOY_BANK)
    on = build_reranker(Settings(home=tmp_path, rerank_pool=50, rerank_weight=0.5), questioner)
    assert on is not None and (on.pool, on.weight, on.scorer) == (50, 0.5, questioner.scorer)
    assert build_reranker(Settings(home=tmp_path, rerank_pool=0), questioner) is None
    assert build_reranker(Settings(home=tmp_path), RandomQuestioner(seed=1)) is None


def test_a_bare_pool_re_ranks_exactly_as_full_hits():
    """The engine's pool path (ids, scores, one matrix; full hits looked up for the kept only) shows the same
    hits with the same scores and vectors as re-ranking a full hit per candidate, in any scope."""
    from agent.engine import ConversationEngine
    from tests.test_agent_support import RecordingSearcher

    model = KeywordModel()
    groups = [["public"] if i % 3 else ["C-other"] for i in range(len(GALLERY))]
    searcher = toy_searcher(model, allowed=groups)
    recording = RecordingSearcher(searcher)  # search only: no pool, no lookup
    reranker = AnswerReranker(ModelCandidateScorer(model, searcher, temperature=0.05), TOY_BANK, pool=12)
    target = GALLERY[4]
    rounds = [
        Round(question=q.question, answer=toy_oracle(target, q.question)) for q in TOY_BANK.questions[:3]
    ]
    dialog = Dialog(caption="a shape", rounds=rounds)
    scopes = [SearchScope(allowed=["public"]), SearchScope(allowed=["public"], exclude_ids=[GALLERY[1].id])]
    for scope in [*scopes, SearchScope.unrestricted()]:
        full = reranker.rerank(dialog, recording.search(dialog, k=12, scope=scope, with_vectors=True))[:5]
        bare = ConversationEngine._reranked_pool(searcher, reranker, dialog, 5, 12, scope)
        assert [(h.id, h.score, h.vector_base64) for h in bare] == [
            (h.id, h.score, h.vector_base64) for h in full
        ]
        assert [h.id for h in bare] != [
            h.id for h in searcher.search(dialog, k=5, scope=scope)
        ]  # it re-ranked
        assert all(
            scope.admits(allowed=groups[searcher.row[h.id]], source=h.source, tags=h.tags, image_id=h.id)
            for h in bare
        )

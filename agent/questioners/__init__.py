"""Questioners G: the LLM agent, the LLM-free information-gain questioner, and two baselines."""

from agent.questioners.bank import BankQuestion, QuestionBank, generic_bank, load_bank, world_bank
from agent.questioners.base import Questioner, ScopeAware, is_repeat, question_key
from agent.questioners.baselines import NoQuestioner, RandomQuestioner
from agent.questioners.info_gain import InfoGainQuestioner, mutual_information
from agent.questioners.scoring import CandidateScorer, ModelCandidateScorer, TextEncoder, VectorLookup

__all__ = [
    "BankQuestion",
    "CandidateScorer",
    "InfoGainQuestioner",
    "ModelCandidateScorer",
    "NoQuestioner",
    "QuestionBank",
    "Questioner",
    "RandomQuestioner",
    "ScopeAware",
    "TextEncoder",
    "VectorLookup",
    "generic_bank",
    "is_repeat",
    "load_bank",
    "mutual_information",
    "question_key",
    "world_bank",
]

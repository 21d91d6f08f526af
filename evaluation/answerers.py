"""Simulated users for live evaluation on real images: who answers the questioner about the target.

- :class:`LLMAnswerer`: any OpenAI-compatible vision chat model (OpenAI, vLLM, Ollama, ...), the target image
  sent inline as a data URL with the question.
- :class:`VQAAnswerer`: a visual-question-answering or image-text-to-text model through transformers, loaded by
  hub id or folder like the retriever (BLIP VQA is asked the question as it is; other models are prompted as
  ChatIR prompts BLIP-2: ``"Question: ... Answer:"``).

The procedural world has its own answerer, the oracle (``evaluation.world_mode.WorldOracleAnswerer``).
Both answer in a few words and never return an empty string ("I don't know" instead).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatir.dialog import MAX_TEXT_CHARS, Dialog
from chatir.errors import ModelNotAvailableError
from evaluation.data import EvaluationInputError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from chatir.settings import Settings

ANSWER_PROMPT = (
    "You are the person who is looking for this image. Answer the question about the image in a few words, "
    "the way a person would in a chat. If the image does not show what is asked, say so briefly."
)
DONT_KNOW = "I don't know"
IMAGE_SIDE = 512
"""The longest side of the image sent to a chat model (smaller images are sent as they are)."""


def _clean(text: object) -> str:
    answer = " ".join(str(text).split())[:MAX_TEXT_CHARS]
    return answer or DONT_KNOW


def jpeg_data_url(image: Path, max_side: int = IMAGE_SIDE) -> str:
    """The image as a ``data:image/jpeg;base64,...`` URL, its longest side at most ``max_side``."""
    from PIL import Image

    with Image.open(image) as opened:
        picture = opened.convert("RGB")
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class LLMAnswerer:
    """Answers with a vision chat model over OpenAI's protocol (the image inline, one request per answer)."""

    def __init__(self, chat_model: BaseChatModel, *, max_side: int = IMAGE_SIDE) -> None:
        self.chat_model = chat_model
        self.max_side = max_side

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None) -> LLMAnswerer:
        """The chat model at ``CHATIR_LLM_BASE_URL`` (``model`` or ``CHATIR_LLM_MODEL``)."""
        from agent.questioners.llm import build_chat_model

        chosen = settings.model_copy(update={"llm_model": model}) if model else settings
        if not chosen.llm_model:
            raise EvaluationInputError(
                "the llm answerer needs a vision chat model: --answerer-model NAME or CHATIR_LLM_MODEL (and "
                "CHATIR_LLM_BASE_URL for a local OpenAI-compatible server)"
            )
        return cls(build_chat_model(chosen, temperature=0.0))

    def answer(self, target: str, image: Path, question: str, dialog: Dialog) -> str:
        from langchain_core.messages import HumanMessage, SystemMessage

        content: list[str | dict[str, Any]] = [
            {"type": "text", "text": f"Question: {question}"},
            {"type": "image_url", "image_url": {"url": jpeg_data_url(image, self.max_side)}},
        ]
        reply = self.chat_model.invoke([SystemMessage(ANSWER_PROMPT), HumanMessage(content=content)])
        return _clean(reply.content)


class VQAAnswerer:
    """Answers with a VQA / image-text-to-text model through transformers (greedy, a few tokens)."""

    def __init__(self, name_or_path: str, *, device: str = "cpu", max_new_tokens: int = 12) -> None:
        import torch
        from transformers import AutoConfig, AutoProcessor

        local = Path(name_or_path).is_dir()
        offline = local or bool(os.environ.get("HF_HUB_OFFLINE"))
        try:
            config = AutoConfig.from_pretrained(name_or_path, local_files_only=offline)
            self.processor = AutoProcessor.from_pretrained(name_or_path, local_files_only=offline)
            if config.model_type == "blip":
                from transformers import BlipForQuestionAnswering

                self.model = BlipForQuestionAnswering.from_pretrained(name_or_path, local_files_only=offline)
                self.prompted = False
            else:
                from transformers import AutoModelForImageTextToText

                self.model = AutoModelForImageTextToText.from_pretrained(
                    name_or_path, local_files_only=offline
                )
                self.prompted = True
        except (OSError, ValueError) as error:
            raise ModelNotAvailableError(
                f"the VQA answerer {name_or_path!r} cannot be loaded ({str(error).splitlines()[0]}); give a local "
                "folder or a hub id that is in the Hugging Face cache"
            ) from error
        self.model.to(torch.device(device)).eval()
        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens

    def answer(self, target: str, image: Path, question: str, dialog: Dialog) -> str:
        import torch
        from PIL import Image

        prompt = f"Question: {question} Answer:" if self.prompted else question
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
        inputs = self.processor(images=picture, text=prompt, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if self.prompted and "input_ids" in inputs:  # decoder-only models echo the prompt
            output = output[:, inputs["input_ids"].shape[1] :]
        return _clean(self.processor.batch_decode(output, skip_special_tokens=True)[0])


def build_answerer(kind: str, settings: Settings, model: str | None = None) -> LLMAnswerer | VQAAnswerer:
    """``llm`` or ``vqa`` (``model``: the chat model name, or the VQA model's hub id / folder)."""
    if kind == "llm":
        return LLMAnswerer.from_settings(settings, model)
    if kind == "vqa":
        if not model:
            raise EvaluationInputError(
                "the vqa answerer needs --answerer-model (e.g. Salesforce/blip-vqa-base)"
            )
        device = "cuda" if settings.device.startswith("cuda") else "cpu"
        return VQAAnswerer(model, device=device)
    raise EvaluationInputError(f"unknown answerer {kind!r}: choose llm or vqa")

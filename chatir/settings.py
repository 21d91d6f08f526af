"""The one configuration object of the project, read from the environment (and a ``.env`` file).

Every process (retriever service, agent, Slack app, CLI) reads the same :class:`Settings`; nothing else
reads environment variables. Secrets (API keys, Slack tokens) only ever come from here.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

STARTER_MODEL = "starter"
"""Special value of ``CHATIR_MODEL``: the project's own starter model, assembled under ``CHATIR_HOME``."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    # env_prefix: with populate_by_name, pydantic-settings also reads a field's bare name from the environment
    # (HOME, HOST, PORT, MODEL, ...); the prefix makes that fallback CHATIR_<name> instead.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_prefix="CHATIR_", env_ignore_empty=True
    )

    # --- retriever model -------------------------------------------------------------------------
    model: str = Field(
        STARTER_MODEL,
        validation_alias=_env("CHATIR_MODEL"),
        description="Hub id or local path of the image-text model (BLIP, CLIP, SigLIP or a "
        "VisionTextDualEncoderModel), or 'starter' for the project's own offline model.",
    )
    home: Path = Field(
        Path.home() / ".cache" / "chatir",
        validation_alias=_env("CHATIR_HOME"),
        description="Where the embedded index, caches, thumbnails, state and the starter model live.",
    )
    device: str = Field("auto", validation_alias=_env("CHATIR_DEVICE"), description="auto, cpu or cuda[:N]")
    batch_size: int = Field(32, ge=1, validation_alias=_env("CHATIR_BATCH_SIZE"))
    dialog_separator: str = Field(", ", validation_alias=_env("CHATIR_DIALOG_SEPARATOR"))
    truncation: Literal["keep_caption", "tail"] = Field(
        "keep_caption",
        validation_alias=_env("CHATIR_TRUNCATION"),
        description="On token overflow keep the caption and the newest rounds (keep_caption) or "
        "cut the end like ChatIR's training code did (tail).",
    )

    captioner: str | None = Field(
        None,
        validation_alias=_env("CHATIR_CAPTIONER"),
        description="Image-to-text model (hub id or folder, e.g. Salesforce/blip-image-captioning-base) that "
        "captions images at index time for the LLM questioner; unset: no captions. Re-run `chatir index` to "
        "caption images indexed before.",
    )

    caption_search: bool | None = Field(
        None,
        validation_alias=_env("CHATIR_CAPTION_SEARCH"),
        description="Search the stored captions as text beside the embedding (the two rankings fused); "
        "unset: on when CHATIR_CAPTIONER is set.",
    )

    max_text_tokens: int | None = Field(
        None,
        ge=8,
        le=4096,
        validation_alias=_env("CHATIR_MAX_TEXT_TOKENS"),
        description="Token window of the dialog encoder (longer dialogs are truncated by `truncation`); "
        "unset: what the model folder records, else the model's own limit.",
    )

    # --- speed (docs/performance.md) --------------------------------------------------------------
    encode_max_batch: int = Field(
        32,
        ge=1,
        le=1024,
        validation_alias=_env("CHATIR_ENCODE_MAX_BATCH"),
        description="The service encodes the dialogs of concurrent searches together, up to this many per "
        "forward pass; 1 turns micro-batching off (one request at a time behind the model lock).",
    )
    encode_batch_window_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        validation_alias=_env("CHATIR_ENCODE_BATCH_WINDOW_MS"),
        description="How long the batching worker waits for more searches after the first queued one (a search "
        "with no other in flight encodes at once; under load batches fill while the previous one runs).",
    )
    text_fastpath: Literal["auto", "fp32", "int8", "onnx"] = Field(
        "auto",
        validation_alias=_env("CHATIR_TEXT_FASTPATH"),
        description="Text encoder on the CPU (the service's and chatir eval's): onnx (ONNX Runtime, fp32), int8 "
        "(dynamic int8 Linear layers), fp32 (torch), or auto: the first of onnx, int8 that is faithful to fp32 on "
        "a probe set at load (every cosine >= 0.999), else fp32. GPUs keep their torch path.",
    )

    # --- vector store ----------------------------------------------------------------------------
    qdrant_url: str | None = Field(None, validation_alias=_env("QDRANT_URL", "CHATIR_QDRANT_URL"))
    qdrant_api_key: SecretStr | None = Field(
        None, validation_alias=_env("QDRANT_API_KEY", "CHATIR_QDRANT_API_KEY")
    )
    collection: str = Field("chatir_images", validation_alias=_env("CHATIR_COLLECTION"))
    qdrant_shard_number: int | None = Field(
        None,
        ge=1,
        validation_alias=_env("CHATIR_QDRANT_SHARD_NUMBER"),
        description="Shards of a collection created on a Qdrant cluster (e.g. 2 per node); unset: the server's "
        "default. Read only when the collection is created; the embedded store ignores it.",
    )
    qdrant_replication_factor: int | None = Field(
        None,
        ge=1,
        validation_alias=_env("CHATIR_QDRANT_REPLICATION_FACTOR"),
        description="Copies of every shard on a Qdrant cluster (2 or more survives a node loss); unset: the "
        "server's default (1). Read only when the collection is created; the embedded store ignores it.",
    )

    # --- conversation state ----------------------------------------------------------------------
    state_url: SecretStr | None = Field(
        None,
        validation_alias=_env("CHATIR_STATE_URL"),
        description="Where conversations are kept: unset = the SQLite file under CHATIR_HOME (one process or "
        "host); postgresql://user:password@host:5432/db = PostgreSQL, shared by several bot / web replicas; "
        "sqlite:///path/file.sqlite = another SQLite file. Secret: it may hold a password.",
    )

    # --- retriever microservice ------------------------------------------------------------------
    api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("CHATIR_API_KEY"),
        description="Bearer token required by the service when set.",
    )
    host: str = Field("127.0.0.1", validation_alias=_env("CHATIR_HOST"))
    port: int = Field(8600, validation_alias=_env("CHATIR_PORT"))
    service_url: str = Field("http://127.0.0.1:8600", validation_alias=_env("CHATIR_SERVICE_URL"))
    service_timeout_s: float = Field(30.0, gt=0, validation_alias=_env("CHATIR_SERVICE_TIMEOUT"))
    thumbnail_size: int = Field(256, ge=16, le=2048, validation_alias=_env("CHATIR_THUMBNAIL_SIZE"))
    max_upload_mb: int = Field(50, ge=1, validation_alias=_env("CHATIR_MAX_UPLOAD_MB"))
    index_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("CHATIR_INDEX_ROOTS"),
        description="Folders whose files `POST /v1/index` may index by path (separated by the OS path "
        "separator, ':' on Linux). Unset: paths are refused over HTTP and only uploads are accepted; "
        "`chatir index` run on the service's machine without a running service is not affected.",
    )

    # --- questioner LLM (any OpenAI-compatible server) ---------------------------------------------
    llm_model: str | None = Field(
        None,
        validation_alias=_env("CHATIR_LLM_MODEL"),
        description="Chat model name; unset = LLM-free questioner.",
    )
    llm_base_url: str | None = Field(None, validation_alias=_env("CHATIR_LLM_BASE_URL", "OPENAI_BASE_URL"))
    llm_api_key: SecretStr | None = Field(None, validation_alias=_env("CHATIR_LLM_API_KEY", "OPENAI_API_KEY"))
    max_rounds: int = Field(10, ge=1, le=50, validation_alias=_env("CHATIR_MAX_ROUNDS"))
    top_k: int = Field(
        10,
        ge=1,
        le=50,
        validation_alias=_env("CHATIR_TOP_K"),
        description='Matches shown after every turn ("more" shows the next as many).',
    )
    questioner: Literal["auto", "llm", "info_gain", "random", "none"] = Field(
        "auto",
        validation_alias=_env("CHATIR_QUESTIONER"),
        description="Who asks the questions; auto = the LLM when CHATIR_LLM_MODEL is set, else info_gain.",
    )
    info_gain_temperature: float = Field(
        0.1,
        gt=0,
        validation_alias=_env("CHATIR_INFO_GAIN_TEMPERATURE"),
        description="Softness of the information-gain questioner's P(answer | image) = softmax(cos / T). Softer "
        "is safer for a weak model (noisy sharp likelihoods overrate many-answer questions); 0.1 was best for "
        "the scene-code starter on a held-out tuning world (docs/evaluation.md).",
    )
    info_gain_top_n: int = Field(
        20,
        ge=2,
        validation_alias=_env("CHATIR_INFO_GAIN_TOP_N"),
        description="Candidates the information-gain questioner weighs when it picks a question.",
    )
    info_gain_absent_threshold: float = Field(
        0.05,
        gt=0,
        le=1,
        validation_alias=_env("CHATIR_INFO_GAIN_ABSENT_THRESHOLD"),
        description='The information-gain questioner holds back a question about an object ("what colour is '
        "the circle?\") while the candidates' predicted P(there is no such object) is at least this.",
    )
    info_gain_settled_threshold: float = Field(
        0.85,
        gt=0,
        le=1,
        validation_alias=_env("CHATIR_INFO_GAIN_SETTLED_THRESHOLD"),
        description="The information-gain questioner holds back a question while one answer's predicted "
        "probability over the candidates is at least this (the dialog has settled it).",
    )
    info_gain_answer_weight: float = Field(
        1.0,
        ge=0,
        validation_alias=_env("CHATIR_INFO_GAIN_ANSWER_WEIGHT"),
        description="The information-gain questioner weighs its candidates by the retriever's score and by how "
        "well each fits the answers given so far (weight of their log-likelihoods; 0: the score alone).",
    )
    answer_model: str = Field(
        "auto",
        validation_alias=_env("CHATIR_ANSWER_MODEL"),
        description="How the LLM-free questioner and the re-ranker read a bank answer from a picture: 'auto' (the "
        "learned answer model shipped for the bank, fitted for the starter, when the service runs that model; "
        "else the text side), 'none' (always the text side) or the path of an answer-model .npz "
        "(`chatir starter answers`).",
    )
    caption_reader: str = Field(
        "auto",
        validation_alias=_env("CHATIR_CAPTION_READER"),
        description="Which answers the first description already implies, so that the re-ranker reads them from "
        "the pictures and the LLM-free questioner does not ask them: 'auto' (the reader shipped for the bank, "
        "if any; used with the bank's answer model), 'none', or the path of a caption-reader .npz "
        "(`chatir starter caption-reader`).",
    )
    rerank_pool: int = Field(
        3000,
        ge=0,
        le=5000,  # chatir.schemas.MAX_POOL_K: the service's largest pool
        validation_alias=_env("CHATIR_RERANK_POOL"),
        description="Re-rank this many top candidates by every answer read against its question's other answers "
        "(agent/rerank.py; needs the LLM-free questioner's bank; with the bank's answer model the answers are "
        "read from the pictures themselves); 0 turns it off.",
    )
    rerank_vector_cache: int = Field(
        20_000,
        ge=0,
        validation_alias=_env("CHATIR_RERANK_VECTOR_CACHE"),
        description="Image embeddings the agent keeps for the re-ranker (agent/vector_cache.py; about 2 KB each "
        "at 500 dimensions), so a pool fetches only those it has not seen; 0: every pool brings all of them.",
    )
    rerank_weight: float = Field(
        1.0,
        ge=0,
        validation_alias=_env("CHATIR_RERANK_WEIGHT"),
        description="Weight of the answers' log-likelihoods against the dialog encoder's score.",
    )
    question_bank: str = Field(
        "generic",
        validation_alias=_env("CHATIR_QUESTION_BANK"),
        description="Bank of the LLM-free questioners: 'generic' (everyday photos), 'world' (the procedural "
        "world of the demo) or the path of a JSON bank file.",
    )

    outcome_retention_days: int = Field(
        180,
        ge=0,
        le=3650,
        validation_alias=_env("CHATIR_OUTCOME_RETENTION_DAYS"),
        description="Days the outcome log (how searches ended, no message text: agent/outcomes.py, `chatir "
        "stats`) keeps a search; 0 turns the log off.",
    )

    # --- Slack -----------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))

    @field_validator("index_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
        return value

    @property
    def state_db(self) -> Path:
        """SQLite file holding the durable conversation state."""
        return self.home / "conversations.sqlite"

    @property
    def outcomes_db(self) -> Path:
        """SQLite file of the outcome log (agent/outcomes.py)."""
        return self.home / "outcomes.sqlite"

    @property
    def qdrant_path(self) -> Path:
        """Folder of the embedded Qdrant store (used only when ``QDRANT_URL`` is unset)."""
        return self.home / "qdrant"

    @property
    def thumbnails_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def starter_dir(self) -> Path:
        return self.home / "models" / "starter"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build ``Settings(...)`` directly instead."""
    return Settings()

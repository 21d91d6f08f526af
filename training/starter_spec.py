"""The starter's build specification: :class:`StarterSpec` (saved in ``starter.json``) and its recipes.

A spec says what a build makes (architecture, worlds, stages and their hyper-parameters); the build itself is
:mod:`training.starter` (``build_starter``). Recipes: ``StarterSpec()`` (staged, the first starter),
``joint_recipe`` (starter v2), ``code_recipe`` (starter v3), and tiny versions of each for tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from retriever_service.models.starter import VisionSpec
from training.code_text import TextRecipe
from training.joint import JointStage
from training.masking import MaskingConfig
from training.scene_perception import PerceptionRecipe


class ContrastiveStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(5e-4, gt=0)
    lr_decay: float = Field(0.85, gt=0, le=1)
    min_lr: float = Field(1e-5, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    temperature: float = Field(0.07, gt=0, description="initial temperature (learned)")
    caption_variants: int = Field(2, ge=1, description="captions per training image")
    captions_per_step: int | None = Field(
        1, ge=1, description="captions of each image used in one step (None: all its variants)"
    )
    attribute_weight: float = Field(
        0.15, ge=0, description="weight of the auxiliary ground-truth attribute loss (0 = pure contrastive)"
    )


class DialogStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=2)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    lr: float = Field(5e-5, gt=0)
    lr_decay: float = Field(0.93, gt=0, le=1)
    min_lr: float = Field(1e-6, ge=0)
    loss: Literal["recall", "infonce"] = "recall"
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    grad_accum: int = Field(4, ge=1, description="micro-batches per step, grouped by length (less padding)")
    hard_negatives: int = Field(0, ge=0)
    random_negatives: int = Field(
        448, ge=0, description="random cached images added to every batch's gallery"
    )
    trained_text_layers: int = Field(2, ge=1, description="top MiniLM layers trained (+ pooler, projection)")


class SceneCodeStage(BaseModel):
    """The scene-code recipe: the vision tower and the text side trained apart, then joined in the code."""

    model_config = ConfigDict(extra="forbid")

    perception: PerceptionRecipe = Field(default_factory=PerceptionRecipe)
    text: TextRecipe = Field(default_factory=TextRecipe)
    parallel: bool = Field(True, description="train both sides at once, one process (and CPU thread) each")


class StarterSpec(BaseModel):
    """Everything that defines a starter build (saved in ``starter.json``).

    ``recipe`` "staged" is the first starter's (image-caption contrastive, then ChatIR's dialog training of
    the text side on a fixed world); "joint" trains both towers together on an endless stream of world
    dialogs with near-miss negatives and the paraphrase layer (:mod:`training.joint`).
    """

    model_config = ConfigDict(extra="forbid")

    recipe: Literal["staged", "joint", "scene_code"] = "staged"
    vision: VisionSpec = Field(default_factory=VisionSpec)
    text_layers: int = Field(
        6,
        ge=1,
        le=6,
        description="MiniLM layers kept from the bottom (6 = all; with fewer, MiniLM's [CLS] "
        "output, which the dual encoder pools, is the same for every text)",
    )
    projection_dim: int = Field(256, ge=8)
    max_text_tokens: int = Field(128, ge=16, le=512)
    world_seed: int = Field(7, ge=0)
    train_images: int = Field(6000, ge=16)
    val_images: int = Field(1000, ge=16)
    val_dialogs: int = Field(200, ge=8)
    contrastive: ContrastiveStage = Field(default_factory=ContrastiveStage)
    dialog: DialogStage = Field(default_factory=DialogStage)
    joint: JointStage | None = None
    scene_code: SceneCodeStage | None = None
    seed: int = 0

    @property
    def trained_text_layers(self) -> int:
        if self.recipe == "scene_code":
            return self.text_layers  # ships every layer: the text side may start from a fine-tuned MiniLM
        return (
            self.joint.trained_text_layers
            if self.recipe == "joint" and self.joint
            else self.dialog.trained_text_layers
        )

    @property
    def text_pooling(self) -> Literal["joined", "clauses"]:
        """How the text side reads a dialog (the scene-code text recipe's ``pooling``; else one pass)."""
        return self.scene_code.text.pooling if self.recipe == "scene_code" and self.scene_code else "joined"

    @classmethod
    def tiny(cls) -> StarterSpec:
        """A minutes-to-seconds version for tests: same recipe, tiny towers and worlds."""
        return cls(
            vision=VisionSpec(
                hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
            ),
            projection_dim=32,
            max_text_tokens=48,
            train_images=320,
            val_images=100,
            val_dialogs=40,
            contrastive=ContrastiveStage(epochs=10, batch_size=32, lr=2e-3, lr_decay=0.9, caption_variants=2),
            dialog=DialogStage(epochs=2, batch_size=32, random_negatives=128, trained_text_layers=1),
        )

    @classmethod
    def joint_tiny(cls) -> StarterSpec:
        """The joint recipe in seconds, for tests: tiny towers, a few small batches."""
        from training.world_stream import StreamConfig

        return cls(
            recipe="joint",
            vision=VisionSpec(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
            ),
            projection_dim=32,
            max_text_tokens=64,
            joint=JointStage(
                steps=6,
                stream=StreamConfig(
                    batch_size=8, hard_negatives=1, image_size=32, low_res=0.0, max_text_tokens=64
                ),
                warmup_steps=2,
                trained_text_layers=1,
                val_images=32,
                val_dialogs=8,
                val_every=3,
                log_every=2,
            ),
        )

    @classmethod
    def joint_recipe(cls, *, quick: bool = False) -> StarterSpec:
        """Starter v2: the first starter's model (staged recipe, same architecture), then both towers trained
        together on streamed world dialogs for 45 minutes on 2 CPU cores (``quick``: 18 minutes).

        The joint stage follows a time budget: the learning rate decays with elapsed time. (From scratch, the
        joint stage needs far more steps than a CPU gives in an hour: the vision tower stayed at the
        attribute loss of a constant guess for 500 steps; see docs/starter-model.md.)
        """
        from training.world_stream import StreamConfig

        stage = JointStage(
            steps=100_000,
            time_budget_s=(18 if quick else 45) * 60,
            stream=StreamConfig(batch_size=48, hard_negatives=1, image_size=64, low_res=0.0),
            init="staged",
            lr_vision=3e-4,
            lr_text=1e-4,
            warmup_steps=30,
            trained_text_layers=2,
            val_images=1000 if quick else 2000,
            val_dialogs=200 if quick else 400,
            val_every=400 if quick else 300,
            log_every=20,
            checkpoint_every_s=180,
        )
        return cls(recipe="joint", max_text_tokens=256, joint=stage)

    @classmethod
    def code_recipe(cls, *, minutes: float = 60, trained_text_layers: int = 6) -> StarterSpec:
        """Starter v3: the embedding space is the scene-attribute code (``objective="code"``, see
        :func:`training.joint.code_losses`); the vision tower starts from the staged recipe's
        (or, with ``--init-weights``, a shipped starter's) and the text side learns to read what each dialog
        says or rules out about every attribute. Both sides are supervised by the world's ground truth, which a
        CPU learns in an hour where the contrastive recipe could not.
        """
        from training.world_stream import StreamConfig
        from world.attributes import attribute_names

        stage = JointStage(
            steps=1_000_000,
            time_budget_s=minutes * 60,
            stream=StreamConfig(batch_size=48, hard_negatives=1, image_size=64, low_res=0.0),
            init="staged",
            objective="code",
            lr_vision=3e-4,
            lr_projection=3e-3,
            lr_text=1.5e-4,
            warmup_steps=30,
            trained_text_layers=trained_text_layers,
            val_images=2000,
            val_dialogs=400,
            val_every=300,
            log_every=20,
            checkpoint_every_s=180,
        )
        return cls(recipe="joint", max_text_tokens=256, projection_dim=len(attribute_names()), joint=stage)

    @classmethod
    def code_tiny(cls) -> StarterSpec:
        """The code recipe in seconds, for tests."""
        from world.attributes import attribute_names

        spec = cls.joint_tiny()
        assert spec.joint is not None
        spec.joint.objective = "code"
        spec.projection_dim = len(attribute_names())
        return spec


def _scene_code_spec(stage: SceneCodeStage) -> StarterSpec:
    from training.scene_perception import scene_code_layout
    from world.attributes import attribute_names

    perception = stage.perception
    vision = VisionSpec(
        kind="scene_code",
        image_size=perception.image_size,
        hidden_sizes=perception.widths,
        layout=scene_code_layout(perception.cell_hidden),
    )
    return StarterSpec(
        recipe="scene_code",
        vision=vision,
        projection_dim=len(attribute_names()),
        max_text_tokens=stage.text.max_text_tokens,
        world_seed=stage.perception.world_seed,
        scene_code=stage,
    )


def scene_code_recipe(*, quick: bool = False) -> StarterSpec:
    """Starter v4 (shipped): a convolutional vision tower that reads the scene's attribute code (60 minutes of
    one CPU core; ``quick``: 15) and a text side that reads a dialog as evidence on every attribute (75 minutes
    of the other core; ``quick``: 18), trained at the same time."""
    return _scene_code_spec(
        SceneCodeStage(
            perception=PerceptionRecipe(time_budget_s=(15 if quick else 60) * 60),
            text=TextRecipe(time_budget_s=(18 if quick else 75) * 60),
        )
    )


def scene_code_tiny() -> StarterSpec:
    """The scene-code recipe in seconds, for tests."""
    from training.world_stream import StreamConfig

    return _scene_code_spec(
        SceneCodeStage(
            perception=PerceptionRecipe(
                image_size=32,
                widths=(8, 16),
                cell_hidden=16,
                batch_size=8,
                steps=4,
                val_images=16,
                val_every=2,
                log_every=2,
                warmup_steps=1,
                larger_render=0.5,
            ),
            text=TextRecipe(
                batch_size=4,
                steps=3,
                max_text_tokens=48,
                trained_text_layers=1,
                val_dialogs=8,
                val_every=2,
                log_every=1,
                warmup_steps=1,
                stream=StreamConfig(hard_negatives=0, max_text_tokens=48),
            ),
            parallel=False,
        )
    )


def staged_base_spec(spec: StarterSpec) -> StarterSpec:
    """The staged recipe whose model a joint build with ``init="staged"`` starts from (same architecture; for the
    code objective, whose embedding is the attribute code, the staged model keeps its own 256-d projections)."""
    code = spec.joint is not None and spec.joint.objective == "code"
    return StarterSpec(
        vision=spec.vision,
        text_layers=spec.text_layers,
        projection_dim=StarterSpec.model_fields["projection_dim"].default if code else spec.projection_dim,
        world_seed=spec.world_seed,
        seed=spec.seed,
        dialog=DialogStage(trained_text_layers=spec.trained_text_layers),
    )


__all__ = [
    "ContrastiveStage",
    "DialogStage",
    "SceneCodeStage",
    "StarterSpec",
    "scene_code_recipe",
    "scene_code_tiny",
    "staged_base_spec",
]

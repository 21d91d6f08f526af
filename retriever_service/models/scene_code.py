"""A vision tower whose output is a scene-attribute code: the starter's perception of its world.

The world's pictures are up to four shapes in the cells of a 3x3 grid (:mod:`world`): each cell holds
nothing or one object with a shape, colour, size and pattern, and the picture has a background colour, a
backdrop, a lighting and maybe a frame. :class:`SceneCodeVisionModel` is a small convolutional network that
keeps positions: it pools its feature map over each grid cell and classifies the cell with one head shared by
all nine cells (nine times the training signal per picture), and the scene-wide properties with a second head.

Its pooled output is not a learned feature but the picture's *attribute code*: for every attribute named in
``config.attribute_names`` ("shape+colour:star/red", "at+pattern:top left/striped", "objects:3", ...) the
probability that the picture has it, from the heads' distributions (cells independent; inside a cell, shape,
colour, size and pattern independent given that the cell is occupied), mapped to [-1, 1]. A text tower that
predicts each attribute's log-likelihood ratio given a dialog then ranks pictures by a dot product: the
naive-Bayes fit of everything the dialog says or rules out. Which attributes exist and the words for each
value are configuration (data), so this module knows nothing of :mod:`world` and serving never imports it.

Registered with transformers' Auto classes as ``chatir_scene_code``, so a ``VisionTextDualEncoderModel``
built with it saves and loads like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

MODEL_TYPE = "chatir_scene_code"
OBJECT_KINDS = ("shape", "colour", "size", "pattern")
"""What each cell's object has, in the order of the cell head's outputs."""


class SceneCodeConfig(PretrainedConfig):
    """Architecture and code layout of :class:`SceneCodeVisionModel` (``hidden_size`` = the code's length)."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        image_size: int = 96,
        num_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        cell_hidden: int = 192,
        grid: int = 3,
        margin: float = 0.06,
        shapes: Sequence[str] = (),
        colours: Sequence[str] = (),
        sizes: Sequence[str] = (),
        patterns: Sequence[str] = (),
        positions: Sequence[str] = (),
        backgrounds: Sequence[str] = (),
        backdrops: Sequence[str] = (),
        max_objects: int = 4,
        attribute_names: Sequence[str] = (),
        **kwargs,
    ) -> None:
        kwargs.pop("hidden_size", None)
        super().__init__(**kwargs)
        self.image_size = image_size
        self.num_channels = num_channels
        self.widths = list(widths)
        self.cell_hidden = cell_hidden
        self.grid = grid
        self.margin = margin
        self.shapes = list(shapes)
        self.colours = list(colours)
        self.sizes = list(sizes)
        self.patterns = list(patterns)
        self.positions = list(positions)
        self.backgrounds = list(backgrounds)
        self.backdrops = list(backdrops)
        self.max_objects = max_objects
        self.attribute_names = list(attribute_names)
        self.hidden_size = len(self.attribute_names)

    def values(self, kind: str) -> list[str]:
        return {"shape": self.shapes, "colour": self.colours, "size": self.sizes, "pattern": self.patterns}[
            kind
        ]


def _block(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.GELU()
    )


def _cell_bounds(size: int, grid: int, margin: float) -> list[tuple[int, int]]:
    """Index ranges of a feature map of side ``size`` covering each grid row (or column), margins excluded."""
    cell = (1 - 2 * margin) / grid
    bounds = []
    for i in range(grid):
        start = (margin + i * cell) * size
        end = (margin + (i + 1) * cell) * size
        bounds.append((max(0, int(start)), min(size, max(int(start) + 1, round(end + 0.499)))))
    return bounds


def count_distribution(probabilities: torch.Tensor, max_count: int) -> torch.Tensor:
    """P(exactly n of independent events happen), n = 0..max_count, for probabilities (..., events)."""
    shape = probabilities.shape[:-1]
    dist = torch.zeros(*shape, max_count + 1, dtype=probabilities.dtype, device=probabilities.device)
    dist[..., 0] = 1.0
    for k in range(probabilities.shape[-1]):
        p = probabilities[..., k : k + 1]
        shifted = torch.cat([torch.zeros_like(dist[..., :1]), dist[..., :-1]], dim=-1)
        dist = dist * (1 - p) + shifted * p
    return dist


class SceneCodeVisionModel(PreTrainedModel):
    """Convolutional perception of a grid scene; ``pooler_output`` is its attribute code in [-1, 1]."""

    config_class = SceneCodeConfig
    main_input_name = "pixel_values"
    base_model_prefix = "scene_code"
    input_modalities = ("image",)

    def __init__(self, config: SceneCodeConfig) -> None:
        super().__init__(config)
        widths = config.widths
        layers: list[nn.Module] = []
        previous = config.num_channels
        for width in widths:
            layers += [_block(previous, width, 2), _block(width, width, 1)]
            previous = width
        self.backbone = nn.Sequential(*layers)
        width = widths[-1]
        cells = config.grid * config.grid
        self.cell_position = nn.Parameter(torch.zeros(cells, 16))
        sizes = [len(config.shapes) + 1, len(config.colours), len(config.sizes), len(config.patterns)]
        self.cell_head = nn.Sequential(
            nn.Linear(3 * width + 16, config.cell_hidden),
            nn.GELU(),
            nn.Linear(config.cell_hidden, sum(sizes)),
        )
        self.cell_splits = sizes
        scene_sizes = [len(config.backgrounds), len(config.backdrops), 1, 1]
        self.scene_head = nn.Sequential(
            nn.Linear(2 * width, 128), nn.GELU(), nn.Linear(128, sum(scene_sizes))
        )
        self.scene_splits = scene_sizes
        catalogue = self._catalogue_names()
        index = {name: i for i, name in enumerate(catalogue)}
        unknown = [name for name in config.attribute_names if name not in index]
        if unknown:
            raise ValueError(f"the scene-code model cannot compute attributes {unknown[:5]}")
        # a plain list, not a buffer: loading builds the model on the meta device and would lose a buffer
        self.code_index = [index[name] for name in config.attribute_names]
        self.post_init()

    # ------------------------------------------------------------------------------------- heads
    def heads(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: ``cell_<kind>`` (batch, cells, values; shape has "empty" first), ``background``,
        ``backdrop``, ``dark``, ``framed``."""
        features = self.backbone(pixel_values)
        _, _, height, width = features.shape
        rows = _cell_bounds(height, self.config.grid, self.config.margin)
        cols = _cell_bounds(width, self.config.grid, self.config.margin)
        mean = features.mean(dim=(2, 3))
        pooled = []
        for r0, r1 in rows:
            for c0, c1 in cols:
                region = features[:, :, r0:r1, c0:c1]
                pooled.append(torch.cat([region.mean(dim=(2, 3)), region.amax(dim=(2, 3)), mean], dim=1))
        cells = torch.stack(pooled, dim=1)  # (batch, cells, 3 * width)
        position = self.cell_position.unsqueeze(0).expand(cells.shape[0], -1, -1)
        cell_logits = self.cell_head(torch.cat([cells, position], dim=2))
        shape, colour, size, pattern = cell_logits.split(self.cell_splits, dim=2)
        scene = self.scene_head(torch.cat([mean, features.amax(dim=(2, 3))], dim=1))
        background, backdrop, dark, framed = scene.split(self.scene_splits, dim=1)
        return {
            "cell_shape": shape,
            "cell_colour": colour,
            "cell_size": size,
            "cell_pattern": pattern,
            "background": background,
            "backdrop": backdrop,
            "dark": dark.squeeze(1),
            "framed": framed.squeeze(1),
        }

    # -------------------------------------------------------------------------------------- code
    def _catalogue_names(self) -> list[str]:
        config = self.config
        names: list[str] = []
        for kind in OBJECT_KINDS:
            names += [f"{kind}:{v}" for v in config.values(kind)]
        for kind in OBJECT_KINDS:
            names += [f"at+{kind}:{p}/{v}" for p in config.positions for v in config.values(kind)]
        for i, first in enumerate(OBJECT_KINDS):
            for second in OBJECT_KINDS[i + 1 :]:
                names += [
                    f"{first}+{second}:{x}/{y}" for x in config.values(first) for y in config.values(second)
                ]
        for kind in OBJECT_KINDS:
            names += [f"two+ {kind}:{v}" for v in config.values(kind)]
        names += [f"background:{v}" for v in config.backgrounds]
        names += [f"backdrop:{v}" for v in config.backdrops]
        names += ["dark", "framed"]
        names += [f"objects:{n}" for n in range(1, config.max_objects + 1)]
        names += [f"colours:{n}" for n in range(1, config.max_objects + 1)]
        return names

    def code_probabilities(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, attributes): the probability of every configured attribute, from the heads' logits."""
        shape_all = logits["cell_shape"].float().softmax(dim=2)
        occupied = 1 - shape_all[..., 0]  # (batch, cells)
        given = {
            "shape": shape_all[..., 1:] / occupied.clamp_min(1e-6).unsqueeze(2),
            "colour": logits["cell_colour"].float().softmax(dim=2),
            "size": logits["cell_size"].float().softmax(dim=2),
            "pattern": logits["cell_pattern"].float().softmax(dim=2),
        }
        present = {
            kind: occupied.unsqueeze(2) * given[kind] for kind in OBJECT_KINDS
        }  # (batch, cells, values)
        batch = occupied.shape[0]

        def anywhere(per_cell: torch.Tensor) -> torch.Tensor:  # (batch, cells, v) -> (batch, v)
            return 1 - torch.prod(1 - per_cell, dim=1)

        blocks = [anywhere(present[kind]) for kind in OBJECT_KINDS]
        blocks += [present[kind].reshape(batch, -1) for kind in OBJECT_KINDS]
        for i, first in enumerate(OBJECT_KINDS):
            for second in OBJECT_KINDS[i + 1 :]:
                joint = present[first].unsqueeze(3) * given[second].unsqueeze(2)  # (batch, cells, x, y)
                blocks.append(anywhere(joint.flatten(2)))
        for kind in OBJECT_KINDS:
            counts = count_distribution(present[kind].transpose(1, 2), 2)  # (batch, v, 0..2)
            blocks.append(1 - counts[..., 0] - counts[..., 1])
        blocks.append(logits["background"].float().softmax(dim=1))
        blocks.append(logits["backdrop"].float().softmax(dim=1))
        blocks.append(torch.sigmoid(logits["dark"].float()).unsqueeze(1))
        blocks.append(torch.sigmoid(logits["framed"].float()).unsqueeze(1))
        top = self.config.max_objects
        blocks.append(count_distribution(occupied, top)[:, 1 : top + 1])
        blocks.append(count_distribution(blocks[1], top)[:, 1 : top + 1])  # distinct colours
        every = torch.cat(blocks, dim=1).clamp(0.0, 1.0)
        return every[:, torch.tensor(self.code_index, device=every.device)]

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = True, **kwargs
    ) -> BaseModelOutputWithPooling | tuple:
        logits = self.heads(pixel_values)
        code = self.code_probabilities(logits) * 2 - 1
        code = code.to(pixel_values.dtype)
        if return_dict is False:
            return (code, code)
        return BaseModelOutputWithPooling(last_hidden_state=code, pooler_output=code)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def register() -> None:
    """Make ``chatir_scene_code`` known to transformers' Auto classes (idempotent)."""
    with contextlib.suppress(ValueError):  # already registered
        AutoConfig.register(MODEL_TYPE, SceneCodeConfig)
    with contextlib.suppress(ValueError):
        AutoModel.register(SceneCodeConfig, SceneCodeVisionModel)


register()

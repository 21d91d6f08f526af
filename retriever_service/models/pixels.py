"""Image preprocessing without transformers' per-image NumPy round trips, same pixels.

Without torchvision, transformers uses its PIL-backend image processors (``*ImageProcessorPil``). Per image
they turn the PIL image into a NumPy array, back into a PIL image to resize it, then rescale in float64 and
normalise in NumPy: for a 640x480 photo and the starter's 96 px input that is about half the time of the
whole step, and for a small world image nearly all of it. :class:`FastPixels` does the same steps with one
PIL resize and one PIL crop per image (the very calls the processor ends up making) and rescales and
normalises the whole batch at once in torch. It only takes processors whose steps it reproduces exactly —
the plain PIL backend (CLIP, BLIP, SigLIP and the starter's processors): resize to a shortest edge or to a
fixed size, optional centre crop, rescale, normalise, no padding — and gives ``None`` for anything else, which
then keeps the processor. ``tests/test_pixels.py`` checks it against the processor (max difference 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image


class FastPixels:
    """``pixel_values`` as a PIL-backend image processor computes them (use :meth:`for_processor`)."""

    def __init__(
        self,
        *,
        resize: tuple[str, Any] | None,
        resample: int,
        crop: tuple[int, int] | None,
        rescale: float | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        self.resize = resize  # ("shortest_edge", n) or ("fixed", (height, width)) or None
        self.resample = resample
        self.crop = crop  # (height, width) or None
        self.rescale = rescale
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def for_processor(cls, processor: Any) -> FastPixels | None:
        """The fast equivalent of ``processor``, or None when it does anything this class does not reproduce."""
        try:
            from transformers.image_processing_backends import PilBackend
        except ImportError:  # an older transformers: keep its processor
            return None
        kind = type(processor)
        if not isinstance(processor, PilBackend):
            return None
        if kind._preprocess is not PilBackend._preprocess or kind.resize is not PilBackend.resize:
            return None  # a processor with steps of its own
        if kind.center_crop is not PilBackend.center_crop or getattr(processor, "do_pad", None):
            return None
        if not getattr(processor, "do_convert_rgb", True):
            return None  # RGB is what the decoder gives; a processor that keeps other modes is left alone
        resize: tuple[str, Any] | None = None
        if processor.do_resize:
            size = processor.size
            if size.shortest_edge and not size.longest_edge and not size.height:
                resize = ("shortest_edge", int(size.shortest_edge))
            elif size.height and size.width and not size.shortest_edge and not size.longest_edge:
                resize = ("fixed", (int(size.height), int(size.width)))
            else:
                return None
        crop = None
        if processor.do_center_crop:
            crop_size = processor.crop_size
            if not (crop_size and crop_size.height and crop_size.width):
                return None
            crop = (int(crop_size.height), int(crop_size.width))
        mean = std = None
        if processor.do_normalize:
            mean, std = _three(processor.image_mean), _three(processor.image_std)
            if mean is None or std is None:
                return None
        resample = processor.resample if processor.resample is not None else Image.Resampling.BILINEAR
        return cls(
            resize=resize,
            resample=int(resample),
            crop=crop,
            rescale=float(processor.rescale_factor) if processor.do_rescale else None,
            mean=mean,
            std=std,
        )

    def array(self, image: Image.Image) -> np.ndarray | None:
        """One image resized and cropped, (H, W, 3) uint8; None when the processor would have to pad it."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.resize is not None:
            height, width = self._resized_size(image.height, image.width)
            if (height, width) != (image.height, image.width):  # PIL returns a copy at the same size
                image = image.resize((width, height), resample=self.resample)
        if self.crop is not None:
            crop_height, crop_width = self.crop
            top, left = (image.height - crop_height) // 2, (image.width - crop_width) // 2
            if top < 0 or left < 0:
                return None  # smaller than the crop: the processor pads, which is not reproduced here
            image = image.crop((left, top, left + crop_width, top + crop_height))
        return np.asarray(image)

    def tensor(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """``pixel_values`` (n, 3, H, W) float32 of arrays from :meth:`array` (all of one size)."""
        values = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32)
        if self.rescale is not None:
            values = values * self.rescale
        if self.mean is not None and self.std is not None:
            values = (values - self.mean) / self.std
        return values.contiguous()

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor | None:
        """``pixel_values`` of ``images``, or None when one of them needs the processor (padding, odd sizes)."""
        arrays = [self.array(image) for image in images]
        if not arrays or any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:  # type: ignore[union-attr]
            return None
        return self.tensor(arrays)  # type: ignore[arg-type]

    def _resized_size(self, height: int, width: int) -> tuple[int, int]:
        """What transformers' ``get_resize_output_image_size`` (default_to_square=False) gives."""
        assert self.resize is not None
        kind, value = self.resize
        if kind == "fixed":
            return value
        from transformers.image_transforms import get_resize_output_image_size
        from transformers.image_utils import ChannelDimension

        shape_only = np.broadcast_to(np.uint8(0), (3, height, width))  # no pixels are read
        new_height, new_width = get_resize_output_image_size(
            shape_only, size=value, default_to_square=False, input_data_format=ChannelDimension.FIRST
        )
        return int(new_height), int(new_width)


def _three(values: Any) -> list[float] | None:
    """Per-channel statistics as three floats (a single number applies to all three)."""
    if values is None:
        return None
    if isinstance(values, int | float):
        return [float(values)] * 3
    values = [float(v) for v in values]
    return values if len(values) == 3 else None

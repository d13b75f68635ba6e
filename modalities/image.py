"""Photos and other RGB images, encoded by the anchor's own image tower (the binding target)."""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from binder.errors import ModalityError
from binder.registry import register_modality
from modalities.base import Modality
from modalities.common import MAX_PIXELS, check_file, check_pixels, open_image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageOptions:
    """Filled from the anchor's preprocessing config when a model is built."""

    image_size: int = 224
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    max_pixels: int = MAX_PIXELS


@register_modality
class ImageModality(Modality):
    """Any Pillow-readable image → RGB, short side resized to the anchor's size, center crop, CLIP normalization."""

    name = "image"
    extensions = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
    Options = ImageOptions
    tower = "image"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._transform = None

    def configure(self, anchor: Any) -> None:
        self.use_preprocess_cfg(anchor.preprocess_cfg)

    def use_preprocess_cfg(self, cfg: dict[str, Any]) -> None:
        """Adopt an open_clip preprocessing config (size, mean/std, interpolation, resize mode)."""
        size = cfg["size"]
        self.options = dataclasses.replace(
            self.options, image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
            mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
            interpolation=cfg.get("interpolation", "bicubic"), resize_mode=cfg.get("resize_mode", "shortest"))
        self._transform = None

    def transform(self):
        """open_clip's evaluation transform for the configured size and statistics."""
        if self._transform is None:
            from open_clip.transform import PreprocessCfg, image_transform_v2

            o = self.options
            pcfg = PreprocessCfg(size=o.image_size, mean=o.mean, std=o.std, interpolation=o.interpolation,
                                 resize_mode=o.resize_mode)
            self._transform = image_transform_v2(pcfg, is_train=False)
        return self._transform

    def load(self, path: str | os.PathLike) -> Image.Image:
        """RGB image; refused by its header size above ``max_pixels`` before it is decoded."""
        p = check_file(path)
        with open_image(p, self.options.max_pixels) as im:
            if min(im.size) < 2:
                raise ModalityError(path, f"image {im.size} is too small")
            return im.convert("RGB")

    def preprocess(self, raw: Image.Image) -> torch.Tensor:
        return self.transform()(raw)

    def input_shape(self) -> tuple[int, ...]:
        return (3, self.options.image_size, self.options.image_size)

    def preview(self, path: Path, size: int) -> Image.Image:
        """The picture itself, decoded at reduced scale where the format allows (JPEG draft), EXIF-rotated."""
        check_file(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    check_pixels(path, im.size, self.options.max_pixels)
                    im.draft("RGB", (size, size))
                    im.load()
                    out = ImageOps.exif_transpose(im)
                    return out.convert("RGBA" if "A" in out.getbands() else "RGB")
        except Image.DecompressionBombError as exc:
            raise ModalityError(path, f"image is a decompression bomb ({exc})") from None
        except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
            raise ModalityError(path, f"not a readable image ({exc})") from None

"""Data augmentation on the device, vectorised over the batch: ``augment = dict(crop=4, flip=True)``.

* ``crop=p``: pad every image with p zeros on each side (black, for images stored as uint8) and cut
  a random H x W window: offsets (dy, dx) uniform in {0..2p}^2 per image, one advanced-indexing
  gather for the whole batch (the window's pixel (i, j) is the padded image's (dy + i, dx + j));
* ``flip=True``: mirror each image left-right with probability 1/2.

The draws come from the run's own generator (the one that orders its batches), on the CPU, so a
run's augmented batches are the same with every executor and device and after ``--resume`` (the
generator's state is in the checkpoint). Applied to training batches only, before normalisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KEYS = {"crop": "pixels of zero padding for the random crop (0: no crop)", "flip": "random horizontal flips"}


def problem(value) -> str | None:
    """What is wrong with an ``augment`` dict, or None."""
    unknown = [k for k in value if k not in KEYS]
    if unknown:
        return f"has no key {unknown[0]!r}; its keys: crop (int >= 0), flip (bool)"
    crop = value.get("crop", 0)
    if not (isinstance(crop, int) and not isinstance(crop, bool) and crop >= 0):
        return f"crop must be a number of pixels >= 0, got {crop!r}"
    if not isinstance(value.get("flip", False), bool):
        return f"flip must be True or False, got {value.get('flip')!r}"
    return None


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, crop: int = 0, flip: bool = False) -> torch.Tensor:
    """The batch ``x`` (B, C, H, W) randomly cropped with zero padding ``crop`` and flipped (module docstring)."""
    b, c, h, w = x.shape
    if crop:
        offsets = torch.randint(0, 2 * crop + 1, (b, 2), generator=generator).to(x.device)
        rows = offsets[:, :1] + torch.arange(h, device=x.device)          # (B, H)
        cols = offsets[:, 1:] + torch.arange(w, device=x.device)          # (B, W)
        padded = F.pad(x, (crop, crop, crop, crop))
        x = padded[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mirror = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x


def batch_transform(value: dict):
    """The problem's ``batch_transform`` for ``augment=value`` (None when it does nothing)."""
    crop, flip = value.get("crop", 0), value.get("flip", False)
    if not crop and not flip:
        return None

    def transform(x, y, generator):
        return crop_and_flip(x, generator, crop, flip), y
    return transform

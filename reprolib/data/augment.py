"""The DeiT / Swin training augmentations beyond crop + flip: RandAugment, random erasing and
repeated augmentation, built from a recipe's fields (``TrainConfig.randaugment``,
``random_erasing``, ``repeated_aug``).

Folder data sets (ImageNet, Flowers-102) use timm's own pieces, exactly as DeiT and Swin do:
``timm.data.create_transform`` (RandomResizedCrop, flip, RandAugment from the spec string,
ToTensor, normalise, RandomErasing in "pixel" mode) and ``RepeatAugSampler``.  In-memory data
sets (CIFAR, the on-device loaders of ``reprolib.data``) get the same two image operations
per image on the device (:class:`BatchAugment`): torchvision's RandAugment with the spec's
number of operations and magnitude (timm's RandAugment works on PIL images only), and random
erasing with timm's area / aspect-ratio ranges and per-pixel normal noise, drawn from the
loader's seeded generator so that a resumed run sees the same erasing.
"""

from __future__ import annotations

import math

import torch

from reprolib.errors import ReprolibError

__all__ = ["recipe_aug", "parse_randaugment", "folder_train_transform", "repeat_sampler",
           "BatchAugment"]


def recipe_aug(recipe) -> dict:
    """The augmentation fields of a ``TrainConfig`` as the ``aug`` dict of
    ``reprolib.data.get_data`` (empty when none is set)."""
    out = {"randaugment": recipe.randaugment, "random_erasing": recipe.random_erasing,
           "repeated_aug": recipe.repeated_aug}
    return {k: v for k, v in out.items() if v}


def parse_randaugment(spec: str) -> dict:
    """timm's RandAugment spec (``rand-m9-n2-mstd0.5-inc1``) -> ``{"m", "n", "mstd", "inc"}``
    (timm's defaults n=2, mstd=0, inc=0); a ReprolibError for anything else."""
    parts = spec.split("-")
    if not parts or parts[0] != "rand":
        raise ReprolibError(f"randaugment={spec!r} is not a timm RandAugment spec "
                            "('rand-m9-mstd0.5-inc1')")
    out = {"m": 10.0, "n": 2, "mstd": 0.0, "inc": 0}
    for p in parts[1:]:
        if p.startswith("mmax"):                  # timm's magnitude cap: not changed here
            continue
        for key in ("mstd", "inc", "m", "n"):   # longest prefix first
            if p.startswith(key):
                try:
                    v = float(p[len(key):])
                except ValueError:
                    raise ReprolibError(f"randaugment={spec!r}: bad part {p!r}") from None
                out[key] = int(v) if key in ("n", "inc") else v
                break
        else:
            if p.startswith(("mmax", "w", "p")):     # timm options we do not change here
                continue
            raise ReprolibError(f"randaugment={spec!r}: unknown part {p!r}; valid: m, n, mstd, "
                                "inc (e.g. rand-m9-mstd0.5-inc1)")
    return out


def folder_train_transform(image_size: int, aug: dict):
    """timm's training transform of DeiT / Swin for a folder data set at ``image_size``."""
    import reprolib  # noqa: F401  (torchvision before timm: see reprolib._compat)
    from timm.data import create_transform

    from reprolib.data import IMAGENET_MEAN, IMAGENET_STD

    spec = aug.get("randaugment") or None
    if spec:
        parse_randaugment(spec)
    return create_transform(image_size, is_training=True, auto_augment=spec,
                            re_prob=float(aug.get("random_erasing", 0.0)), re_mode="pixel",
                            re_count=1, interpolation="bicubic", mean=IMAGENET_MEAN,
                            std=IMAGENET_STD)


def repeat_sampler(dataset, world_size: int, rank: int, shuffle: bool, repeats: int):
    """timm's ``RepeatAugSampler``: every image ``repeats`` times per epoch, spread over the
    processes (DeiT's repeated augmentation, 3)."""
    from timm.data.distributed_sampler import RepeatAugSampler

    return RepeatAugSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                            num_repeats=repeats)


class BatchAugment:
    """RandAugment (before normalisation, images in 0..1) and random erasing (after it) of an
    on-device batch, per image.

    randaugment: timm spec ("" = off); random_erasing: probability per image (0 = off).
    """

    def __init__(self, randaugment: str = "", random_erasing: float = 0.0):
        if not 0 <= random_erasing <= 1:
            raise ReprolibError(f"random_erasing={random_erasing} must be in [0, 1]")
        self.spec = randaugment
        self.random_erasing = float(random_erasing)
        self.randaugment = None
        if randaugment:
            from torchvision.transforms import v2

            p = parse_randaugment(randaugment)
            self.params = p
            self.randaugment = v2.RandAugment(num_ops=int(p["n"]),
                                              magnitude=int(round(p["m"])), num_magnitude_bins=11)

    def __repr__(self) -> str:
        return f"BatchAugment(randaugment={self.spec!r}, random_erasing={self.random_erasing})"

    def before_norm(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.randaugment is None:
            return x
        u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        out = torch.stack([self.randaugment(img) for img in u8])
        return out.float().div_(255)

    def after_norm(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """timm's RandomErasing, "pixel" mode, one box per chosen image: area 2-33 % of the
        image, log-uniform aspect ratio in (0.3, 3.3), filled with N(0, 1) noise."""
        if self.random_erasing <= 0:
            return x
        n, c, h, w = x.shape
        x = x.clone()
        chosen = (torch.rand(n, generator=g) < self.random_erasing).tolist()
        for i in (i for i, on in enumerate(chosen) if on):
            for _ in range(10):
                area = h * w * (0.02 + (1 / 3 - 0.02) * torch.rand((), generator=g).item())
                logr = math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * \
                    torch.rand((), generator=g).item()
                r = math.exp(logr)
                eh, ew = int(round(math.sqrt(area * r))), int(round(math.sqrt(area / r)))
                if 0 < eh < h and 0 < ew < w:
                    top = int(torch.randint(0, h - eh + 1, (), generator=g))
                    left = int(torch.randint(0, w - ew + 1, (), generator=g))
                    noise = torch.randn((c, eh, ew), generator=g).to(x.device, x.dtype)
                    x[i, :, top:top + eh, left:left + ew] = noise
                    break
        return x

"""Loaders: a :class:`Data` of train / test (/ val) loaders that yield ``(x, y)`` batches
already on the device, normalised, NCHW float -- in memory on the device for the small sets
(:class:`TensorLoader`), a DataLoader with torchvision / timm transforms for folder sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from reprolib import paths
from reprolib.data.catalog import (DETECTION_DATASETS, IMAGENET_MEAN, IMAGENET_STD,
                                   check_dataset)
from reprolib.data.sources import _array_dataset, _torchvision, may_download, root_dir
from reprolib.errors import ReprolibError

if TYPE_CHECKING:
    import torch

class TensorLoader:
    """Batches from a whole data set held on the device as uint8 NCHW.

    images: (N, C, H, W) uint8; labels: (N,) int64.  Augmentation runs batched on the
    device: random crop of the original size after zero padding ``pad`` pixels, then a
    horizontal flip (when ``flip``), then a bilinear resize to ``image_size`` (when it
    differs), then normalisation with ``mean`` / ``std`` (per channel, 0..1 scale).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool, augment: bool, image_size: int, mean, std, flip: bool = True,
                 pad: int | None = None, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, extra=None):
        self.extra = extra             # reprolib.augment.BatchAugment (RandAugment, erasing)
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.image_size, self.flip = image_size, flip
        import torch

        self.pad = images.shape[-1] // 8 if pad is None else pad
        self.mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        self.seed, self.drop_last, self.rank, self.world_size = seed, drop_last, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def dataset_size(self) -> int:
        return len(self.labels)

    def _indices(self) -> torch.Tensor:
        import torch

        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        if self.world_size > 1:  # equal shards: pad by wrapping, like DistributedSampler
            per = -(-n // self.world_size)
            idx = torch.cat([idx, idx[: per * self.world_size - n]])[self.rank::self.world_size]
        return idx

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch
        import torch.nn.functional as F

        idx = self._indices()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7_919)
        for s in range(0, len(idx), self.batch_size):
            b = idx[s:s + self.batch_size]
            if self.drop_last and len(b) < self.batch_size:
                break
            b = b.to(self.images.device)
            x = self.images[b].float().div_(255)
            if self.augment:
                x = self._augment(x, g)
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                  align_corners=False)
            if self.augment and self.extra is not None:
                x = self.extra.before_norm(x, g)
            x = (x - self.mean) / self.std
            if self.augment and self.extra is not None:
                x = self.extra.after_norm(x, g)
            yield x, self.labels[b]

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        n, _, h, w = x.shape
        if self.pad:
            p = self.pad
            xp = F.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (n,), generator=g).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=g).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bi = torch.arange(n, device=x.device)[:, None, None, None]
            ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = xp[bi, ci, rows, cols]
        if self.flip:
            m = (torch.rand(n, generator=g) < 0.5).to(x.device)[:, None, None, None]
            x = torch.where(m, x.flip(3), x)
        return x


class DeviceLoader:
    """A torch DataLoader whose batches are moved to ``device`` (folder data sets)."""

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, device, seed: int = 0,
                 workers: int = 4, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 repeats: int = 0):
        import torch
        from torch.utils.data import DataLoader, DistributedSampler

        self.device = device
        if repeats > 1:   # DeiT's repeated augmentation (timm's sampler)
            from reprolib.data.augment import repeat_sampler

            self.sampler = repeat_sampler(dataset, world_size, rank, shuffle, repeats)
        else:
            self.sampler = DistributedSampler(dataset, world_size, rank, shuffle=shuffle,
                                              seed=seed, drop_last=drop_last)
        self.loader = DataLoader(dataset, batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=torch.device(device).type == "cuda",
                                 drop_last=drop_last, persistent_workers=workers > 0)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def dataset_size(self) -> int:
        return len(self.loader.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass
class Data:
    """A data set made ready for training: loaders plus what a model needs to know."""

    name: str                      # the data set spec it was built from
    train: object                  # iterable of (x, y) batches, augmented, shuffled
    test: object                   # iterable of (x, y) batches, no augmentation
    num_classes: int
    classes: list[str] = field(default_factory=list)
    image_size: int = 32
    val: object | None = None      # held-out split of train (val_fraction > 0), no augmentation

    @property
    def train_size(self) -> int:
        return self.train.dataset_size

    @property
    def test_size(self) -> int:
        return self.test.dataset_size

    def val_batch(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One fixed batch of held-out images (from ``val``, else ``test``), at most ``n``."""
        x, y = next(iter(self.val if self.val is not None else self.test))
        return (x, y) if n is None else (x[:n], y[:n])


def get_data(dataset: str, image_size: int = 32, batch_size: int = 128, *, root=None,
             device="cpu", augment: bool = True, seed: int = 0, eval_batch_size: int | None = None,
             val_fraction: float = 0.0, workers: int = 4, rank: int | None = None,
             world_size: int | None = None, aug: dict | None = None) -> Data:
    """Build the loaders of ``dataset`` (see the module docstring for the names).

    image_size: the resolution the model sees (images are resized on the device for the
        in-memory sets, RandomResizedCrop / center crop for folder sets).
    batch_size: training batch per process; eval_batch_size defaults to 2x it.
    augment: training augmentation (crop + flip); evaluation never augments.
    seed: data order and augmentation; each epoch reseeds from (seed, epoch).
    val_fraction: fraction of the training set held out as ``Data.val`` (fixed by seed), e.g.
        for NAS rewards; Flowers-102 holds out its official val split instead.
    rank / world_size: the shard to read (default: from torch.distributed when initialised).
    aug: the recipe's extra training augmentation (``reprolib.augment.recipe_aug``:
        randaugment, random_erasing, repeated_aug); folder sets build timm's transforms and
        sampler, in-memory sets apply RandAugment / erasing per image on the device.
    """
    import torch

    if rank is None or world_size is None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if dist else 0
        world_size = torch.distributed.get_world_size() if dist else 1
    eval_bs = eval_batch_size or 2 * batch_size
    check_dataset(dataset)
    if dataset in DETECTION_DATASETS:            # COCO instances: reprolib.coco
        from reprolib.data.coco import coco_data

        return coco_data(dataset, batch_size, eval_bs, root, device, augment, seed, workers,
                         rank, world_size, image_size)
    if dataset in ("flowers102", "imagenet"):
        return _folder_data(dataset, image_size, batch_size, eval_bs, root, device, augment,
                            seed, workers, rank, world_size, val_fraction, aug)
    a = _array_dataset(dataset, image_size, root)
    xtr, ytr = torch.from_numpy(a.train_images), torch.from_numpy(a.train_labels)
    val = None
    if val_fraction > 0:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(ytr), generator=g)
        nv = max(1, int(round(val_fraction * len(ytr))))
        vi, ti = perm[:nv], perm[nv:]
        (xv, yv), (xtr, ytr) = (xtr[vi], ytr[vi]), (xtr[ti], ytr[ti])
    x01 = xtr.float().div(255)
    mean = x01.mean((0, 2, 3)).tolist()
    std = x01.std((0, 2, 3)).clamp_min(1e-3).tolist()
    dev = torch.device(device)
    mk = dict(image_size=image_size, mean=mean, std=std, flip=a.flip, seed=seed, rank=rank,
              world_size=world_size)
    extra = None
    if aug and augment and (aug.get("randaugment") or aug.get("random_erasing")):
        from reprolib.data.augment import BatchAugment

        extra = BatchAugment(aug.get("randaugment", ""), aug.get("random_erasing", 0.0))
    train = TensorLoader(xtr.to(dev), ytr.to(dev), batch_size, shuffle=True, augment=augment,
                         drop_last=len(ytr) // world_size > batch_size, extra=extra, **mk)
    test = TensorLoader(torch.from_numpy(a.test_images).to(dev),
                        torch.from_numpy(a.test_labels).to(dev), eval_bs, shuffle=False,
                        augment=False, **mk)
    if val_fraction > 0:
        val = TensorLoader(xv.to(dev), yv.to(dev), eval_bs, shuffle=False, augment=False, **mk)
    return Data(dataset, train, test, len(a.classes), a.classes, image_size, val)


def _folder_data(name, image_size, batch_size, eval_bs, root, device, augment, seed, workers,
                 rank, world_size, val_fraction=0.0, aug=None) -> Data:
    import torch
    import torchvision
    from torchvision import transforms as T

    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose(([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()] if augment
                          else [T.Resize(int(image_size / 0.875)), T.CenterCrop(image_size)])
                         + [T.ToTensor(), norm])
    if aug and augment:   # DeiT / Swin: timm's RandomResizedCrop, flip, RandAugment, erasing
        from reprolib.data.augment import folder_train_transform

        train_tf = folder_train_transform(image_size, aug)
    test_tf = T.Compose([T.Resize(int(image_size / 0.875)), T.CenterCrop(image_size),
                         T.ToTensor(), norm])
    val = None
    if name == "flowers102":
        base, dl = root_dir(root), may_download(root)
        cls = torchvision.datasets.Flowers102
        # train + val (2,040 images) by default, tested on the 6,149 test images;
        # with val_fraction > 0 the official val split is held out as Data.val instead.
        splits = ("train",) if val_fraction > 0 else ("train", "val")
        tr = torch.utils.data.ConcatDataset(
            [_torchvision(cls, name, base, dl, split=s, transform=train_tf) for s in splits])
        te = _torchvision(cls, name, base, dl, split="test", transform=test_tf)
        if val_fraction > 0:
            val = _torchvision(cls, name, base, dl, split="val", transform=test_tf)
        classes = [str(i) for i in range(102)]
    else:
        if root is None:
            raise ReprolibError("data set imagenet needs a folder: pass data_root=/path/to/imagenet "
                                "(with train/ and val/ class folders)")
        base = paths.resolve(root)
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise ReprolibError(f"data set imagenet: {base / split} is not a folder; "
                                    "data_root must hold train/ and val/ class folders")
        tr = torchvision.datasets.ImageFolder(str(base / "train"), train_tf)
        te = torchvision.datasets.ImageFolder(str(base / "val"), test_tf)
        classes = list(tr.classes)
        if val_fraction > 0:  # a fixed random part of train, read with the eval transform
            perm = torch.randperm(len(tr), generator=torch.Generator().manual_seed(seed)).tolist()
            nv = max(1, int(round(val_fraction * len(tr))))
            val = torch.utils.data.Subset(
                torchvision.datasets.ImageFolder(str(base / "train"), test_tf), perm[:nv])
            tr = torch.utils.data.Subset(tr, perm[nv:])
    mk = dict(device=device, seed=seed, workers=workers, rank=rank, world_size=world_size)
    reps = int((aug or {}).get("repeated_aug", 0)) if augment else 0
    return Data(name, DeviceLoader(tr, batch_size, shuffle=True, drop_last=True, repeats=reps,
                                   **mk),
                DeviceLoader(te, eval_bs, shuffle=False, **mk), len(classes), classes, image_size,
                DeviceLoader(val, eval_bs, shuffle=False, **mk) if val is not None else None)

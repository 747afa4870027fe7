"""The bench's own comparison: training images/s of ``reprolib.train.fit`` beside a bare
minimal PyTorch loop and a loop written as the code books write it, on the same model, data
and device (:func:`loop_throughput`)."""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprolib.core.device import resolve_device
from reprolib.core.measure import interleaved
from reprolib.tools.bench.timing import autocast, environment, sync


def loop_throughput(model: nn.Module, data, *, device="cpu", batch_size: int = 128,
                    images: int | None = None, repeats: int = 3, workers: int = 2,
                    precision: str = "fp32", channels_last: bool = False,
                    compile: bool = False, lr: float = 0.01) -> dict:
    """Training images/s of ``reprolib.train.fit`` beside two loops on the same model, data
    and device, timed in interleaved rounds (one epoch over ``images`` training images each,
    median over ``repeats`` rounds):

    * ``bare``: the minimal PyTorch loop over the same on-device batches (forward,
      cross-entropy, zero_grad, backward, SGD step; no metrics);
    * ``codebook``: as the code books write it (kuangliu/pytorch-cifar and the like): a
      ``DataLoader`` with ``workers`` processes applying torchvision transforms to each PIL
      image (random crop with 4 px padding, flip, ToTensor, Normalize), ``.to(device)`` per
      batch and ``loss.item()`` / ``correct.item()`` every step.

    All three use SGD (momentum 0.9, weight decay 5e-4, ``lr``) at ``batch_size`` on a copy of
    the same initial model.  ``data``: a :class:`reprolib.data.Data` whose ``train`` is a
    ``TensorLoader`` (its images and augmentation are reused).  Returns images/s of each,
    ``fit_vs_bare`` and ``fit_vs_codebook`` (ratios of images/s) and the settings.
    """
    from reprolib.configs import TrainConfig
    from reprolib.data import TensorLoader

    dev = resolve_device(device)
    src = data.train
    n = min(images or src.dataset_size, src.dataset_size)
    imgs, labels = src.images[:n].to(dev), src.labels[:n].to(dev)
    mean = src.mean.flatten().tolist()
    std = src.std.flatten().tolist()
    loader = TensorLoader(imgs, labels, batch_size, shuffle=True, augment=True,
                          image_size=src.image_size, mean=mean, std=std, flip=src.flip,
                          pad=src.pad, seed=0)
    fit_data = dataclasses.replace(data, train=loader, test=[], val=None)
    recipe = TrainConfig(epochs=1, batch_size=batch_size, optimizer="sgd", lr=lr,
                         momentum=0.9, weight_decay=5e-4, schedule="constant",
                         amp=precision == "bf16", channels_last=channels_last, compile=compile,
                         progress=False)
    nets = {k: copy.deepcopy(model).to(dev) for k in ("fit", "bare", "codebook")}
    cb_loader = _codebook_loader(imgs.cpu(), labels.cpu(), batch_size, workers, mean, std,
                                 src.pad, src.flip, src.image_size)
    bare_opt = torch.optim.SGD(nets["bare"].parameters(), lr=lr, momentum=0.9,
                               weight_decay=5e-4)
    cb_opt = torch.optim.SGD(nets["codebook"].parameters(), lr=lr, momentum=0.9,
                             weight_decay=5e-4)
    if channels_last:
        for k in ("bare", "codebook"):
            nets[k].to(memory_format=torch.channels_last)
    bare_net = torch.compile(nets["bare"]) if compile else nets["bare"]
    cb_net = torch.compile(nets["codebook"]) if compile else nets["codebook"]
    epoch = {"fit": 0}

    def run_fit():
        from reprolib.core.train import fit

        loader.set_epoch(epoch["fit"])
        epoch["fit"] += 1
        fit(nets["fit"], fit_data, recipe, device=dev)

    def run_bare():
        bare_net.train()
        for x, y in loader:
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, precision):
                out = bare_net(x)
            loss = F.cross_entropy(out.float(), y)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()
        sync(dev)

    def run_codebook():
        cb_net.train()
        train_loss = correct = total = 0
        for x, y in cb_loader:
            x, y = x.to(dev), y.to(dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            cb_opt.zero_grad()
            with autocast(dev, precision):
                out = cb_net(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            cb_opt.step()
            train_loss += loss.item()
            _, predicted = out.max(1)
            total += y.size(0)
            correct += predicted.eq(y).sum().item()
        sync(dev)

    res = interleaved({"fit": run_fit, "bare": run_bare, "codebook": run_codebook}, dev,
                      warmup=1, repeats=repeats)
    ips = {k: n / (r["ms"] / 1e3) for k, r in res.items()}
    return {"images": n, "batch_size": batch_size, "repeats": repeats, "workers": workers,
            "precision": precision, "channels_last": channels_last, "compile": compile,
            **{f"{k}_images_per_s": v for k, v in ips.items()},
            **{f"{k}_ms": r["ms"] for k, r in res.items()},
            **{f"{k}_iqr_ms": r["ms_iqr"] for k, r in res.items()},
            "fit_vs_bare": ips["fit"] / ips["bare"],
            "fit_vs_codebook": ips["fit"] / ips["codebook"], **environment(dev)}


class _PILDataset(torch.utils.data.Dataset):
    """uint8 NCHW images as PIL images through torchvision transforms (the code books' way)."""

    def __init__(self, images, labels, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _codebook_loader(images, labels, batch_size, workers, mean, std, pad, flip, size):
    from reprolib.core import _compat  # noqa: F401 - torchvision importable without its C ops
    import torchvision.transforms as T

    tf = [T.RandomCrop(images.shape[-1], padding=pad)] if pad else []
    tf += [T.RandomHorizontalFlip()] if flip else []
    if size != images.shape[-1]:
        tf.append(T.Resize(size))
    tf += [T.ToTensor(), T.Normalize(mean, std)]
    return torch.utils.data.DataLoader(_PILDataset(images, labels, T.Compose(tf)),
                                       batch_size=batch_size, shuffle=True,
                                       num_workers=workers)

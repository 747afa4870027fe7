"""COCO instance segmentation data: loading, augmentation, evaluation, and a small generated
data set in COCO's on-disk layout.

Two data sets (``reprolib.data.get_data`` names):

| name | what | where |
| --- | --- | --- |
| ``coco`` | COCO 2017 instances (118k train / 5k val images, 80 classes) | ``data_root`` (default ``data/coco``) holding ``train2017/``, ``val2017/``, ``annotations/instances_{train,val}2017.json`` |
| ``coco_shapes`` | rendered circles, squares and triangles (3 classes), 480 train / 96 val images of 80-112 px, in the same layout (JPEG images + ``instances_*.json`` with polygon masks) | generated once by :func:`make_shapes` into ``data/coco_shapes`` (or ``data_root``) |

Reading: ``torchvision.datasets.CocoDetection``; each image becomes a uint8 (3, H, W) tensor
and a torchvision detection target: ``boxes`` (x1, y1, x2, y2, from COCO's x, y, w, h),
``labels`` (1..K, COCO category ids in sorted order, 0 = background), ``masks`` (N, H, W)
uint8 decoded from the polygons or RLE by pycocotools (``COCO.annToMask``), ``image_id``.
Crowd annotations and boxes under one pixel are left out of training targets (the baseline
ignores them); training skips images without annotations (mmdetection's
``filter_empty_gt``).  Training batches are flipped horizontally with probability 0.5 per
image (deterministic per seed and epoch); the multi-scale resize of Swin's recipe (short
side 480..800, long <= 1333) is done by the detector's own transform
(``reprolib.models.detection``, ``min_sizes`` / ``max_size``), on the device.

Evaluation: :func:`evaluate_coco` runs a detector over the val loader and scores its boxes
and masks with pycocotools' ``COCOeval`` (``bbox`` and ``segm``): AP (IoU 0.50:0.95), AP50,
AP75, in percent, as COCO and the papers report them.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

from reprolib import paths
from reprolib.errors import ReprolibError

COCO_SPLITS = ("train2017", "val2017")
SHAPES = ("circle", "square", "triangle")
#: The generated set: images per split and image side range (pixels).
SHAPES_TRAIN, SHAPES_VAL, SHAPES_SIZE = 480, 96, (80, 112)
AP_KEYS = ("AP", "AP50", "AP75")


# --------------------------------------------------------------------------- generated data


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[float]:
    if kind == "circle":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    elif kind == "square":
        t = angle + np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
    else:
        t = angle + np.array([0.0, 2 / 3, 4 / 3]) * np.pi
    pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    return [round(float(v), 2) for v in pts.reshape(-1)]


def _render(rng: np.random.Generator, h: int, w: int, first_ann: int, image_id: int):
    """One image (H, W, 3 uint8) with 1-4 non-overlapping shapes and their annotations."""
    from pycocotools import mask as mask_utils

    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(40, 215, 3)
    grad = rng.uniform(-60, 60, (2, 3))
    img = base + yy[..., None] * grad[0] + xx[..., None] * grad[1] + rng.normal(0, 8, (h, w, 3))
    occupied = np.zeros((h, w), bool)
    anns = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(20):
            kind = int(rng.integers(len(SHAPES)))
            r = rng.uniform(7, 20)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            poly = _polygon(SHAPES[kind], cx, cy, r, rng.uniform(0, 2 * np.pi))
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
            m = mask_utils.decode(rle).astype(bool)
            if m.sum() < 20 or (m & occupied).any():
                continue
            occupied |= m
            colour = rng.uniform(0, 255, 3)
            while np.abs(colour - img[m].mean(0)).max() < 60:   # visible against the ground
                colour = rng.uniform(0, 255, 3)
            img[m] = colour + rng.normal(0, 6, (int(m.sum()), 3))
            x, y = poly[0::2], poly[1::2]
            x0, y0 = max(0.0, min(x)), max(0.0, min(y))
            anns.append({"id": first_ann + len(anns), "image_id": image_id,
                         "category_id": kind + 1, "segmentation": [poly],
                         "area": float(mask_utils.area(rle)), "iscrowd": 0,
                         "bbox": [round(x0, 2), round(y0, 2), round(min(w, max(x)) - x0, 2),
                                  round(min(h, max(y)) - y0, 2)]})
            break
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), anns


def make_shapes(root: str | os.PathLike, n_train: int = SHAPES_TRAIN, n_val: int = SHAPES_VAL,
                size: tuple[int, int] = SHAPES_SIZE, seed: int = 0) -> Path:
    """Write the ``coco_shapes`` data set under ``root`` in COCO's layout and return ``root``.

    ``root/train2017/*.jpg``, ``root/val2017/*.jpg`` and
    ``root/annotations/instances_{train,val}2017.json`` (COCO's fields: ``images``,
    ``annotations`` with polygon ``segmentation``, ``bbox`` x, y, w, h, ``area``, ``iscrowd``,
    ``categories``, ``info``, ``licenses``).  Each image is ``size[0]..size[1]`` px on each
    side (any aspect ratio), a noisy colour gradient with 1-4 non-overlapping circles,
    squares and triangles (radius 7-20 px, random colour and rotation) drawn exactly where
    their polygons rasterise.  The same arguments give the same files; the folder is written
    beside ``root`` and renamed into place, so a killed run leaves nothing half-written.
    """
    from PIL import Image

    root = Path(root)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        for split, n, off in (("train2017", n_train, 0), ("val2017", n_val, 1)):
            rng = np.random.default_rng([seed, off])
            (tmp / split).mkdir(parents=True)
            images, anns = [], []
            for i in range(n):
                h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
                img, a = _render(rng, h, w, len(anns) + 1, i + 1)
                name = f"{i + 1:012d}.jpg"
                Image.fromarray(img).save(tmp / split / name, quality=95)
                images.append({"id": i + 1, "file_name": name, "height": h, "width": w,
                               "license": 1})
                anns += a
            doc = {"info": {"description": "reprolib coco_shapes: rendered circles, squares, "
                                           "triangles", "version": "1.0", "year": 2026},
                   "licenses": [{"id": 1, "name": "generated", "url": ""}],
                   "images": images, "annotations": anns,
                   "categories": [{"id": k + 1, "name": s, "supercategory": "shape"}
                                  for k, s in enumerate(SHAPES)]}
            (tmp / "annotations").mkdir(exist_ok=True)
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, root)
        except OSError:                       # another process made it first: keep theirs
            if not (root / "annotations").is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def coco_root(name: str, root=None) -> Path:
    """The folder of data set ``name`` (``coco`` or ``coco_shapes``), checked for COCO's
    layout; ``coco_shapes`` is generated there on first use."""
    if name == "coco_shapes":
        base = paths.resolve(root) if root else paths.data_root() / "coco_shapes"
        if not (base / "annotations" / "instances_val2017.json").exists():
            make_shapes(base)
    else:
        base = paths.resolve(root) if root else paths.data_root() / "coco"
    need = [base / s for s in COCO_SPLITS] + \
        [base / "annotations" / f"instances_{s}.json" for s in COCO_SPLITS]
    missing = [paths.rel(p) for p in need if not p.exists()]
    if missing:
        raise ReprolibError(f"data set {name}: {', '.join(missing)} missing; data_root must hold "
                            "COCO's layout: train2017/, val2017/ and annotations/"
                            "instances_train2017.json, instances_val2017.json")
    return base


# --------------------------------------------------------------------------- reading


class CocoInstances(torch.utils.data.Dataset):
    """One COCO split through ``torchvision.datasets.CocoDetection``: ``(image uint8 (3, H, W),
    target)`` with the torchvision target of the module docstring.  ``train`` drops crowd
    and sub-pixel boxes and the images left without any annotation."""

    def __init__(self, images: str | os.PathLike, ann_file: str | os.PathLike,
                 train: bool = False):
        import torchvision

        with contextlib.redirect_stdout(_io.StringIO()):     # pycocotools prints timings
            self.ds = torchvision.datasets.CocoDetection(str(images), str(ann_file))
        self.coco = self.ds.coco
        cats = sorted(self.coco.getCatIds())
        self.cat_ids = cats                                   # label k -> cats[k - 1]
        self.label_of = {c: i + 1 for i, c in enumerate(cats)}
        self.classes = [self.coco.cats[c]["name"] for c in cats]
        self.train = train
        self.index = list(range(len(self.ds)))
        if train:
            self.index = [i for i, img in enumerate(self.ds.ids)
                          if any(self._keep(a) for a in
                                 self.coco.imgToAnns.get(img, []))]

    @staticmethod
    def _keep(a: dict) -> bool:
        return not a.get("iscrowd", 0) and a["bbox"][2] >= 1 and a["bbox"][3] >= 1

    def __len__(self) -> int:
        return len(self.index)

    def image_id(self, i: int) -> int:
        return int(self.ds.ids[self.index[i]])

    def __getitem__(self, i: int):
        from torchvision.transforms.functional import pil_to_tensor

        img, anns = self.ds[self.index[i]]
        img = pil_to_tensor(img.convert("RGB"))
        h, w = img.shape[-2:]
        anns = [a for a in anns if self._keep(a)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else \
            np.zeros((0, h, w), np.uint8)
        target = {"boxes": boxes,
                  "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns],
                                         dtype=torch.int64),
                  "masks": torch.from_numpy(masks.astype(np.uint8)),
                  "image_id": torch.tensor(self.image_id(i))}
        return img, target


def _collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def hflip(img: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Flip an image (C, H, W) and its target (boxes, masks) left to right."""
    w = img.shape[-1]
    t = dict(target)
    b = t["boxes"].clone()
    b[:, [0, 2]] = w - t["boxes"][:, [2, 0]]
    t["boxes"] = b
    if "masks" in t:
        t["masks"] = t["masks"].flip(-1)
    return img.flip(-1), t


class DetectionLoader:
    """Batches of a :class:`CocoInstances` on ``device``: ``(list of float images in [0, 1],
    list of targets)``; shuffled and flipped when ``train`` (both deterministic given the
    seed and the epoch); each rank reads its shard under DDP."""

    def __init__(self, dataset: CocoInstances, batch_size: int, *, train: bool, device,
                 seed: int = 0, workers: int = 0, rank: int = 0, world_size: int = 1):
        from torch.utils.data import DataLoader, DistributedSampler

        self.dataset, self.train, self.device, self.seed = dataset, train, device, seed
        self.sampler = DistributedSampler(dataset, world_size, rank, shuffle=train, seed=seed,
                                          drop_last=False)
        self.loader = DataLoader(dataset, batch_size, sampler=self.sampler, num_workers=workers,
                                 collate_fn=_collate,
                                 pin_memory=torch.device(device).type == "cuda")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    @property
    def dataset_size(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7_919)
        for imgs, targets in self.loader:
            if self.train:
                flip = (torch.rand(len(imgs), generator=g) < 0.5).tolist()
                pairs = [hflip(i, t) if f else (i, t) for i, t, f in zip(imgs, targets, flip)]
                imgs, targets = [p[0] for p in pairs], [p[1] for p in pairs]
            dev = self.device
            yield ([i.to(dev, non_blocking=True).float().div_(255) for i in imgs],
                   [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in targets])


def coco_data(name: str, batch_size: int, eval_batch_size: int, root=None, device="cpu",
              augment: bool = True, seed: int = 0, workers: int = 4, rank: int = 0,
              world_size: int = 1, image_size: int = 0):
    """``reprolib.data.Data`` for ``coco`` / ``coco_shapes``: train loader (train2017,
    shuffled, flipped when ``augment``) and test loader (val2017); ``num_classes`` counts the
    background.  The generated set is read in-process (``workers`` ignored)."""
    from reprolib.data import Data

    base = coco_root(name, root)
    workers = 0 if name == "coco_shapes" else workers
    tr = CocoInstances(base / "train2017", base / "annotations" / "instances_train2017.json",
                       train=True)
    te = CocoInstances(base / "val2017", base / "annotations" / "instances_val2017.json")
    mk = dict(device=device, seed=seed, workers=workers, rank=rank, world_size=world_size)
    return Data(name, DetectionLoader(tr, batch_size, train=augment, **mk),
                DetectionLoader(te, eval_batch_size, train=False, **mk),
                len(tr.classes) + 1, list(tr.classes), image_size)


def limit_data(data, n_train: int = 0, n_val: int = 0):
    """``data`` (from :func:`coco_data`) restricted to its first ``n_train`` training and
    ``n_val`` validation images (0 = all), with the same loader settings."""
    import copy
    from dataclasses import replace

    def cut(loader: DetectionLoader, n: int) -> DetectionLoader:
        if not n or n >= len(loader.dataset):
            return loader
        ds = copy.copy(loader.dataset)
        ds.index = ds.index[:n]
        s = loader.sampler
        return DetectionLoader(ds, loader.loader.batch_size, train=loader.train,
                               device=loader.device, seed=loader.seed,
                               workers=loader.loader.num_workers, rank=s.rank,
                               world_size=s.num_replicas)

    return replace(data, train=cut(data.train, n_train), test=cut(data.test, n_val))


# --------------------------------------------------------------------------- evaluation


def _results(out: dict, image_id: int, cat_ids: list[int]) -> list[dict]:
    """One image's detections as COCO results (``bbox`` x, y, w, h; ``segmentation`` RLE of
    the mask thresholded at 0.5)."""
    from pycocotools import mask as mask_utils

    boxes = out["boxes"].float().cpu()
    boxes[:, 2:] -= boxes[:, :2]
    scores, labels = out["scores"].float().cpu().tolist(), out["labels"].cpu().tolist()
    rles = []
    if "masks" in out and len(boxes):
        m = (out["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0)))
    res = []
    for k, (b, s, lab) in enumerate(zip(boxes.tolist(), scores, labels)):
        r = {"image_id": image_id, "category_id": cat_ids[lab - 1],
             "bbox": [round(v, 2) for v in b], "score": round(s, 5)}
        if rles:
            r["segmentation"] = {"size": [int(v) for v in rles[k]["size"]],
                                 "counts": rles[k]["counts"].decode("ascii")}
        res.append(r)
    return res


def coco_ap(coco_gt, results: list[dict], image_ids: list[int], iou_type: str) -> dict:
    """COCOeval's AP, AP50, AP75 (percent) of ``results`` on ``image_ids``; 0 without results."""
    from pycocotools.cocoeval import COCOeval

    res = [r for r in results if iou_type == "bbox" or "segmentation" in r]
    if not res:
        return {k: 0.0 for k in AP_KEYS}
    with contextlib.redirect_stdout(_io.StringIO()):
        dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, dt, iou_type)
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: round(100.0 * max(float(v), 0.0), 3) for k, v in zip(AP_KEYS, ev.stats[:3])}


@torch.no_grad()
def evaluate_coco(model: torch.nn.Module, loader: DetectionLoader, device=None,
                  amp: bool = True) -> dict:
    """Box and mask AP of a detector on a :class:`DetectionLoader` (COCOeval ``bbox`` and
    ``segm``): ``bbox_AP``, ``bbox_AP50``, ``bbox_AP75``, ``segm_AP``, ... in percent, plus
    ``images`` and ``detections`` counted.  Under DDP every rank scores its shard and the
    results are gathered before COCOeval (every rank returns the same numbers)."""
    import torch.distributed as dist

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    use_amp = amp and device.type == "cuda"
    per_image: dict[int, list] = {}
    cat_ids = loader.dataset.cat_ids
    for imgs, targets in loader:
        with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
            outs = model(imgs)
        for o, t in zip(outs, targets):
            iid = int(t["image_id"])
            per_image[iid] = _results(o, iid, cat_ids)
    model.train(was)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, per_image)
        per_image = {}
        for g in gathered:               # the sampler pads shards by repeating images: once each
            for iid, res in g.items():
                per_image.setdefault(iid, res)
    ids = sorted(per_image)
    results = [r for iid in ids for r in per_image[iid]]
    out = {}
    for kind in ("bbox", "segm"):
        out.update({f"{kind}_{k}": v
                    for k, v in coco_ap(loader.dataset.coco, results, ids, kind).items()})
    out["images"], out["detections"] = len(ids), len(results)
    return out

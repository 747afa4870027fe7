"""COCO data (reprolib.coco): the generated data set in COCO's layout, reading polygons and
RLE, flips, the data-set hook in reprolib.data and COCOeval scoring."""

import json

import numpy as np
import pytest
import torch

import reprolib  # noqa: F401,I001
from reprolib.data import coco
from reprolib.data import DATASETS, check_dataset, get_data
from reprolib.errors import ReprolibError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return coco.make_shapes(tmp_path_factory.mktemp("c") / "shapes", n_train=12, n_val=6)


def test_generated_set_has_cocos_layout(root):
    for split in coco.COCO_SPLITS:
        doc = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        assert {"info", "licenses", "images", "annotations", "categories"} <= set(doc)
        assert [c["name"] for c in doc["categories"]] == list(coco.SHAPES)
        files = sorted(p.name for p in (root / split).glob("*.jpg"))
        assert files == sorted(i["file_name"] for i in doc["images"])
        for a in doc["annotations"]:
            assert a["iscrowd"] == 0 and len(a["segmentation"][0]) >= 6 and a["area"] > 0
    assert coco.coco_root("coco_shapes", root) == root


def test_same_arguments_same_files(root, tmp_path):
    again = coco.make_shapes(tmp_path / "again", n_train=12, n_val=6)
    for p in ("annotations/instances_val2017.json", "val2017/000000000003.jpg"):
        assert (again / p).read_bytes() == (root / p).read_bytes()


def test_targets_match_the_rendered_shapes(root):
    ds = coco.CocoInstances(root / "val2017", root / "annotations" / "instances_val2017.json")
    assert ds.classes == list(coco.SHAPES) and len(ds) == 6
    img, t = ds[0]
    h, w = img.shape[1:]
    assert img.dtype == torch.uint8 and t["masks"].shape == (len(t["boxes"]), h, w)
    assert set(t["labels"].tolist()) <= {1, 2, 3}
    for b, m in zip(t["boxes"], t["masks"]):
        ys, xs = torch.nonzero(m, as_tuple=True)
        # the polygon's box holds its rasterised mask (to the pixel)
        assert xs.min() >= b[0] - 1 and xs.max() <= b[2] and ys.min() >= b[1] - 1 \
            and ys.max() <= b[3]
        # the shape was painted where its mask is: its colour differs from the ground
        # around it inside its box
        x0, y0, x1, y1 = (int(v) for v in b.round())
        box = torch.zeros_like(m, dtype=torch.bool)
        box[y0:y1, x0:x1] = True
        around = box & ~m.bool()
        if around.sum() > 10:
            diff = img[:, m.bool()].float().mean(1) - img[:, around].float().mean(1)
            assert diff.abs().max() > 20


def test_rle_and_crowd_annotations(tmp_path, root):
    from pycocotools import mask as mask_utils

    doc = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    img = doc["images"][0]
    h, w = img["height"], img["width"]
    m = np.zeros((h, w), np.uint8, order="F")
    m[5:15, 10:30] = 1
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    n = max(a["id"] for a in doc["annotations"])
    doc["annotations"] += [
        {"id": n + 1, "image_id": img["id"], "category_id": 2, "segmentation": rle,
         "area": 200.0, "bbox": [10, 5, 20, 10], "iscrowd": 0},
        {"id": n + 2, "image_id": img["id"], "category_id": 1, "segmentation": rle,
         "area": 200.0, "bbox": [10, 5, 20, 10], "iscrowd": 1}]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(doc))
    ds = coco.CocoInstances(root / "val2017", ann, train=True)
    i = [k for k in range(len(ds)) if ds.image_id(k) == img["id"]][0]
    _, t = ds[i]
    assert torch.equal(t["masks"][-1], torch.from_numpy(m))      # the RLE mask, decoded
    assert t["boxes"][-1].tolist() == [10, 5, 30, 15] and t["labels"][-1] == 2
    assert len(t["boxes"]) == sum(a["image_id"] == img["id"] and not a["iscrowd"]
                                  for a in doc["annotations"])   # the crowd one is left out


def test_flip_moves_boxes_with_masks():
    img = torch.zeros(3, 4, 10, dtype=torch.uint8)
    masks = torch.zeros(1, 4, 10, dtype=torch.uint8)
    masks[0, 1:3, 1:4] = 1
    t = {"boxes": torch.tensor([[1., 1., 4., 3.]]), "masks": masks, "labels": torch.tensor([1])}
    _, f = coco.hflip(img, t)
    assert f["boxes"].tolist() == [[6., 1., 9., 3.]]
    ys, xs = torch.nonzero(f["masks"][0], as_tuple=True)
    assert xs.min() == 6 and xs.max() == 8
    assert t["boxes"].tolist() == [[1., 1., 4., 3.]]              # the input is left alone


def test_data_hook_and_loaders(root):
    from reprolib.configs.sidt_detection import DETECTION_DATASETS
    from reprolib.data import DETECTION_DATASETS as names

    assert DETECTION_DATASETS == names and set(names) <= set(DATASETS)
    check_dataset("coco_shapes")
    d = get_data("coco_shapes", 0, 4, root=str(root), seed=3)
    assert d.num_classes == 4 and d.classes == list(coco.SHAPES)
    assert d.train_size == 12 and d.test_size == 6 and len(d.train) == 3
    d.train.set_epoch(1)
    a = [t["image_id"].item() for _, ts in d.train for t in ts]
    b = [t["image_id"].item() for _, ts in d.train for t in ts]
    assert a == b and sorted(a) == sorted(d.train.dataset.image_id(i) for i in range(12))
    imgs, _ = next(iter(d.test))
    assert imgs[0].dtype == torch.float32 and 0 <= imgs[0].min() and imgs[0].max() <= 1
    small = coco.limit_data(d, 5, 2)
    assert small.train_size == 5 and small.test_size == 2 and d.train_size == 12


def test_missing_coco_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ReprolibError, match="data set coco: .*train2017.*missing"):
        coco.coco_root("coco", tmp_path)


class _Oracle(torch.nn.Module):
    """Returns the ground truth of each image as its detections (or nothing)."""

    def __init__(self, loader, empty=False):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.it, self.empty = None, empty
        self.truth = {}
        for _, ts in loader:
            for t in ts:
                self.truth[len(self.truth)] = t
        self.k = 0

    def forward(self, imgs):
        out = []
        for _ in imgs:
            t = self.truth[self.k % len(self.truth)]
            self.k += 1
            n = 0 if self.empty else len(t["boxes"])
            out.append({"boxes": t["boxes"][:n], "labels": t["labels"][:n],
                        "scores": torch.ones(n), "masks": t["masks"][:n, None].float()})
        return out


def test_cocoeval_scores_the_ground_truth_100_and_nothing_0(root):
    d = get_data("coco_shapes", 0, 2, root=str(root))
    res = coco.evaluate_coco(_Oracle(d.test), d.test, "cpu")
    assert res["images"] == 6 and res["detections"] > 0
    for k in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert res[k] == pytest.approx(100.0)
    none = coco.evaluate_coco(_Oracle(d.test, empty=True), d.test, "cpu")
    assert none["bbox_AP"] == 0 and none["segm_AP50"] == 0 and none["detections"] == 0

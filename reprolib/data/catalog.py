"""What reprolib knows about each data set, without reading one: the names, classes and split
sizes, where torchvision leaves them on disk, and the one label a caption gives a data set.
Imports neither numpy nor torch: configs, ``plan`` and the command line read it at once."""

from __future__ import annotations

from pathlib import Path

from reprolib import paths
from reprolib.errors import ReprolibError

DATASETS = ("digits", "npz:PATH", "cifar10_subset", "cifar10", "cifar100", "flowers102",
            "imagenet", "coco", "coco_shapes")
#: Detection data sets (images + boxes + masks, ``reprolib.coco``).
DETECTION_DATASETS = ("coco", "coco_shapes")
#: Images per CIFAR-10 batch file kept in ``cifar10_subset`` (five train batches + test batch).
SUBSET_PER_BATCH = 1017
#: The real CIFAR-10 images (6,102 of them): see ``cifar10_subset_file``.  Tests that need
#: them skip when no copy is configured or beside the project.
CIFAR10_SUBSET = "cifar10_subset"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: What torchvision's download leaves under the data root, per data set (files or folders).
_ON_DISK = {
    "cifar10": ["cifar-10-batches-py/" + f for f in
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta")],
    "cifar100": ["cifar-100-python/" + f for f in ("train", "test", "meta")],
    "flowers102": ["flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"],
}
_DOWNLOAD_MB = {"cifar10": 163, "cifar100": 161, "flowers102": 330}

#: Classes, training images (the split ``fit`` trains on) and test images of each named data
#: set (Flowers-102: ``train`` is train + val; ``train_only`` / ``val`` the official splits).
DATASET_INFO = {
    "digits": {"classes": 10, "train": 1437, "test": 360},
    "cifar10_subset": {"classes": 10, "train": 5085, "test": 1017},
    "cifar10": {"classes": 10, "train": 50_000, "test": 10_000},
    "cifar100": {"classes": 100, "train": 50_000, "test": 10_000},
    "flowers102": {"classes": 102, "train": 2040, "train_only": 1020, "val": 1020,
                   "test": 6149},
    "imagenet": {"classes": 1000, "train": 1_281_167, "test": 50_000},
}


def num_classes(dataset: str, default: int = 10) -> int:
    """The number of classes of a named data set (:data:`DATASET_INFO`), ``default`` for one
    reprolib cannot know without reading it (an ``npz:PATH``); for counting models."""
    return DATASET_INFO.get(dataset, {}).get("classes", default)


def dataset_label(dataset: str) -> str:
    """How a caption names a data set: its name, or the file name of an ``npz:PATH``."""
    return Path(dataset[4:]).name if dataset.startswith("npz:") else dataset


def check_dataset(dataset: str) -> None:
    """Fail early (ReprolibError) on an unknown data set name or a missing .npz file; reads
    nothing (see :func:`prepare_data` for the full check)."""
    if not isinstance(dataset, str):
        raise ReprolibError(f"dataset={dataset!r} must be a data set name; valid data sets: "
                            f"{', '.join(DATASETS)}")
    if dataset.startswith("npz:"):
        p = paths.resolve(dataset[4:])
        if not p.is_file():
            raise ReprolibError(f"data set file {dataset[4:]} does not exist (resolved to {p}); "
                                "pass an existing .npz (e.g. the CIFAR-10 subset, see "
                                "data/README.md)")
    elif dataset not in DATASETS or dataset == "npz:PATH":
        raise ReprolibError(f"unknown data set {dataset!r}; valid data sets: {', '.join(DATASETS)}")

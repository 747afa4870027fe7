"""Data sets by name, with the standard transforms of the papers.

``get_data(name, image_size, batch_size, ...)`` returns a :class:`Data` with train / test
loaders that yield ``(x, y)`` batches already on the device, normalised, NCHW float.

| name        | what                                                         | how it is read            |
| ----------- | ------------------------------------------------------------ | ------------------------- |
| digits      | scikit-learn's bundled 8x8 digits (1,797 real images, 10     | embedded, offline         |
|             | classes), upsampled to the image size, 3 channels; fixed     |                           |
|             | stratified split 1,437 train / 360 test (random_state=0)     |                           |
| npz:PATH    | any .npz with train_images, train_labels, test_images,       | numpy (e.g. the shared    |
|             | test_labels (uint8 NHWC or NCHW / HW), optional classes      | CIFAR-10 subset)          |
| cifar10_subset | 6,102 real CIFAR-10 images: the first 1,017 of each of the  | a copy beside the project |
|             | five training batches and of the test batch (5,085 / 1,017)  | or built once from the    |
|             |                                                              | CIFAR-10 download, cached |
|             |                                                              | in data/ (see below)      |
| cifar10     | CIFAR-10, 50k / 10k                                          | torchvision, download=True|
| cifar100    | CIFAR-100, 50k / 10k                                         | torchvision, download=True|
| flowers102  | Oxford Flowers-102, train+val / test                          | torchvision, download=True|
| imagenet    | ImageNet-1k as an ImageFolder: ROOT/train, ROOT/val           | a folder you point at     |
| coco        | COCO 2017 instances (detection): images, boxes, masks         | reprolib.coco, a folder   |
| coco_shapes | generated COCO-format shapes (detection), see reprolib.coco   | generated once into data/ |

Small sets (digits, npz, CIFAR) take the fast path: the whole set lives on the device as
uint8 and a :class:`TensorLoader` shuffles, augments (random crop with zero padding of
size/8 = 4 px at 32 px, horizontal flip), resizes (for 224 px models) and normalises each
batch there, with no DataLoader workers.  Folder sets (Flowers-102, ImageNet) use a
DataLoader with torchvision transforms: RandomResizedCrop + flip for training, resize +
center crop for evaluation.

Every loader is deterministic given ``seed`` and the epoch (``set_epoch``), which is what
makes resuming a killed run exact.  Under DDP each rank reads its own shard.

Data first: :func:`prepare_data` (what ``reprolib run`` / ``compute`` call before any stage)
checks that every data set a config needs is there and readable -- an ``.npz`` from its
``.npy`` headers first (it fits in memory: a small file may decompress to gigabytes), then
array by array (counts agree, pixels 0..255, labels integers in range) -- and fetches a
missing one only where that is allowed: into the project's ``data/`` (or ``REPROLIB_DATA``)
by default, into any other ``data_root`` only when a download was asked for (``--download``,
``REPROLIB_DOWNLOAD=1``).  A download that stalls gives up after
``REPROLIB_DOWNLOAD_TIMEOUT`` seconds (default 60) without an answer.  Importing this package
imports no torch.

The package: :mod:`~reprolib.data.catalog` (names and facts, no numpy), :mod:`~reprolib.data.sources`
(reading and checking each source), :mod:`~reprolib.data.loaders` (``get_data``, the loaders),
:mod:`~reprolib.data.augment` (timm's recipe augmentations) and :mod:`~reprolib.data.coco`
(detection data).  The names below are the public API.
"""

from reprolib.data.catalog import (CIFAR10_SUBSET, DATASET_INFO, DATASETS,  # noqa: F401
                                   DETECTION_DATASETS, IMAGENET_MEAN, IMAGENET_STD,
                                   SUBSET_PER_BATCH, check_dataset, dataset_label,
                                   num_classes)
from reprolib.data.loaders import Data, DeviceLoader, TensorLoader, get_data  # noqa: F401
from reprolib.data.sources import (ArrayDataset, available_memory,  # noqa: F401
                                   build_cifar10_subset, cifar10_subset_file, download_timeout,
                                   is_present, load_cifar, load_digits, load_npz, may_download,
                                   npz_byte_limit, prepare_data, root_dir)
from reprolib.errors import ReprolibError  # noqa: F401

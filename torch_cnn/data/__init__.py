"""CIFAR-10 from its python-batch files, held whole as tensors, batched and augmented on the device.

Three modules, bottom to top: ``files`` (where the data lives, its download),
``cifar10`` (reading the batches safely) and ``loader`` (batches and
augmentation as tensor ops on the device). Everything is importable from here.
"""

from torch_cnn.data.cifar10 import Cifar10, Split, load_cifar10
from torch_cnn.data.files import (
    CIFAR10_ARCHIVE,
    CIFAR10_DIRNAME,
    CIFAR10_MD5,
    CIFAR10_URL,
    IMAGE_SHAPE,
    META_FILE,
    NUM_CLASSES,
    PIXEL_SCALE,
    REQUIRED_FILES,
    ROW_SIZE,
    TEST_FILE,
    TRAIN_FILES,
    Cifar10Error,
    Cifar10FormatError,
    Cifar10NotFoundError,
    default_cache_dir,
    download_cifar10,
    extract_tarball,
    missing_files,
    resolve_data_dir,
)
from torch_cnn.data.loader import Augment, iterate_batches, num_batches, shift_crop, to_float

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_DIRNAME",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "IMAGE_SHAPE",
    "META_FILE",
    "NUM_CLASSES",
    "PIXEL_SCALE",
    "REQUIRED_FILES",
    "ROW_SIZE",
    "TEST_FILE",
    "TRAIN_FILES",
    "Augment",
    "Cifar10",
    "Cifar10Error",
    "Cifar10FormatError",
    "Cifar10NotFoundError",
    "Split",
    "default_cache_dir",
    "download_cifar10",
    "extract_tarball",
    "iterate_batches",
    "load_cifar10",
    "missing_files",
    "num_batches",
    "resolve_data_dir",
    "shift_crop",
    "to_float",
]

"""CIFAR-10 from its python-batch files, held whole as tensors, batched and augmented on the device.

Three modules, bottom to top: ``files`` (where the data lives, its download, the caps
on what a data directory may claim), ``cifar10`` (reading the batches safely, through
``torch_cnn._safe_pickle``) and ``loader`` (batches and augmentation as tensor ops on the
device). Everything is importable from here.
"""

from torch_cnn.data.cifar10 import Cifar10, Split, load_cifar10
from torch_cnn.data.files import (
    CIFAR10_ARCHIVE,
    CIFAR10_DIRNAME,
    CIFAR10_MD5,
    CIFAR10_URL,
    IMAGE_SHAPE,
    MAX_ARCHIVE_BYTES,
    MAX_ARCHIVE_MEMBERS,
    MAX_BATCH_BYTES,
    MAX_DATA_BYTES,
    MAX_META_BYTES,
    META_FILE,
    NUM_CLASSES,
    PIXEL_SCALE,
    REQUIRED_FILES,
    ROW_SIZE,
    TEST_FILE,
    TRAIN_FILES,
    Cifar10Error,
    Cifar10FileError,
    Cifar10FormatError,
    Cifar10NotFoundError,
    data_file_sizes,
    default_cache_dir,
    download_cifar10,
    extract_tarball,
    missing_files,
    open_data_file,
    resolve_data_dir,
)
from torch_cnn.data.loader import Augment, iterate_batches, num_batches, shift_crop, to_float

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_DIRNAME",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "IMAGE_SHAPE",
    "MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_MEMBERS",
    "MAX_BATCH_BYTES",
    "MAX_DATA_BYTES",
    "MAX_META_BYTES",
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
    "Cifar10FileError",
    "Cifar10FormatError",
    "Cifar10NotFoundError",
    "Split",
    "data_file_sizes",
    "default_cache_dir",
    "download_cifar10",
    "extract_tarball",
    "iterate_batches",
    "load_cifar10",
    "missing_files",
    "num_batches",
    "open_data_file",
    "resolve_data_dir",
    "shift_crop",
    "to_float",
]

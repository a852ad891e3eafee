"""NEU-DET / Pascal-VOC reading: images, boxes per class, dataset layouts and splits.

Coordinates: a :class:`Box` is in pixels of the image it annotates, 0-based and half-open
(``x0 <= x < x1``). VOC's 1-based inclusive ``xmin..xmax`` becomes ``x0 = xmin - 1, x1 = xmax``.
A pixel (row r, column c) is inside a box when its centre ``(c + 0.5, r + 0.5)`` is.

One module a job: :mod:`.core` (the data model and its error), :mod:`.voc` (hardened XML),
:mod:`.images` (decoding), :mod:`.splits` (deterministic splits), :mod:`.dataset` (layouts).
"""

from cam_core.data.core import (
    NEU_CLASSES,
    Box,
    DataError,
    Sample,
    rescale_boxes,
)
from cam_core.data.dataset import (
    LAYOUTS,
    Dataset,
    annotation_for,
    file_class,
    find_neu_det,
    load_dataset,
)
from cam_core.data.images import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_BYTES,
    read_image,
)
from cam_core.data.splits import (
    DEFAULT_FRACTIONS,
    SPLITS,
    assign_split,
    split_samples,
    stem_hash,
)
from cam_core.data.voc import (
    MAX_OBJECTS,
    MAX_XML_BYTES,
    Annotation,
    parse_voc,
)

__all__ = [
    "DEFAULT_FRACTIONS",
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "MAX_IMAGE_BYTES",
    "MAX_OBJECTS",
    "MAX_XML_BYTES",
    "NEU_CLASSES",
    "SPLITS",
    "Annotation",
    "Box",
    "DataError",
    "Dataset",
    "Sample",
    "annotation_for",
    "assign_split",
    "file_class",
    "find_neu_det",
    "load_dataset",
    "parse_voc",
    "read_image",
    "rescale_boxes",
    "split_samples",
    "stem_hash",
]

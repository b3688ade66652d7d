"""Synthetic ExpW-layout sample: drawn faces in cluttered scenes, deterministic from a seed.

The output has exactly the layout of the real ExpW download::

    <root>/label/label.lst        one line per face (format in :mod:`.generate`)
    <root>/image/origin/*.jpg     the pictures the boxes refer to
    <root>/sample.json            the spec and generator version (not part of ExpW)

As in the real file, boxes are square, several faces can share a picture, and a few boxes
run past the picture's border (coordinates below 0 or beyond the width/height), so that
clipping code is exercised. The face is ``img[top:bottom, left:right]``.

Faces are drawn with OpenCV (head, hair, ears, eyes, brows, nose, mouth) and the
expression shows in brows, eyes and mouth, with per-face intensity and identity noise so
that neighbouring classes (angry/disgust, fear/surprise, neutral/sad) overlap: a small CNN
learns it well above chance but not perfectly. Generation is deterministic: the same
:class:`SampleSpec` gives a byte-identical ``label.lst`` and identical JPEG files whatever
the number of worker threads.

Modules, in the order the data flows: :mod:`.plan` (spec, class counts, faces per picture,
names) with :mod:`.layout` (boxes and picture sizes); :mod:`.expression`, :mod:`.canvas` and
:mod:`.portrait` (one drawn person); :mod:`.scene` (a whole picture); :mod:`.generate`
(the files).
"""

from ferreport.datasets.sample.generate import GENERATOR_VERSION, SampleInfo, generate_sample
from ferreport.datasets.sample.layout import MAX_IMAGE, MAX_SIDE, MIN_IMAGE, MIN_SIDE
from ferreport.datasets.sample.plan import EXPW_CLASS_SHARES, MIN_PER_CLASS, SampleSpec, allocate_counts
from ferreport.datasets.sample.scene import background, draw_face

__all__ = [
    "EXPW_CLASS_SHARES",
    "GENERATOR_VERSION",
    "MAX_IMAGE",
    "MAX_SIDE",
    "MIN_IMAGE",
    "MIN_PER_CLASS",
    "MIN_SIDE",
    "SampleInfo",
    "SampleSpec",
    "allocate_counts",
    "background",
    "draw_face",
    "generate_sample",
]

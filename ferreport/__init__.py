"""ferreport: batch evaluation and reporting for facial-expression classifiers."""

import os as _os

__version__ = "0.1.0"

# Refuse image headers that claim enormous dimensions before OpenCV allocates them
# (OpenCV's own default allows 2**30 pixels, about 3 GB for a colour image).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))
# TensorFlow's C++ start-up chatter is not a warning a user can act on. Set here, once: every
# path into the package (``ferreport``, ``python -m ferreport``, ``import ferreport.x``, the
# benchmarks) runs this file before any module that imports TensorFlow, which happens only
# through :mod:`ferreport.backend`. A value the user set is kept (``setdefault``).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

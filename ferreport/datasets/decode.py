"""Image decoding: an image file's bytes to BGR uint8, and the JPEG sanity checks made before and after.

Only regular files within :data:`MAX_IMAGE_BYTES` are read (:mod:`ferreport.safe_io`). A JPEG
whose structure cannot hold a whole image is refused before decoding (:func:`jpeg_problem`),
one libjpeg decodes only in part after (its warnings are captured from file descriptor 2).
Each refusal is a reason string, never an exception.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from ferreport.safe_io import NotRegularFile, read_regular

__all__ = ["CANNOT_DECODE", "JPEG_BAD_HEADER", "JPEG_PARTIAL", "JPEG_TOO_MANY_PIXELS", "JPEG_TOO_SHORT",
           "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "TRUNCATED_JPEG", "JpegFrame", "decode_image", "decode_reduced",
           "jpeg_frame", "jpeg_problem"]

#: The largest image file read; a larger one is skipped as "file too large" before reading.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: The most pixels an image may declare (2**27, about 134 million: the limit ferreport also gives
#: OpenCV). A JPEG's header is checked before decoding, so a reduced (1/2 .. 1/8) decode cannot
#: turn a 60000x60000 header into a flat grey face.
MAX_IMAGE_PIXELS = 1 << 27

#: Decode skip reasons (besides "empty file", "file too large", "not a regular file", "cannot read (...)").
TRUNCATED_JPEG = "truncated JPEG"
JPEG_TOO_MANY_PIXELS = "image too large (header declares over 2**27 pixels)"
JPEG_TOO_SHORT = "corrupt JPEG (too few bytes for the size its header declares)"
JPEG_PARTIAL = "corrupt JPEG (libjpeg could decode only part of it)"
JPEG_BAD_HEADER = "corrupt JPEG (too many header segments)"
CANNOT_DECODE = "cannot decode"
#: libjpeg's DCT-domain downscaling: decode a JPEG at 1/f of its size, much faster.
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(path: str | os.PathLike[str]) -> tuple[np.ndarray | None, str]:
    """Decode an image file to BGR uint8 (EXIF orientation applied), or ``(None, reason)``.

    Reads the bytes first, of regular files only (works for any file name, refuses FIFOs,
    devices and huge files before opening them); refuses JPEGs whose structure cannot hold a
    whole image (:func:`jpeg_problem`) before decoding and those libjpeg decodes only in part
    after; OpenCV's own pixel limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, lowered by ferreport) refuses
    headers that claim enormous dimensions before allocating them.
    """
    img, why, _ = decode_reduced(path)
    return img, why


def decode_reduced(path: str | os.PathLike[str], reduce: int = 1) -> tuple[np.ndarray | None, str, int]:
    """:func:`decode_image`, with JPEGs decoded at ``1/reduce`` of their size when ``reduce`` is 2, 4 or 8.

    Returns ``(image, reason, factor)``; ``factor`` is the reduction applied (1 for other formats).
    Only regular files are opened (a FIFO would block, a device never ends), and only when
    their stat size is within :data:`MAX_IMAGE_BYTES`.
    """
    try:
        raw = read_regular(path, MAX_IMAGE_BYTES)
    except NotRegularFile as exc:
        return None, exc.reason, 1
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or type(exc).__name__})", 1
    if not raw:
        return None, "empty file", 1
    data = np.frombuffer(raw, dtype=np.uint8)
    is_jpeg = raw[:2] == b"\xff\xd8"
    if is_jpeg:
        problem = jpeg_problem(raw)
        if problem:
            return None, problem, 1
    factor = reduce if is_jpeg and reduce in _REDUCED_FLAGS else 1
    flags = _REDUCED_FLAGS[factor] if factor > 1 else cv2.IMREAD_COLOR
    try:
        if is_jpeg:
            img, partial = _imdecode_jpeg(data, flags)
            if partial:
                return None, JPEG_PARTIAL, 1
        else:
            img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        return None, CANNOT_DECODE, 1
    if img.dtype != np.uint8:  # IMREAD_COLOR already gives 8-bit; guard anyway
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
    return img, "", factor


def _has_jpeg_end(data: bytes) -> bool:
    """True when the JPEG's end-of-image marker (FF D9) is present near the end of the file."""
    return b"\xff\xd9" in data[-4096:]


# Start-of-frame markers (C0-CF but DHT C4, JPG C8, DAC CC); C9-CB and CD-CF are arithmetic-coded.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_MAX_MARKERS = 10_000


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's start-of-frame header declares."""

    marker: int          # 0xC0 baseline, 0xC2 progressive, ...
    width: int
    height: int
    h_max: int           # largest horizontal / vertical sampling factor (an MCU is 8*h_max x 8*v_max pixels)
    v_max: int
    offset: int          # where the frame header starts in the file

    @property
    def min_bytes(self) -> int:
        """Fewest bytes a Huffman-coded image of this size can take: one bit per MCU (a DC code
        is at least one bit), however flat the picture and however well its tables are tuned."""
        mcus = -(-self.width // (8 * self.h_max)) * -(-self.height // (8 * self.v_max))
        return mcus // 8


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The start-of-frame header of a JPEG (walking its marker segments), or None when there is none
    before the scan data.

    ValueError when more than ``_MAX_MARKERS`` segments come first (real files have a few dozen
    at most; an ICC profile is at most 255), so a hostile header costs milliseconds, not minutes.
    """
    n, i = len(data), 2
    for _ in range(_MAX_MARKERS):  # bounded: a file of a million empty segments raises
        if i + 4 > n or data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _SOF:
            seg = data[i + 4:i + 2 + length]
            if len(seg) < 6:
                return None
            comps = seg[5]
            factors = [seg[6 + 3 * k + 1] for k in range(comps) if 6 + 3 * k + 1 < len(seg)]
            h_max = max((f >> 4 for f in factors), default=1) or 1
            v_max = max((f & 15 for f in factors), default=1) or 1
            return JpegFrame(marker=marker, height=(seg[1] << 8) | seg[2], width=(seg[3] << 8) | seg[4],
                             h_max=h_max, v_max=v_max, offset=i)
        i += 2 + length
    raise ValueError(f"over {_MAX_MARKERS} marker segments before the frame header")


def jpeg_problem(data: bytes) -> str:
    """Why a JPEG's bytes cannot be a whole image, from its structure alone ("" when nothing is wrong).

    No end-of-image marker (cut off: libjpeg would grey-fill the rest); a header declaring
    more than :data:`MAX_IMAGE_PIXELS`; or fewer bytes than its declared size needs
    (:attr:`JpegFrame.min_bytes`: a progressive JPEG declaring 11000x11000 in 520 bytes).
    A header it cannot find is left to the decoder.
    """
    if not _has_jpeg_end(data):
        return TRUNCATED_JPEG
    try:
        frame = jpeg_frame(data)
    except ValueError:
        return JPEG_BAD_HEADER
    if frame is None or frame.width == 0 or frame.height == 0:  # no header / height set later (DNL)
        return ""
    if frame.width * frame.height > MAX_IMAGE_PIXELS:
        return JPEG_TOO_MANY_PIXELS
    if frame.marker not in _ARITHMETIC_SOF and len(data) - frame.offset < frame.min_bytes:
        return JPEG_TOO_SHORT
    return ""


# libjpeg reports a partial decode only as a warning on stderr ("Corrupt JPEG data: premature
# end of data segment") and fills the rest with grey; OpenCV neither raises nor returns it. So
# the decode runs with file descriptor 2 pointed at a per-process scratch file, which is then
# read: these warnings refuse the image, any other text is passed on to the real stderr.
# (Not "extraneous bytes before marker" or "Invalid SOS parameters": real files that decode whole.)
_PARTIAL_WARNINGS = ("premature end", "bad huffman code", "found marker")
_capture_lock = threading.Lock()
_capture: dict[str, int] = {}  # {"fd": scratch file, "pid": owning process}


def _capture_fd() -> int | None:
    if _capture.get("pid") != os.getpid():  # first use, or a forked child: never share the parent's
        try:
            fd = os.memfd_create("ferreport-libjpeg", getattr(os, "MFD_CLOEXEC", 0)) if hasattr(os, "memfd_create") \
                else _tempfile_fd()
        except OSError:
            return None
        _capture.update(fd=fd, pid=os.getpid())
    return _capture["fd"]


def _tempfile_fd() -> int:
    fd, name = tempfile.mkstemp(prefix="ferreport-libjpeg-")
    os.unlink(name)
    return fd


def _imdecode_jpeg(data: np.ndarray, flags: int) -> tuple[np.ndarray | None, bool]:
    """``cv2.imdecode`` of a JPEG, and whether libjpeg warned that it decoded only part of it."""
    with _capture_lock:
        fd = _capture_fd()
        try:
            saved = os.dup(2) if fd is not None else -1
        except OSError:
            saved = -1
        if saved < 0:  # no stderr to redirect: decode without the check
            return cv2.imdecode(data, flags), False
        try:
            os.dup2(fd, 2)
            try:
                img = cv2.imdecode(data, flags)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        written = os.lseek(fd, 0, os.SEEK_CUR)
        if not written:
            return img, False
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, min(written, 1 << 16))
        os.ftruncate(fd, 0)
    partial = False
    passed = []
    for line in text.decode("utf-8", "replace").splitlines(keepends=True):
        if any(w in line.lower() for w in _PARTIAL_WARNINGS):
            partial = True
        else:
            passed.append(line)
    if passed:
        with contextlib.suppress(OSError):
            os.write(2, "".join(passed).encode("utf-8", "replace"))
    return img, partial

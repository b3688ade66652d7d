"""Figures for the report: each function takes computed numbers and returns a Figure.

Drawing only (the numbers come from :mod:`ferreport.evaluation.metrics`). Figures are plain
:class:`matplotlib.figure.Figure` objects on the Agg/SVG canvases, never pyplot
state, so they are safe to build in a headless batch job and are garbage-collected
when dropped. :func:`figure_to_data_uri` encodes a figure for a self-contained
HTML page (SVG by default: small and crisp for line, bar and 7x7 heatmap charts).
"""

from __future__ import annotations

import base64
import io
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import cv2
import matplotlib.dates as mdates
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ferreport.constants import CLASS_NAMES  # noqa: E402
from ferreport.evaluation.metrics import CalibrationMetrics, ClassificationMetrics, Interval, ci_key  # noqa: E402

__all__ = [
    "STYLE",
    "calibration_counts",
    "confidence_figure",
    "class_distribution_figure",
    "confusion_matrix_figure",
    "figure_to_data_uri",
    "per_class_figure",
    "reliability_figure",
    "saliency_overlay_data_uri",
    "thumbnail_data_uri",
    "training_curves_figure",
    "trend_figure",
    "confusion_difference_figure",
    "delta_figure",
    "new_figure",
]

#: Colours shared by the figures and the report's CSS.
TRAIN_COLOR = "#3b6fb6"
VAL_COLOR = "#e07b39"
BEST_COLOR = "#2a9d5c"
PRF_COLORS = ("#3b6fb6", "#2a9d5c", "#c44e52")
SPLIT_COLORS = ("#3b6fb6", "#8fb3e0", "#e07b39", "#2a9d5c", "#8c6bb1", "#7f7f7f")
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"

#: Matplotlib settings every report figure is drawn under (``matplotlib.rc_context(STYLE)``).
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK,
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.fonttype": "path",
    "svg.hashsalt": "ferreport",
    "figure.dpi": 100,
}


def _class_matrix_axes(ax: Any, k: int, labels: Sequence[str]) -> None:
    """Axes of a k x k class matrix: true classes down, predicted across, no frame."""
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xticks(range(k), labels, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)


def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A Figure of the report's size conventions (inches; constrained layout, no pyplot state).

    Draw inside ``with matplotlib.rc_context(STYLE):`` so every figure shares one look.
    """
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


# --------------------------------------------------------------------------- encoding


def figure_to_data_uri(fig: Figure, fmt: str = "svg", dpi: int = 150) -> str:
    """Encode ``fig`` as a base64 ``data:`` URI (``svg`` or ``png``) and release it.

    SVG output is deterministic (no date, fixed id salt) and minified; the DOCTYPE
    (which names a network DTD) is dropped.
    """
    fmt = fmt.lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"unsupported figure format {fmt!r}; use 'svg' or 'png'")
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "ferreport", "svg.fonttype": "path"}):
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                     "Format": None, "Type": None})
        else:
            fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    _release(fig)
    data = buf.getvalue()
    if fmt == "svg":
        text = data.decode("utf-8")
        text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        text = re.sub(r"\s*\n\s*", " ", text).strip()
        data = text.encode("utf-8")
        mime = "image/svg+xml"
    else:
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _release(fig: Figure) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()


def _jpeg_uri(rgb: np.ndarray, quality: int, max_bytes: int | None) -> str:
    """JPEG data URI of an RGB image; quality lowered by steps of 10 (down to 30) until within ``max_bytes``."""

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    q = int(quality)
    while True:
        ok, enc = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), q])
        if not ok:  # pragma: no cover - OpenCV failure
            raise ValueError("could not encode thumbnail as JPEG")
        uri = "data:image/jpeg;base64," + base64.b64encode(enc.tobytes()).decode("ascii")
        if max_bytes is None or len(uri) <= max_bytes or q <= 30:
            return uri
        q -= 10


def saliency_overlay_data_uri(face_rgb_uint8: np.ndarray, heat_uint8: np.ndarray, size: int = 112,
                              quality: int = 70, max_bytes: int | None = None) -> str:
    """JPEG ``data:`` URI of a face with a Grad-CAM map over it (jet colours, opacity growing with the map).

    ``heat_uint8``: (h, w) 0-255 at the layer's resolution, stretched over the face
    (bilinear); where the map is 0 the face shows unchanged, where it is 255 the colour
    covers 60 % of it.
    """

    face = np.asarray(face_rgb_uint8)
    heat = np.asarray(heat_uint8)
    if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        raise ValueError(f"face must be (h, w, 3) uint8, got {face.shape} {face.dtype}")
    if heat.dtype != np.uint8 or heat.ndim != 2:
        raise ValueError(f"saliency map must be (h, w) uint8, got {heat.shape} {heat.dtype}")
    interp = cv2.INTER_CUBIC if size >= max(face.shape[:2]) else cv2.INTER_AREA
    base = cv2.resize(np.ascontiguousarray(face), (int(size), int(size)), interpolation=interp).astype(np.float32)
    h = cv2.resize(np.ascontiguousarray(heat), (int(size), int(size)), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(h, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = (h.astype(np.float32) / 255.0 * 0.6)[:, :, None]
    out = np.clip(base * (1.0 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    return _jpeg_uri(out, quality, max_bytes)


def thumbnail_data_uri(face_rgb_uint8: np.ndarray, size: int = 112, quality: int = 80,
                       max_bytes: int | None = None) -> str:
    """JPEG ``data:`` URI of an RGB face, upscaled (bicubic) to ``size`` x ``size`` (within ``max_bytes``)."""

    face = np.asarray(face_rgb_uint8)
    if face.dtype != np.uint8:
        raise ValueError(f"face must be uint8, got {face.dtype}")
    if face.ndim == 2:
        face = np.repeat(face[:, :, None], 3, axis=2)
    if face.ndim != 3 or face.shape[2] not in (3, 4):
        raise ValueError(f"face must be (h, w, 3) RGB, got shape {face.shape}")
    face = np.ascontiguousarray(face[:, :, :3])
    interp = cv2.INTER_CUBIC if size >= max(face.shape[:2]) else cv2.INTER_AREA
    resized = cv2.resize(face, (int(size), int(size)), interpolation=interp)
    return _jpeg_uri(resized, quality, max_bytes)


# --------------------------------------------------------------------------- figures


def training_curves_figure(history_df: Any, best_epoch: int | None = None) -> Figure:
    """Accuracy (and validation macro-F1) and loss per epoch, train vs validation, best epoch marked."""
    df = history_df
    epochs = np.asarray(df["epoch"] if "epoch" in df.columns else np.arange(1, len(df) + 1), dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8.6, 3.1)
        axes = fig.subplots(1, 2)
        for ax, metric, title in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
            drawn = False
            for col, label, color in ((metric, "train", TRAIN_COLOR), (f"val_{metric}", "validation", VAL_COLOR)):
                if col in df.columns:
                    y = np.asarray(df[col], dtype=float)
                    ax.plot(epochs, y, color=color, lw=1.8, marker="o" if len(y) <= 30 else None,
                            ms=3.5, label=label)
                    drawn = True
            if metric == "accuracy" and "val_macro_f1" in df.columns:
                y = np.asarray(df["val_macro_f1"], dtype=float)
                if np.isfinite(y).any():
                    ax.plot(epochs, y, color=VAL_COLOR, lw=1.4, ls=":", marker="s" if len(y) <= 30 else None,
                            ms=3, label="validation macro-F1")
                    drawn = True
            if best_epoch is not None:
                ax.axvline(best_epoch, color=BEST_COLOR, lw=1.2, ls="--", label=f"best epoch ({best_epoch})")
            ax.set_title(title, loc="left")
            ax.set_xlabel("epoch")
            ax.grid(True, axis="y")
            if len(epochs) and len(epochs) <= 12:
                ax.set_xticks(epochs)
            if not drawn:
                ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center",
                        transform=ax.transAxes, color=MUTED)
            if metric == "accuracy" and drawn:
                ax.set_title("Accuracy, validation macro-F1" if "val_macro_f1" in df.columns else title, loc="left")
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[1].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside upper right", ncols=len(handles))
    return fig


def confusion_matrix_figure(
    cm: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str] = CLASS_NAMES,
    normalize: bool = False,
) -> Figure:
    """Heatmap with annotated cells; rows true, columns predicted.

    ``normalize=True`` shows each row as shares of that true class (recall on the
    diagonal); empty rows stay blank.
    """
    m = np.asarray(cm, dtype=float)
    labels = list(labels)
    k = len(labels)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix must be {k}x{k}, got {m.shape}")
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        values = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        vmax = 1.0
    else:
        values = m
        vmax = max(float(m.max()), 1.0)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(4.6, 4.2)
        ax = fig.add_subplot()
        ax.pcolormesh(np.arange(k + 1) - 0.5, np.arange(k + 1) - 0.5, values,
                      cmap="Blues", vmin=0.0, vmax=vmax, edgecolors="white", linewidth=1.0)
        _class_matrix_axes(ax, k, labels)
        ax.set_title("Row-normalised (share of true class)" if normalize else "Counts", loc="left")
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                if normalize:
                    if m[i].sum() == 0:
                        continue
                    text = f"{v:.0%}" if v >= 0.005 or v == 0 else "<1%"
                else:
                    text = f"{int(m[i, j]):,}"
                dark = v / vmax > 0.55
                ax.text(j, i, text, ha="center", va="center", fontsize=8 if k <= 8 else 6,
                        color="white" if dark else INK, fontweight="bold" if i == j else "normal")
    return fig


def per_class_figure(
    metrics: ClassificationMetrics, ci: Mapping[str, Interval] | None = None
) -> Figure:
    """Grouped bars of precision, recall and F1 per class (bootstrap error bars if given)."""
    names = [c.name for c in metrics.per_class]
    x = np.arange(len(names))
    width = 0.26
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8.6, 3.0)
        ax = fig.add_subplot()
        for i, (metric, color) in enumerate(zip(("precision", "recall", "f1"), PRF_COLORS, strict=True)):
            vals = np.array([getattr(c, metric) for c in metrics.per_class])
            yerr = None
            if ci is not None:
                lo = np.array([ci[ci_key(metric, n)].low if ci_key(metric, n) in ci else v
                               for n, v in zip(names, vals, strict=True)])
                hi = np.array([ci[ci_key(metric, n)].high if ci_key(metric, n) in ci else v
                               for n, v in zip(names, vals, strict=True)])
                yerr = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            ax.bar(x + (i - 1) * width, vals, width * 0.92, color=color,
                   label="F1" if metric == "f1" else metric, yerr=yerr,
                   error_kw={"elinewidth": 0.8, "ecolor": INK, "capsize": 1.5})
        ax.axhline(metrics.macro_f1, color=MUTED, lw=1.0, ls=":", label=f"macro F1 {metrics.macro_f1:.3f}")
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.0)
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        fig.legend(loc="outside upper right", ncols=4)
    return fig


def calibration_counts(cal: CalibrationMetrics) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centres, accuracy, confidence, counts) of the reliability bins; NaN when empty."""
    centres = np.array([(b.lower + b.upper) / 2 for b in cal.bins])
    acc = np.array([np.nan if b.accuracy is None else b.accuracy for b in cal.bins])
    conf = np.array([np.nan if b.confidence is None else b.confidence for b in cal.bins])
    counts = np.array([b.count for b in cal.bins])
    return centres, acc, conf, counts


def reliability_figure(calibration: CalibrationMetrics) -> Figure:
    """Reliability diagram (accuracy vs confidence per bin) over a histogram of counts."""
    centres, acc, conf, counts = calibration_counts(calibration)
    width = 1.0 / max(calibration.n_bins, 1)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(5.2, 4.6)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        top.plot([0, 1], [0, 1], color=MUTED, lw=1, ls="--", label="perfect calibration")
        ok = ~np.isnan(acc)
        top.bar(centres[ok], acc[ok], width * 0.94, color=TRAIN_COLOR, alpha=0.85, label="accuracy")
        gap_lo = np.minimum(acc[ok], conf[ok])
        top.bar(centres[ok], np.abs(conf[ok] - acc[ok]), width * 0.94, bottom=gap_lo,
                fill=False, hatch="////", edgecolor="#c44e52", lw=0.8, label="gap to mean confidence")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"Reliability (ECE {calibration.ece:.3f}, MCE {calibration.mce:.3f})", loc="left")
        top.legend(loc="upper left")
        top.grid(True, axis="y")
        top.set_axisbelow(True)
        bottom.bar(centres, counts, width * 0.94, color="#9ca3af")
        bottom.set_ylabel("faces")
        bottom.set_xlabel("confidence (top-class probability)")
        bottom.grid(True, axis="y")
        bottom.set_axisbelow(True)
        bottom.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(3, integer=True))
    return fig


def class_distribution_figure(
    counts_by_split: Mapping[str, Mapping[str, float]],
    labels: Sequence[str] = CLASS_NAMES,
    title: str | None = None,
    *,
    shares: bool = False,
) -> Figure:
    """Grouped bars: faces per class for each split (e.g. train, train balanced, val, test).

    ``shares=True`` draws shares of faces (fractions, shown as percentages) instead of
    counts, e.g. predicted classes beside the training split's in a folder audit.
    """
    splits = [s for s, c in counts_by_split.items() if c]
    labels = list(labels)
    extra = sorted({k for s in splits for k in counts_by_split[s] if k not in labels})
    classes = labels + extra
    x = np.arange(len(classes))
    n = max(len(splits), 1)
    width = 0.8 / n
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8.6, 3.0)
        ax = fig.add_subplot()
        for i, split in enumerate(splits):
            values = counts_by_split[split]
            vals = [float(values.get(c, 0.0)) if shares else int(values.get(c, 0)) for c in classes]
            ax.bar(x + (i - (n - 1) / 2) * width, vals, width * 0.92,
                   color=SPLIT_COLORS[i % len(SPLIT_COLORS)], label=split)
        ax.set_xticks(x, classes)
        ax.set_ylabel("share of faces" if shares else "faces")
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0) if shares
                                     else matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        if title:
            ax.set_title(title, loc="left")
        if splits:
            fig.legend(loc="outside upper right", ncols=min(len(splits), 5))
        else:
            ax.text(0.5, 0.5, "no faces" if shares else "no counts", ha="center", va="center",
                    transform=ax.transAxes, color=MUTED)
    return fig


def confidence_figure(edges: Sequence[float], counts: Sequence[int]) -> Figure:
    """Histogram of the predicted class's probability (confidence), with chance level 1/7 marked."""
    edges = np.asarray(edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8.6, 2.6)
        ax = fig.add_subplot()
        if counts.size and counts.sum() > 0:
            ax.bar(edges[:-1], counts, np.diff(edges), align="edge", color=TRAIN_COLOR, edgecolor="white", lw=0.6)
        else:
            ax.text(0.5, 0.5, "no faces", ha="center", va="center", transform=ax.transAxes, color=MUTED)
        ax.axvline(1 / len(CLASS_NAMES), color=VAL_COLOR, lw=1.2, ls="--", label="chance (1/7)")
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("confidence (probability of the predicted class)")
        ax.set_ylabel("faces")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5, integer=True))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        fig.legend(loc="outside upper right")
    return fig


# --------------------------------------------------------------------------- scheduled jobs: history and comparison


def trend_figure(dates: Sequence[Any], series: Mapping[str, Sequence[float | None]]) -> Figure:
    """Metrics over time (one line per series, e.g. accuracy and macro-F1), for the run index.

    ``dates`` are datetimes (the runs' evaluation times); ``None`` values are gaps.
    """

    colors = (TRAIN_COLOR, VAL_COLOR, BEST_COLOR, "#8c6bb1")
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8.6, 2.9)
        ax = fig.add_subplot()
        x = mdates.date2num(list(dates)) if len(dates) else np.zeros(0)
        for i, (name, values) in enumerate(series.items()):
            y = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
            ax.plot(x, y, color=colors[i % len(colors)], lw=1.6, marker="o", ms=3.5, label=name)
        if len(x):
            locator = mdates.AutoDateLocator(minticks=2, maxticks=7)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            if len(set(x.tolist())) == 1:
                ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
        else:
            ax.text(0.5, 0.5, "no evaluated runs yet", ha="center", va="center", transform=ax.transAxes, color=MUTED)
        ax.set_ylim(0, 1.0)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        if series:
            fig.legend(loc="outside upper right", ncols=len(series))
    return fig


def confusion_difference_figure(
    cm_a: Sequence[Sequence[int]] | np.ndarray,
    cm_b: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str] = CLASS_NAMES,
) -> Figure:
    """Heatmap of ``B - A`` confusion counts: on the diagonal blue = B gets more right,
    off the diagonal blue = B makes fewer of that mistake (red the opposite)."""
    a = np.asarray(cm_a, dtype=float)
    b = np.asarray(cm_b, dtype=float)
    labels = list(labels)
    k = len(labels)
    if a.shape != (k, k) or b.shape != (k, k):
        raise ValueError(f"confusion matrices must be {k}x{k}")
    diff = b - a
    good = np.where(np.eye(k, dtype=bool), diff, -diff)  # > 0: B better in that cell
    vmax = max(float(np.abs(good).max()), 1.0)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(4.8, 4.3)
        ax = fig.add_subplot()
        ax.pcolormesh(np.arange(k + 1) - 0.5, np.arange(k + 1) - 0.5, good, cmap="RdBu", vmin=-vmax, vmax=vmax,
                      edgecolors="white", linewidth=1.0)
        _class_matrix_axes(ax, k, labels)
        ax.set_title("B − A, faces per cell (blue: B better)", loc="left")
        for i in range(k):
            for j in range(k):
                v = int(diff[i, j])
                if v == 0:
                    continue
                dark = abs(good[i, j]) / vmax > 0.55
                ax.text(j, i, f"{v:+d}", ha="center", va="center", fontsize=8 if k <= 8 else 6,
                        color="white" if dark else INK, fontweight="bold" if i == j else "normal")
    return fig


def delta_figure(rows: Sequence[tuple[str, float, float | None, float | None]], title: str = "") -> Figure:
    """Horizontal dot-and-interval plot of metric deltas ``(label, delta, low, high)`` around zero."""
    n = len(rows)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8.6, max(1.6, 0.28 * n + 0.9))
        ax = fig.add_subplot()
        y = np.arange(n)
        for i, (_, d, lo, hi) in enumerate(rows):
            sig = lo is not None and hi is not None and (lo > 0 or hi < 0)
            color = (BEST_COLOR if d > 0 else "#c44e52") if sig else MUTED
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [i, i], color=color, lw=1.6, solid_capstyle="butt")
            ax.plot([d], [i], "o", color=color, ms=4.5)
        ax.axvline(0, color=INK, lw=0.8)
        ax.set_yticks(y, [r[0] for r in rows])
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlabel("B − A")
        ax.grid(True, axis="x")
        ax.set_axisbelow(True)
        if title:
            ax.set_title(title, loc="left")
    return fig

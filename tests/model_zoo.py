"""Model zoo for the tests: small REAL models, independent reference pipelines, hostile files.

Not a test module (pytest collects only ``test_*.py``; nothing here is named ``test_*``).

* Model builders write tiny models with fixed, seeded weights into a caller's folder and
  return the path: :func:`keras_model` (``.keras``, or legacy HDF5 for ``.h5``/``.hdf5``),
  :func:`savedmodel` (a TensorFlow SavedModel folder from ``keras.Model.export``) and
  :func:`onnx_model` (hand-built with ``onnx.helper``, NCHW or NHWC input).
* Reference pipelines (:func:`reference_input`, :func:`reference_keras_proba`,
  :func:`reference_onnx_proba`, :func:`softmax`) re-implement the model-input contract of
  issue 19 with plain numpy/cv2 loops, deliberately WITHOUT importing ferreport, so tests can
  compare ferreport's numbers against an independent computation.
* Hostile files: :func:`html_page` (a web page saved under a model's name) and
  :func:`lfs_pointer` (a Git LFS pointer saved under a model's name).
* :func:`faces` makes varied uint8 RGB 64x64 faces.

TensorFlow/Keras and onnx/onnxruntime are imported lazily, inside the functions that need them,
so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

FACE_SIZE = 64

# --------------------------------------------------------------------------------------------
# faces


def faces(n: int = 12, seed: int = 0) -> np.ndarray:
    """``n`` varied uint8 RGB faces, shape (n, 64, 64, 3): smooth random patterns plus an oval.

    Every face differs from the others and no face is constant.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    yy, xx = np.mgrid[0:FACE_SIZE, 0:FACE_SIZE].astype(np.float32) / (FACE_SIZE - 1)
    for i in range(n):
        coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)
        angle = rng.uniform(0, 2 * np.pi)
        grad = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None] * rng.uniform(-80, 80, 3)
        img = np.clip(smooth + grad, 0, 255).astype(np.uint8)
        center = (int(rng.integers(24, 40)), int(rng.integers(24, 40)))
        axes = (int(rng.integers(10, 22)), int(rng.integers(14, 26)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        # two "eyes" so there is some high-frequency content too
        for dx in (-6, 6):
            eye = (255 - color[0], 20, 255 - color[2])
            cv2.circle(img, (center[0] + dx, center[1] - 4), 2, eye, -1)
        out[i] = img
    return out


# --------------------------------------------------------------------------------------------
# Keras models


def _dense_weights(rng: np.random.Generator, n_in: int, n_out: int, scale: float):
    """Zero-mean random kernel (varied, non-uniform outputs) and a bias with negative values."""
    kernel = rng.normal(0.0, 1.0, (n_in, n_out)).astype(np.float32)
    kernel -= kernel.mean(axis=0, keepdims=True)  # outputs follow the pattern, not the brightness
    kernel *= np.float32(scale / np.sqrt(n_in))
    bias = rng.normal(0.0, 1.0, n_out).astype(np.float32)
    return kernel, bias


def _build_keras(*, height: int, width: int, channels: int, outputs: int, activation, nan: bool,
                 seed: int):
    import keras

    rng = np.random.default_rng(seed)
    inp = keras.Input(shape=(height, width, channels), name="image")
    x = keras.layers.Flatten(name="flatten")(inp)
    x = keras.layers.Dense(16, activation="tanh", name="hidden")(x)
    out = keras.layers.Dense(outputs, activation=activation, name="scores")(x)
    model = keras.Model(inp, out, name="zoo")
    # inputs in [0, 1] with mean ~0.5: scale so hidden pre-activations have std ~2
    k1, b1 = _dense_weights(rng, height * width * channels, 16, scale=7.0)
    b1 *= 0.1
    k2, b2 = _dense_weights(rng, 16, outputs, scale=3.0)
    if nan:
        k2[0, 0] = np.nan
    model.get_layer("hidden").set_weights([k1, b1])
    model.get_layer("scores").set_weights([k2, b2])
    return model


def keras_model(tmp_path: Path, *, height: int = 64, width: int = 64, channels: int = 3,
                outputs: int = 7, activation: str | None = "softmax", name: str = "m.keras",
                nan: bool = False, seed: int = 0) -> Path:
    """Save a small functional keras.Model (input (height, width, channels)); return its path.

    ``activation="softmax"`` gives probabilities, ``None`` gives logits (with negative values).
    ``name`` ending in ``.h5``/``.hdf5`` writes the legacy HDF5 format (Keras 3 ``model.save``
    picks the format from the suffix). ``nan=True`` puts a NaN into the output Dense kernel,
    so every output row is NaN.
    """
    model = _build_keras(height=height, width=width, channels=channels, outputs=outputs,
                         activation=activation, nan=nan, seed=seed)
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def savedmodel(tmp_path: Path, *, height: int = 64, width: int = 64, channels: int = 3,
               outputs: int = 7, activation: str | None = "softmax", name: str = "saved_model",
               nan: bool = False, seed: int = 0) -> Path:
    """Export the same small Keras model as a TensorFlow SavedModel folder; return the folder.

    ``keras.layers.TFSMLayer(folder, call_endpoint="serving_default")`` loads it; its input is
    the keyword ``"image"`` (the Input layer's name) and calling the layer returns a dict with
    the single key ``"output_0"``. Endpoints in the folder: ``serve`` and ``serving_default``.
    """
    model = _build_keras(height=height, width=width, channels=channels, outputs=outputs,
                         activation=activation, nan=nan, seed=seed)
    folder = Path(tmp_path) / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    model.export(str(folder), verbose=False)
    return folder


# --------------------------------------------------------------------------------------------
# ONNX models

ONNX_OPSET = 17
# helper.make_model in onnx 1.23 stamps IR 14; onnxruntime 1.32 happens to accept it, but IR 8
# (opset 17) keeps the files loadable by older onnxruntime releases too
ONNX_IR_VERSION = 8


def onnx_model(tmp_path: Path, *, height: int = 48, width: int = 48, channels: int = 1,
               layout: str = "nchw", outputs: int = 7, softmax: bool = True,
               name: str = "m.onnx", seed: int = 0) -> Path:
    """Write a hand-built ONNX model: Flatten -> MatMul -> Add -> (Softmax axis=1); return its path.

    Input ``"input"`` float32 ``[N, C, H, W]`` (nchw) or ``[N, H, W, C]`` (nhwc), ``N`` symbolic.
    Flatten(axis=1) flattens in the input's own memory order (C,H,W for nchw; H,W,C for nhwc).
    Output ``"scores"`` float32 ``[N, outputs]``: probabilities when ``softmax`` else logits.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"layout must be nchw or nhwc, not {layout!r}")
    rng = np.random.default_rng(seed)
    dims = ["N", channels, height, width] if layout == "nchw" else ["N", height, width, channels]
    n_in = height * width * channels
    kernel, bias = _dense_weights(rng, n_in, outputs, scale=10.0)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", outputs])
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["flat", "W"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "B"], ["logits" if softmax else "scores"], name="bias"),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1, name="softmax"))
    graph = helper.make_graph(
        nodes, "zoo", [inp], [out],
        initializer=[numpy_helper.from_array(kernel, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="ferreport-tests")
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------------
# reference pipelines (independent of ferreport: numpy, cv2, keras, onnxruntime only)


def softmax(x) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def reference_input(faces_uint8, *, height: int, width: int, channels: int, input_range: str,
                    channel_order: str = "rgb", layout: str = "nhwc") -> np.ndarray:
    """Model input for uint8 RGB faces (N, 64, 64, 3), written plainly, one face at a time.

    Order: grayscale (cv2 RGB2GRAY on uint8) when channels == 1; resize to (height, width) on
    uint8 with INTER_AREA when shrinking (neither side grows) else INTER_LINEAR, none when
    the size already matches; reverse channels for bgr (3 channels only); float32 scaling;
    transpose to NCHW when layout == "nchw".
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    batch = []
    for face in np.asarray(faces_uint8):
        assert face.dtype == np.uint8 and face.ndim == 3 and face.shape[2] == 3, face.shape
        img = face
        if channels == 1:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)  # (h, w)
        src_h, src_w = img.shape[:2]
        if (src_h, src_w) != (height, width):
            if height <= src_h and width <= src_w:
                interp = cv2.INTER_AREA
            else:
                interp = cv2.INTER_LINEAR
            img = cv2.resize(img, (width, height), interpolation=interp)
        if channels == 1:
            img = img.reshape(height, width, 1)
        elif channel_order == "bgr":
            img = img[:, :, ::-1]
        elif channel_order != "rgb":
            raise ValueError(f"channel_order must be rgb or bgr, not {channel_order!r}")
        x = img.astype(np.float32)
        if input_range == "0,1":
            x = x / np.float32(255.0)
        elif input_range == "-1,1":
            x = x / np.float32(255.0)
            x = x - np.float32(0.5)
            x = x * np.float32(2.0)
        elif input_range == "0,255":
            pass
        elif input_range == "standardize":
            mean = x.mean(dtype=np.float32)
            std = x.std(dtype=np.float32)
            floor = np.float32(1.0 / np.sqrt(height * width * channels))
            x = (x - mean) / max(std, floor)
        else:
            raise ValueError(f"unknown input_range {input_range!r}")
        batch.append(x.astype(np.float32))
    out = np.stack(batch).astype(np.float32)
    if layout == "nchw":
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    elif layout != "nhwc":
        raise ValueError(f"layout must be nhwc or nchw, not {layout!r}")
    return out


def reference_keras_proba(path, faces_uint8, *, input_range: str = "0,1",
                          channel_order: str = "rgb", height: int | None = None,
                          width: int | None = None, channels: int | None = None,
                          logits: bool = False) -> np.ndarray:
    """Outputs of a Keras model (.keras/.h5 file, or a SavedModel folder) on the faces, float64.

    height/width/channels default to the model's input shape (for a SavedModel folder, read
    from the ``serving_default`` signature). With ``logits=True`` the raw
    outputs are passed through :func:`softmax`; otherwise they are returned as they are.
    """
    import keras

    path = Path(path)
    if path.is_dir():
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        _, kwargs = layer.call_endpoint_fn.structured_input_signature
        (spec,) = kwargs.values()  # {"image": TensorSpec(shape=(None, H, W, C))}
        shape = tuple(spec.shape[1:])
        run = lambda x: np.asarray(next(iter(layer(x).values())))  # noqa: E731
    else:
        model = keras.saving.load_model(str(path), compile=False)
        shape = tuple(model.inputs[0].shape[1:])
        run = lambda x: np.asarray(model.predict(x, verbose=0))  # noqa: E731
    height = shape[0] if height is None else height
    width = shape[1] if width is None else width
    channels = shape[2] if channels is None else channels
    x = reference_input(faces_uint8, height=height, width=width, channels=channels,
                        input_range=input_range, channel_order=channel_order, layout="nhwc")
    y = run(x).astype(np.float64)
    return softmax(y) if logits else y


def reference_onnx_proba(path, faces_uint8, *, input_range: str = "0,1",
                         channel_order: str = "rgb", height: int | None = None,
                         width: int | None = None, channels: int | None = None,
                         layout: str | None = None, logits: bool = False) -> np.ndarray:
    """Outputs of an ONNX model on the faces via onnxruntime (CPUExecutionProvider), float64.

    height/width/channels/layout default to what the model's input declares (layout guessed
    as nchw when dim 1 is 1 or 3 and dim 3 is not). ``logits=True`` applies :func:`softmax`.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dims = list(inp.shape)
    if layout is None:
        layout = "nchw" if dims[1] in (1, 3) and dims[3] not in (1, 3) else "nhwc"
    if layout == "nchw":
        c, h, w = dims[1], dims[2], dims[3]
    else:
        h, w, c = dims[1], dims[2], dims[3]
    height = h if height is None else height
    width = w if width is None else width
    channels = c if channels is None else channels
    x = reference_input(faces_uint8, height=height, width=width, channels=channels,
                        input_range=input_range, channel_order=channel_order, layout=layout)
    y = np.asarray(sess.run(None, {inp.name: x})[0]).astype(np.float64)
    return softmax(y) if logits else y


# --------------------------------------------------------------------------------------------
# hostile files

_GITHUB_404 = """<!DOCTYPE html>
<html lang="en" data-color-mode="auto" data-light-theme="light" data-dark-theme="dark">
  <head>
    <meta charset="utf-8">
    <link rel="dns-prefetch" href="https://github.githubassets.com">
    <meta name="viewport" content="width=device-width">
    <title>Page not found &middot; GitHub &middot; GitHub</title>
    <meta name="description" content="GitHub is where people build software.">
    <link rel="stylesheet" href="https://github.githubassets.com/assets/light-0eace2597ca3.css">
  </head>
  <body class="logged-out env-production page-responsive">
    <div class="position-relative js-header-wrapper">
      <a href="/login?return_to=%2Fuser%2Ffer-models%2Fblob%2Fmain%2Fmodel.h5"
         class="HeaderMenu-link HeaderMenu-link--sign-in">Sign in</a>
    </div>
    <main id="js-pjax-container">
      <div class="container-lg p-responsive text-center">
        <h1>404</h1>
        <p>This is not the web page you are looking for.</p>
      </div>
    </main>
  </body>
</html>
"""

_HUGGINGFACE_LOGIN = """<!doctype html>
<html class="">
\t<head>
\t\t<meta charset="utf-8" />
\t\t<meta name="viewport" content="width=device-width, initial-scale=1.0, user-scalable=no" />
\t\t<title>Hugging Face \u2013 The AI community building the future.</title>
\t\t<link rel="stylesheet" href="/front/build/kube-5b1f2b6/style.css" />
\t</head>
\t<body class="flex flex-col min-h-dvh bg-white dark:bg-gray-950 text-black LoginPage">
\t\t<div class="flex min-h-dvh flex-col">
\t\t\t<form class="rounded-xl border" action="/login" method="POST">
\t\t\t\t<h1 class="mb-4 text-2xl font-semibold">Log In</h1>
\t\t\t\t<input type="text" name="username" placeholder="Username or Email address" />
\t\t\t\t<input type="password" name="password" placeholder="Password" />
\t\t\t\t<button type="submit">Login</button>
\t\t\t\t<p>Don't have an account? <a href="/join">Sign Up</a></p>
\t\t\t</form>
\t\t</div>
\t</body>
</html>
"""


def html_page(tmp_path: Path, name: str = "model.h5", *, kind: str = "github",
              leading_whitespace: bool = False) -> Path:
    """Write a real-looking HTML page under a model's file name (a failed download); return it.

    ``kind="github"``: a GitHub 404 page starting ``<!DOCTYPE html>``; ``kind="huggingface"``:
    a Hugging Face log-in page starting ``<!doctype html>``. ``leading_whitespace=True`` puts
    a run of newlines, spaces and a tab before the doctype, as some servers send.
    """
    pages = {"github": _GITHUB_404, "huggingface": _HUGGINGFACE_LOGIN}
    text = pages[kind]
    if leading_whitespace:
        text = "\n\n  \r\n\t" + text
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def lfs_pointer(tmp_path: Path, name: str = "model.onnx", *, size: int = 123456,
                seed: int = 0) -> Path:
    """Write a Git LFS pointer file (what a clone without git-lfs leaves) under ``name``."""
    oid = hashlib.sha256(f"ferreport-zoo-{seed}".encode()).hexdigest()
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("ascii"))
    return path

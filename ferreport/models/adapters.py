"""Any facial-expression model behind one interface: Keras, legacy HDF5, SavedModel, ONNX.

:func:`open_model` looks at what a model path really is (never trusting its name), loads
it with the matching adapter, reads the input contract the model states (size,
channels, layout), fills in what it cannot state (pixel scaling, channel order, class
order, probabilities or logits) from, in rising order, the defaults, the contract file
next to the model, a ``--model-spec`` file and the command line, then runs a small probe
batch so that broken outputs (NaN/inf) are refused and ``--outputs auto`` is settled
before any face is scored.

Every adapter predicts the same way (:meth:`ModelAdapter.predict`): uint8 faces ->
:func:`ferreport.models.contract.to_model_input` -> the model -> :class:`ferreport.models.contract.OutputReader`
-> probabilities ``(N, 7)`` in ExpW order.

========================  ======================================================
``.keras``                Keras 3 archive (safe mode; zip limits checked first)
``.h5`` / ``.hdf5``       legacy Keras HDF5 (Keras 3 reads them)
folder with saved_model.pb  TensorFlow SavedModel, via ``keras.layers.TFSMLayer``
``.onnx``                 ONNX, via onnxruntime (``pip install 'ferreport[onnx]'``)
========================  ======================================================
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ferreport.constants import FACE_SIZE, NUM_CLASSES
from ferreport.errors import ModelError, UsageError
from ferreport.models.contract import (
    SHAPE_KEYS,
    SPEC_KEYS,
    ModelContract,
    OutputReader,
    contract_path,
    read_spec,
    to_model_input,
)
from ferreport.models.model_file import check_model_path, keras, load_model, sniff_model_file, tf
from ferreport.models.vetting import check_savedmodel
from ferreport.models.watchdog import DEFAULT_MODEL_TIMEOUT, bounded_call

__all__ = ["MAX_BATCH_BYTES", "MAX_FACE_BYTES", "MODEL_FORMATS", "ModelAdapter", "check_face_bytes", "face_bytes",
            "adapter_for", "open_model", "probe_faces", "resolve_contract"]

#: The formats :func:`open_model` reads, as shown in messages.
MODEL_FORMATS = ".keras, .h5/.hdf5, .onnx or a SavedModel folder"
#: Faces in the probe batch run when a model is opened.
PROBE_FACES = 8
#: The most bytes one batch of model input (float32) may take: the batch shrinks to fit
#: (a contract's H×W×C decides the size of a face, not the 64×64 it came from).
MAX_BATCH_BYTES = 256 * 1024**2
#: The most bytes one face of model input may take (float32): 1024×1024 RGB fits; a larger input is refused.
MAX_FACE_BYTES = 16 * 1024**2


def probe_faces(n: int = PROBE_FACES) -> np.ndarray:
    """A fixed batch of synthetic uint8 faces (noise, flat greys, gradients): the same on every machine."""
    rng = np.random.default_rng(20261130)
    faces = rng.integers(0, 256, size=(n, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, FACE_SIZE).astype(np.uint8)
    faces[1] = 128
    faces[2] = ramp[None, :, None]
    faces[3] = ramp[::-1, None, None] // 2 + 64
    return faces


def face_bytes(contract: ModelContract) -> int:
    """Bytes of one face of model input (float32 H×W×C)."""
    return contract.height * contract.width * contract.channels * 4


def check_face_bytes(path: Path, contract: ModelContract) -> None:
    """ModelError, with the figure, when one face of the contract's input is over :data:`MAX_FACE_BYTES`."""
    size = face_bytes(contract)
    if size > MAX_FACE_BYTES:
        raise ModelError(f"{path}: the model's input {contract.height}×{contract.width}×{contract.channels} takes "
                         f"{size / 1024**2:,.0f} MiB per face as float32, over the limit of "
                         f"{MAX_FACE_BYTES / 1024**2:,.0f} MiB (1024×1024 RGB); ferreport's faces are 64×64, so a "
                         "model this large gains nothing from them")


class ModelAdapter:
    """One opened model: its file, format, contract and output reader; subclasses run it."""

    format: str = "keras"

    def __init__(self, path: Path, contract: ModelContract) -> None:
        self.path = Path(path)
        self.contract = contract
        self.reader = OutputReader(contract, self.path)
        #: Seconds one model call may take (:mod:`ferreport.models.watchdog`); None: no limit.
        self.timeout: float | None = DEFAULT_MODEL_TIMEOUT
        #: Where each contract field came from (:data:`SOURCES`); empty for a contract handed over whole.
        self.sources: dict[str, str] = {}
        check_face_bytes(self.path, contract)

    # the one method a format implements
    def raw_predict(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def keras_model(self) -> Any:
        """The Keras model behind this adapter (None for SavedModel and ONNX)."""
        return None

    def call(self, x: np.ndarray) -> np.ndarray:
        """:meth:`raw_predict` under the model timeout (ModelError naming the model when it does not return)."""
        return bounded_call(lambda: self.raw_predict(x), self.timeout, str(self.path), self.stop)

    def stop(self) -> None:
        """Ask a running call to end (formats that can: ONNX)."""

    def batch_for(self, batch_size: int) -> int:
        """``batch_size`` shrunk so one batch of model input stays within :data:`MAX_BATCH_BYTES`."""
        return max(1, min(int(batch_size), MAX_BATCH_BYTES // face_bytes(self.contract)))

    def predict(self, faces: np.ndarray, batch_size: int = 256,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Probabilities ``(N, 7)`` float32 in ExpW order for uint8 RGB faces ``(N, 64, 64, 3)``.

        Converts the next batch in a background thread while the model runs this one, so
        only two batches are ever in float32 (``faces`` may be a memory map of any size).
        ``on_batch(n)`` is called after each batch of ``n`` faces (a progress bar).
        """
        n = len(faces)
        out = np.empty((n, NUM_CLASSES), np.float32)
        if n == 0:
            return out
        bs = self.batch_for(batch_size)
        starts = list(range(0, n, bs))

        def convert(start: int) -> np.ndarray:
            return to_model_input(np.ascontiguousarray(faces[start:start + bs]), self.contract)

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(convert, starts[0])
            for i, start in enumerate(starts):
                x = pending.result()
                if i + 1 < len(starts):
                    pending = pool.submit(convert, starts[i + 1])
                out[start:start + len(x)] = self.reader(self.call(x))
                if on_batch is not None:
                    on_batch(len(x))
        return out

    def probe(self) -> None:
        """Run the probe batch (in batches within the memory bound, under the timeout): NaN/inf outputs refused,
        ``--outputs auto`` settled."""
        faces = probe_faces()
        bs = self.batch_for(len(faces))
        raw = np.concatenate([self.call(to_model_input(faces[i:i + bs], self.contract))
                              for i in range(0, len(faces), bs)])
        self.reader.decide(raw, f"a probe of {len(faces)} synthetic faces")

    def resolved_contract(self) -> ModelContract:
        """The contract with ``auto`` replaced by what was detected (for workers that must not re-decide)."""
        kind = self.reader.kind
        return replace(self.contract, outputs=kind) if kind and self.contract.outputs == "auto" else self.contract

    def describe(self) -> str:
        return self.contract.describe(self.reader.kind, tuple(assumed_fields(self.contract, self.sources)))

    def is_ferreport_contract(self) -> bool:
        """Whether the model takes and gives what ferreport's own models do (64x64 RGB [0, 1], softmax, ExpW order)."""
        own = ModelContract(recipe=self.contract.recipe, outputs="probabilities")
        return self.resolved_contract() == own

    def contract_sources(self) -> dict[str, str]:
        """Where each field came from; ``outputs`` left on ``auto`` is ``detected`` once the probe settled it."""
        out = dict(self.sources)
        if out and self.contract.outputs == "auto" and self.reader.kind:
            out["outputs"] = "detected"
        return out

    def assumed_warnings(self) -> list[str]:
        """One line per field that changes the numbers and was assumed (empty for a declared contract)."""
        return [assumed_warning(k, self.contract) for k in assumed_fields(self.contract, self.sources)]

    def record(self) -> dict[str, Any]:
        """The model's contract as provenance.json keeps it, with each field's source."""
        out = {**self.contract.to_dict(), "format": self.format, **self.reader.record(), "summary": self.describe()}
        if self.sources:
            out["sources"] = self.contract_sources()
        return out


# --------------------------------------------------------------------------- Keras


class KerasAdapter(ModelAdapter):
    def __init__(self, path: Path, contract: ModelContract, model: Any, fmt: str = "keras") -> None:
        super().__init__(path, contract)
        self.model = model
        self.format = fmt
        spec = tf.TensorSpec((None, *contract.input_shape), tf.float32)
        run = model  # the traced function holds the model; the adapter holds both

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def infer(x: tf.Tensor) -> tf.Tensor:
            return tf.cast(run(x, training=False), tf.float32)

        self._infer = infer

    @property
    def keras_model(self) -> Any:
        return self.model

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        return self._infer(tf.convert_to_tensor(x)).numpy()


def _keras_io(model: Any, p: Path) -> tuple[tuple, int | None]:
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{p}: the model has {len(inputs)} inputs and {len(outputs)} outputs; ferreport feeds one "
                         "image input and reads one class-score output")
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2:
        raise ModelError(f"{p}: the model's output shape is {out_shape}; expected (N, classes)")
    return tuple(inputs[0].shape), out_shape[1]


def _keras_adapter(p: Path, safe_mode: bool) -> tuple[Any, tuple, int | None]:
    model = load_model(p, safe_mode=safe_mode, check_shapes=False)
    in_shape, width = _keras_io(model, p)
    return model, in_shape, width


# --------------------------------------------------------------------------- SavedModel


class SavedModelAdapter(ModelAdapter):
    format = "savedmodel"

    def __init__(self, path: Path, contract: ModelContract, layer: Any, output_key: str | None) -> None:
        super().__init__(path, contract)
        self.layer = layer
        self.output_key = output_key

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        out = self.layer(tf.convert_to_tensor(x))
        if isinstance(out, Mapping):
            out = out[self.output_key] if self.output_key in out else next(iter(out.values()))
        return np.asarray(tf.cast(out, tf.float32))


def _savedmodel(p: Path, safe_mode: bool) -> tuple[Any, tuple, int | None, str | None]:
    if not (p / "saved_model.pb").is_file():
        raise ModelError(f"{p}: is a folder without saved_model.pb; pass a model file ({MODEL_FORMATS})")
    if safe_mode:
        check_savedmodel(p)  # before TensorFlow loads it: loading runs the model's initialisers
    try:
        layer = keras.layers.TFSMLayer(str(p), call_endpoint="serving_default")
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types for a bad SavedModel
        raise ModelError(f"{p}: cannot load the SavedModel's serving_default signature "
                         f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                         "export it with model.export(folder)") from exc
    fn = layer.call_endpoint_fn
    args, kwargs = fn.structured_input_signature
    specs = [s for s in (*tf.nest.flatten(args), *tf.nest.flatten(kwargs)) if isinstance(s, tf.TensorSpec)]
    outputs = fn.structured_outputs
    flat_out = tf.nest.flatten(outputs)
    if len(specs) != 1 or len(flat_out) != 1:
        raise ModelError(f"{p}: the SavedModel's serving_default takes {len(specs)} inputs and gives "
                         f"{len(flat_out)} outputs; ferreport feeds one image input and reads one output")
    key = next(iter(outputs)) if isinstance(outputs, Mapping) else None
    out_shape = tuple(flat_out[0].shape)
    if len(out_shape) != 2:
        raise ModelError(f"{p}: the SavedModel's output shape is {out_shape}; expected (N, classes)")
    return layer, tuple(specs[0].shape), out_shape[1], key


# --------------------------------------------------------------------------- ONNX


class OnnxAdapter(ModelAdapter):
    format = "onnx"

    def __init__(self, path: Path, contract: ModelContract, session: Any, input_name: str, dtype: Any) -> None:
        super().__init__(path, contract)
        self.session = session
        self.input_name = input_name
        self.dtype = dtype
        self._running: Any = None  # the RunOptions of the call in flight: stop() sets its terminate flag

    def stop(self) -> None:
        if self._running is not None:
            self._running.terminate = True

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        if self.dtype is not np.float32:
            x = np.clip(np.rint(x), 0, 255).astype(np.uint8) if self.dtype is np.uint8 else x.astype(self.dtype)
        import onnxruntime as ort  # optional extra: loaded already by _onnx, this only names it

        self._running = ort.RunOptions()
        try:
            (out,) = self.session.run(None, {self.input_name: x}, self._running)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are its own types
            raise ModelError(f"{self.path}: onnxruntime failed to run the model "
                             f"({str(exc).strip().splitlines()[0][:300]})") from exc
        return np.asarray(out, dtype=np.float32)


_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(uint8)": np.uint8}


def _onnx(p: Path, kind: str) -> tuple[Any, tuple, int | None, str, Any]:
    if kind != "other":
        raise ModelError(f"{p}: is a{' zip' if kind == 'zip' else 'n HDF5'} file named .onnx; rename it to "
                         f"{'.keras' if kind == 'zip' else '.h5'}")
    try:
        import onnxruntime as ort  # optional extra (ferreport[onnx]): only for .onnx models
    except ImportError:
        raise UsageError(f"{p}: ONNX models need onnxruntime; install it with: pip install 'ferreport[onnx]'") \
            from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{p}: not a loadable ONNX model ({first}); re-export or re-download it") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{p}: the ONNX model has {len(inputs)} inputs and {len(outputs)} outputs "
                         f"({', '.join(o.name for o in outputs)}); ferreport feeds one image input and reads one "
                         "output")
    dtype = _ONNX_TYPES.get(inputs[0].type)
    if dtype is None:
        raise ModelError(f"{p}: the ONNX model takes {inputs[0].type} input; ferreport feeds float or uint8 images")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape)
    out_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in outputs[0].shape)
    if len(out_shape) != 2:
        raise ModelError(f"{p}: the ONNX model's output shape is {outputs[0].shape}; expected (N, classes)")
    return session, shape, out_shape[1], inputs[0].name, dtype


# --------------------------------------------------------------------------- the contract


def _shape_facts(p: Path, in_shape: tuple) -> dict[str, Any]:
    """height/width/channels/layout the model states (None where it leaves them open)."""
    if len(in_shape) != 4:
        raise ModelError(f"{p}: the model's input shape is {_text(in_shape)}; ferreport feeds image batches "
                         "(N, height, width, channels) or (N, channels, height, width)")
    _, a, b, c = in_shape
    if c in (1, 3):
        return {"height": a, "width": b, "channels": c, "layout": "nhwc"}
    if a in (1, 3):
        return {"height": b, "width": c, "channels": a, "layout": "nchw"}
    if c is None and a is None:
        return {"height": b, "width": c, "channels": None, "layout": None}
    raise ModelError(f"{p}: the model's input shape is {_text(in_shape)}: neither its last nor its second "
                     "dimension is 1 or 3 channels; ferreport feeds grayscale or colour images")


def _text(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _layers(p: Path, options: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The contract's sources, lowest precedence first: contract file, --model-spec, command line."""
    layers: list[tuple[str, dict[str, Any]]] = []
    saved = contract_path(p)
    if os.path.lexists(saved):  # a FIFO or a link to a device is refused by read_spec, not skipped
        layers.append((str(saved), read_spec(saved, option=None)))
    spec = options.get("model_spec")
    if spec:
        layers.append((str(spec), read_spec(spec)))
    flags = {k: options.get(k) for k in SPEC_KEYS if options.get(k) not in (None, "", ())}
    if flags:
        layers.append(("the command line", flags))
    return layers


#: Where a contract field came from (provenance.json's ``model_contract.sources``, --json, the report).
SOURCES: tuple[str, ...] = ("model", "contract-file", "spec", "flag", "recorded", "detected", "assumed")
#: The fields that change the numbers when they are wrong, and the flag that sets each.
NUMBER_FIELDS: dict[str, str] = {"input_range": "--input-range", "channel_order": "--channel-order",
                                 "classes": "--classes"}


def _layer_source(where: str, saved: Path) -> str:
    if where == str(saved):
        return "contract-file"
    return "flag" if where == "the command line" else "spec"


def resolve_contract(p: Path, in_shape: tuple, width: int | None, options: Mapping[str, Any]) -> ModelContract:
    """The model's contract: what it states, then its sources (see :func:`_layers`)."""
    return resolve_contract_sources(p, in_shape, width, options)[0]


def resolve_contract_sources(p: Path, in_shape: tuple, width: int | None, options: Mapping[str, Any], *,
                             stated: Mapping[str, str] | None = None) -> tuple[ModelContract, dict[str, str]]:
    """:func:`resolve_contract` and where each field came from (:data:`SOURCES`): the model file for what it
    states, else the last of contract file, spec and flags to set it, else ``assumed`` (ferreport's default).

    ``stated``: contract fields the model's own layers imply (:func:`stated_input_range`); a contract file,
    spec or flag still overrides them."""
    facts = _shape_facts(p, in_shape)
    values: dict[str, Any] = dict(stated or {})
    sources: dict[str, str] = {k: "model" for k in SHAPE_KEYS if facts.get(k) is not None}
    sources.update({k: "model" for k in (stated or {})})
    recorded = options.get("recorded_sources") or {}
    saved = contract_path(p)
    for where, layer in _layers(p, options):
        source = _layer_source(where, saved)
        for key in SHAPE_KEYS:
            if layer.get(key) is None:
                continue
            if facts.get(key) is not None and facts[key] != layer[key]:
                raise ModelError(f"{where} says {key} {layer[key]!r}, but the model {p} takes {key} {facts[key]!r}; "
                                 "fix the spec or pass the model it describes")
            values[key] = layer[key]
            sources.setdefault(key, source)
        for k in SPEC_KEYS:
            if layer.get(k) not in (None, "", ()):
                values[k] = layer[k]
                sources[k] = str(recorded[k]) if source == "flag" and k in recorded else source
        if "recipe" in layer:
            values["recipe"] = layer["recipe"]
    for key, default in (("height", FACE_SIZE), ("width", FACE_SIZE), ("channels", 3), ("layout", "nhwc")):
        values.setdefault(key, facts.get(key) if facts.get(key) is not None else default)
        sources.setdefault(key, "assumed")
    for key in ("input_range", "channel_order", "classes", "outputs"):
        sources.setdefault(key, "assumed")
    if values.get("channels") == 1:
        sources["channel_order"] = "model"  # one channel: the order is moot
    if width is None:
        raise ModelError(f"{p}: the model does not state how many classes it outputs; ferreport needs a fixed "
                         "(N, classes) output")
    if "classes" not in values and width != NUM_CLASSES:
        raise ModelError(f"{p}: the model has {width} outputs; pass --classes with its {width} class names in "
                         "output order (e.g. FER+: neutral,happiness,surprise,sadness,anger,disgust,fear,"
                         "contempt)")
    contract = ModelContract(**values)
    if len(contract.classes) != width:
        raise UsageError(f"--classes names {len(contract.classes)} classes ({','.join(contract.classes)}), but the "
                         f"model {p} has {width} outputs; name one class per output, in output order")
    return contract, sources


#: A first layer ``Rescaling(scale, offset)`` that maps raw pixels 0..255 onto [0, 1] or [-1, 1].
_PIXEL_RESCALINGS = ((1 / 255, 0.0), (1 / 127.5, -1.0), (2 / 255, -1.0))


def stated_input_range(model: Any) -> dict[str, str]:
    """``{"input_range": "0,255"}`` when the Keras model's first layer rescales raw pixels itself
    (``Rescaling(1/255)``, ``Rescaling(1/127.5, offset=-1)``): it takes 0..255, whatever a default says."""
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    first = layers[0] if layers else None
    if type(first).__name__ != "Rescaling":
        return {}
    try:
        scale, offset = float(np.asarray(first.scale).reshape(-1)[0]), float(np.asarray(first.offset).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return {}
    if any(abs(scale - s) < 1e-6 and abs(offset - o) < 1e-6 for s, o in _PIXEL_RESCALINGS):
        return {"input_range": "0,255"}
    return {}


def assumed_fields(contract: ModelContract, sources: Mapping[str, str]) -> list[str]:
    """The fields that change the numbers and were assumed, not declared (:data:`NUMBER_FIELDS` order)."""
    return [k for k in NUMBER_FIELDS if sources.get(k) == "assumed"]


def assumed_warning(key: str, contract: ModelContract) -> str:
    """One line saying ``key`` was assumed, with the flag that declares it."""
    if key == "input_range":
        return ("input range [0, 1] assumed (the model file does not say); if it was trained on [-1, 1] pass "
                "--input-range=-1,1 (or 0,255, standardize), or record it in a --model-spec file")
    if key == "channel_order":
        return ("channel order RGB assumed (the model file does not say); a model trained on OpenCV (BGR) arrays "
                "needs --channel-order bgr")
    return (f"class order {','.join(contract.classes)} assumed (the model file does not say); if the model was "
            "trained in another order pass --classes in its output order (RAF-DB's: surprise,fear,disgust,happy,"
            "sad,angry,neutral)")


def open_model(path: str | os.PathLike[str], options: Mapping[str, Any] | None = None, *, safe_mode: bool = True,
               contract: ModelContract | None = None, probe: bool = True,
               timeout: float | None = DEFAULT_MODEL_TIMEOUT) -> ModelAdapter:
    """Open the model at ``path`` (file or SavedModel folder) with its contract settled.

    ``options``: the contract options (``input_range``, ``channel_order``, ``classes``,
    ``outputs``, ``model_spec``); ``contract``: use exactly this contract instead (a
    worker given the driver's); ``timeout``: seconds each model call may take (``--model-timeout``;
    ``options["model_timeout"]`` wins when set). ModelError (exit 4) for anything wrong with the model,
    UsageError (exit 2) for options that contradict it.
    """
    p = Path(path)
    mode = check_model_path(p)
    suffix = p.suffix.lower()
    stated: dict[str, str] = {}
    if stat.S_ISDIR(mode):
        layer, in_shape, width, key = _savedmodel(p, safe_mode)
        build = lambda c: SavedModelAdapter(p, c, layer, key)  # noqa: E731
    elif suffix == ".onnx":
        session, in_shape, width, name, dtype = _onnx(p, sniff_model_file(p))
        build = lambda c: OnnxAdapter(p, c, session, name, dtype)  # noqa: E731
    elif suffix in (".keras", ".h5", ".hdf5"):
        fmt = "keras" if suffix == ".keras" else "hdf5"
        model, in_shape, width = _keras_adapter(p, safe_mode)
        stated = stated_input_range(model)
        build = lambda c: KerasAdapter(p, c, model, fmt)  # noqa: E731
    else:
        kind = sniff_model_file(p)  # an HTML page or LFS pointer says so whatever its name
        raise ModelError(f"{p}: unsupported model format {suffix or '(no suffix)'!r}"
                         f"{' (the file is a zip archive: a .keras model?)' if kind == 'zip' else ''}"
                         f"{' (the file is HDF5: a .h5 model?)' if kind == 'hdf5' else ''}; expected {MODEL_FORMATS}")
    sources: dict[str, str] = {}
    if contract is None:
        contract, sources = resolve_contract_sources(p, in_shape, width, options or {}, stated=stated)
        assumed = assumed_fields(contract, sources)
        if assumed and (options or {}).get("strict_contract"):
            flags = ", ".join(NUMBER_FIELDS[k] for k in assumed)
            raise ModelError(f"{p}: --strict-contract: the model does not say its {', '.join(assumed)}; declare "
                             f"them with {flags} (or a --model-spec file)")
    else:
        facts = _shape_facts(p, in_shape)
        for key in SHAPE_KEYS:
            if facts.get(key) is not None and facts[key] != getattr(contract, key):
                raise ModelError(f"{p}: the model takes {key} {facts[key]!r}, the contract given says "
                                 f"{getattr(contract, key)!r}")
    adapter = build(contract)
    adapter.sources = sources
    if (options or {}).get("model_timeout") is not None:
        timeout = float(options["model_timeout"])
    adapter.timeout = timeout
    if probe:
        adapter.probe()
    return adapter


def adapter_for(model: Any, contract: ModelContract | None = None, source: str = "model") -> ModelAdapter:
    """A :class:`KerasAdapter` around an in-memory Keras model (ferreport's own contract by default)."""
    if isinstance(model, ModelAdapter):
        return model
    return KerasAdapter(Path(source), contract or ModelContract(), model)

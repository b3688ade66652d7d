"""A SavedModel is vetted before TensorFlow loads it: every op it could run is on an allow-list.

``tf.saved_model.load`` runs code as it loads - resource creators and initialisers, the
restore function - and scoring runs the serving signature. A hostile SavedModel can write
files, read them (``ReadFile``, ``TextLineDataset``, ``RestoreV2`` of a chosen path), open
summary or TFRecord writers, cache a dataset to disk or call Python (``PyFunc``) in any of
them. So ``saved_model.pb`` is parsed as a protobuf (TensorFlow's own message classes;
nothing is loaded) and each node of each graph and of each function in its library is
checked against :data:`ALLOWED_OPS`: pure computation (math, nn, array, control flow,
variable read and assign). An allow-list, not a deny-list: an op TensorFlow adds next year
is refused until someone reviews it and adds it here.

Two exceptions, both for what every SavedModel carries: the saver's *save* function (its
``SaveV2``/``MergeV2Checkpoints`` run only when someone re-saves the model, never on load
or scoring) is skipped when nothing else calls it; and ``RestoreV2`` is allowed only in the
saver's *restore* function and only when its path is the restore function's argument (the
model's own ``variables/``, fed by the loader), never a constant path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ferreport.errors import ModelError
from ferreport.safe_io import NotRegularFile, read_regular

__all__ = ["ALLOWED_OPS", "MAX_GRAPH_BYTES", "GraphOp", "check_savedmodel", "savedmodel_ops"]

#: saved_model.pb larger than this is refused before it is parsed (protobuf's own ceiling is 2 GiB).
MAX_GRAPH_BYTES = 1024**3

_MATH = """
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Atan Atan2 Atanh BatchMatMul
BatchMatMulV2 BatchMatMulV3 Betainc Bucketize Cast Ceil ClipByValue Complex ComplexAbs Conj Cos Cosh Cross Cumprod
Cumsum Digamma Div DivNoNan Einsum Equal Erf Erfc Erfinv Exp Expm1 Floor FloorDiv FloorMod Greater GreaterEqual
Imag Inv InvGrad IsFinite IsInf IsNan Less LessEqual Lgamma Log Log1p LogicalAnd LogicalNot LogicalOr MatMul Max
Maximum Mean Min Minimum Mod Mul MulNoNan Ndtri Neg NextAfter NotEqual Polygamma Pow Prod Real RealDiv Reciprocal
ReciprocalGrad Rint Round Rsqrt RsqrtGrad SegmentMax SegmentMean SegmentMin SegmentProd SegmentSum Select SelectV2
Sigmoid SigmoidGrad Sign Sin Sinh Sqrt SqrtGrad Square SquaredDifference Sub Sum Tan Tanh TanhGrad TruncateDiv
TruncateMod UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd UnsortedSegmentSum Xdivy Xlog1py Xlogy Zeta
BitwiseAnd BitwiseOr BitwiseXor Invert LeftShift RightShift Range LinSpace Bincount DenseBincount
"""
_NN = """
AvgPool AvgPool3D BiasAdd BiasAddV1 Conv Conv2D Conv3D Conv2DBackpropInput Conv3DBackpropInputV2
DepthwiseConv2dNative DepthwiseConv2dNativeBackpropInput Dilation2D Elu FusedBatchNorm FusedBatchNormV2
FusedBatchNormV3 FusedPadConv2D FusedResizeAndPadConv2D InTopKV2 L2Loss LRN LeakyRelu LogSoftmax MaxPool MaxPool3D
MaxPoolV2 MaxPoolWithArgmax Relu Relu6 Selu Softmax Softplus Softsign TopKV2 BatchNormWithGlobalNormalization
ResizeArea ResizeBicubic ResizeBilinear ResizeNearestNeighbor ScaleAndTranslate CropAndResize AdjustContrastv2
AdjustHue AdjustSaturation RGBToHSV HSVToRGB NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5
ExtractImagePatches MirrorPad MirrorPadGrad
"""
_ARRAY = """
BatchToSpaceND BroadcastArgs BroadcastGradientArgs BroadcastTo CheckNumerics CheckNumericsV2 Concat ConcatOffset
ConcatV2 Const DepthToSpace Diag DiagPart EnsureShape ExpandDims Fill Gather GatherNd GatherV2 Identity IdentityN
InvertPermutation ListDiff MatrixBandPart MatrixDiag MatrixDiagPart MatrixDiagPartV2 MatrixDiagPartV3 MatrixDiagV2
MatrixDiagV3 MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 OneHot OnesLike Pack Pad PadV2 Placeholder
PlaceholderWithDefault PreventGradient Rank Reshape ResourceGather ResourceGatherNd Reverse ReverseSequence
ReverseV2 ScatterNd Shape ShapeN Size Slice Snapshot SpaceToBatchND SpaceToDepth Split SplitV Squeeze StopGradient
StridedSlice TensorScatterAdd TensorScatterMax TensorScatterMin TensorScatterSub TensorScatterUpdate Tile
Transpose Unique UniqueV2 Unpack Where ZerosLike Bitcast QuantizeAndDequantizeV2 QuantizeAndDequantizeV3
QuantizeAndDequantizeV4 FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel
StringJoin StaticRegexFullMatch Assert NoOp
"""
_CONTROL = """
If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall StatefulPartitionedCall Switch Merge Enter
Exit NextIteration LoopCond ControlTrigger TensorListReserve TensorListFromTensor TensorListGetItem
TensorListSetItem TensorListStack TensorListLength TensorListElementShape TensorListPushBack TensorListPopBack
TensorListConcatV2 TensorListSplit TensorListGather TensorListScatterIntoExistingList TensorListResize
"""
_VARIABLES = """
VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
DestroyResourceOp DisableCopyOnRead ResourceScatterUpdate ResourceScatterAdd ResourceScatterSub
"""
_RANDOM = """
StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessTruncatedNormalV2 StatelessRandomGetKeyCounter
StatelessRandomGetAlg StatelessRandomUniformIntV2 StatelessRandomUniform StatelessRandomNormal
StatelessTruncatedNormal RandomUniform RandomStandardNormal TruncatedNormal RandomUniformInt
"""

#: Ops a vetted SavedModel may hold, reviewed by hand: pure computation on tensors and variables.
#: Missing on purpose (refused): file I/O (ReadFile, WriteFile, MatchingFiles, DeleteFile, ...),
#: checkpoints (Save*, MergeV2Checkpoints, RestoreV2 outside the restore function), summaries, every
#: dataset op (TFRecord, TextLine, cache, ...), lookup tables initialised from files, PyFunc and
#: EagerPyFunc, printing, debugging, and anything not reviewed yet.
ALLOWED_OPS: frozenset[str] = frozenset(" ".join((_MATH, _NN, _ARRAY, _CONTROL, _VARIABLES, _RANDOM)).split())

_CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})


@dataclass(frozen=True)
class GraphOp:
    """One node that would run: its op, node name and the function holding it ('' for the top graph)."""

    op: str
    node: str
    function: str


def _read_savedmodel(folder: Path):
    from tensorflow.core.protobuf import saved_model_pb2  # TensorFlow's own message classes, nothing loaded

    pb = folder / "saved_model.pb"
    try:
        data = read_regular(pb, MAX_GRAPH_BYTES, too_large=f"larger than {MAX_GRAPH_BYTES // 1024**2} MiB")
    except NotRegularFile as exc:
        raise ModelError(f"{pb}: {exc.reason}; not a SavedModel ferreport will load") from None
    except OSError as exc:
        raise ModelError(f"{pb}: cannot read it ({exc.strerror or exc})") from None
    message = saved_model_pb2.SavedModel()
    try:
        message.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelError(f"{pb}: not a SavedModel protobuf ({type(exc).__name__}); re-export the model") from None
    if not message.meta_graphs:
        raise ModelError(f"{pb}: holds no graph; re-export the model")
    return message


def _called(node) -> Iterator[str]:
    """Functions a node refers to through its attributes (``f``, ``then_branch``, ``body``, ...)."""
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        if value.HasField("list"):
            yield from (f.name for f in value.list.func)


def _reachable(roots: Iterable[str], calls: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen and name in calls:
            seen.add(name)
            todo.extend(calls[name])
    return seen


def savedmodel_ops(folder: str | os.PathLike[str]) -> list[GraphOp]:
    """Every node of ``folder``'s SavedModel that loading or scoring could run, less the saver's save function
    (see the module docstring). RestoreV2 nodes are reported unless they are the restore function's own."""
    message = _read_savedmodel(Path(folder))
    found: list[GraphOp] = []
    for graph in message.meta_graphs:
        library = {f.signature.name: f for f in graph.graph_def.library.function}
        calls = {name: {c for n in f.node_def for c in _called(n)} for name, f in library.items()}
        saver = graph.saver_def
        save_node = saver.save_tensor_name.split(":")[0] if saver.save_tensor_name else ""
        restore_node = saver.restore_op_name.split(":")[0] if saver.restore_op_name else ""
        top = {n.name: n for n in graph.graph_def.node}
        others = [c for n in graph.graph_def.node if n.name not in (save_node, restore_node) for c in _called(n)]
        live = _reachable(others, calls)
        restore_only = _reachable(_called(top[restore_node]) if restore_node in top else (), calls) - live
        live |= restore_only
        save_only = _reachable(_called(top[save_node]) if save_node in top else (), calls) - live
        for node in graph.graph_def.node:
            if node.name != save_node or not save_only:
                found.append(GraphOp(node.op, node.name, ""))
        for name in sorted(live):
            fn = library[name]
            args = {a.name for a in fn.signature.input_arg}
            for node in fn.node_def:
                if node.op == "RestoreV2" and name in restore_only and node.input and \
                        node.input[0].split(":")[0] in args:
                    continue  # the loader's own restore of variables/ (its path is the function's argument)
                found.append(GraphOp(node.op, node.name, name))
    return found


def check_savedmodel(folder: str | os.PathLike[str]) -> None:
    """Refuse (ModelError, exit 4) a SavedModel holding an op that is not on :data:`ALLOWED_OPS`.

    Call it before ``tf.saved_model.load`` or ``keras.layers.TFSMLayer``: loading runs initialisers.
    """
    refused = [item for item in savedmodel_ops(folder) if item.op not in ALLOWED_OPS]
    if refused:
        first = refused[0]
        where = f"function {first.function}" if first.function else "the top-level graph"
        ops = sorted({item.op for item in refused})
        listed = ", ".join(ops[:8]) + (f" and {len(ops) - 8} more" if len(ops) > 8 else "")
        raise ModelError(
            f"{folder}: the SavedModel's {where} runs op {first.op} (node {first.node}), which is not on "
            f"ferreport's allow-list of pure computation ops (it could read or write files, or run Python); "
            f"ops refused in all: {listed}. Pass --unsafe-model to run it anyway if you trust the file")

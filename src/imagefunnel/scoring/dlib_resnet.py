"""dlib's face descriptor network, read from its own model file and run with NumPy's BLAS.

``dlib_face_recognition_resnet_model_v1.dat`` holds a 29-layer residual network that maps a 150x150
face chip to 128 numbers. The ``dlib-bin`` wheel runs it with dlib's own loops (no BLAS), about
85 ms of one core; the same arithmetic as im2col + ``float32`` matrix products takes a fraction of
that. Only the forward pass is replaced: dlib still finds the 5 points and cuts the chip.

The file is dlib's binary serialisation of the whole network object, outermost layer first, each
wrapper writing its version, then its inner network, then its own layer. So the file reads as the
loss layer, a run of version numbers (one per wrapper, outside in), the input layer, and then the
layers' parameters from the input upwards. Tag and skip wrappers write nothing but a version, and no
wrapper writes which tag it refers to, so the reader walks the network definition of dlib's example
(``dnn_face_recognition_ex.cpp``) and checks every layer it meets against it: kind, filter count,
window, stride, padding and tensor shapes. Anything else (another network, another format version,
a truncated file) raises :class:`DlibNetFormatError`, and the caller falls back to dlib.

The file stores batch norm already turned into a per-channel scale and shift (dlib's ``affine_``);
each is folded into the convolution before it, so a block is two matrix products and two maxima.

Encodings (dlib/serialize.h): an integer is a control byte (low nibble: byte count, 0x80: negative)
and that many little-endian bytes; a string is its length as such an integer, then the bytes; a bool
is the character ``'0'`` or ``'1'``; a scalar float is a mantissa and an exponent, two integers; a
tensor's values are raw little-endian IEEE floats after a version and four dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

__all__ = ["CHIP_SIZE", "DlibNetFormatError", "FaceNet", "read_face_net"]

CHIP_SIZE = 150

F32 = NDArray[np.float32]


class DlibNetFormatError(ValueError):
    """The model file is not the network this reader knows (another layout, version, or truncated)."""


# -- dlib's primitive encodings --------------------------------------------------------------------


class _Reader:
    """Reads dlib's serialised primitives from a byte buffer, front to back."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def _take(self, count: int) -> memoryview:
        end = self.pos + count
        if count < 0 or end > len(self._data):
            raise DlibNetFormatError(f"the file ends inside a value at byte {self.pos}")
        chunk = self._data[self.pos : end]
        self.pos = end
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        # bits 0x70 are never set in an integer's control byte; dlib's old text format sets them
        if size == 0 or size > 8 or control & 0x70:
            raise DlibNetFormatError(f"no integer at byte {self.pos - 1} (control byte {control:#x})")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise DlibNetFormatError(f"implausible string length {length} at byte {self.pos}")
        return bytes(self._take(length)).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        char = bytes(self._take(1))
        if char not in (b"0", b"1"):
            raise DlibNetFormatError(f"no bool at byte {self.pos - 1}")
        return char == b"1"

    def scalar(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent >= 32000:  # dlib's codes for inf, -inf and nan
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(float(mantissa), exponent))

    def shape(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: a version and four dimensions, no values."""
        self.expect_version("alias_tensor", 1)
        return (self.integer(), self.integer(), self.integer(), self.integer())

    def tensor(self) -> F32:
        """A ``resizable_tensor``, flat, as float32 (read-only)."""
        self.expect_version("tensor", 2)
        dims = [self.integer() for _ in range(4)]
        if any(d < 0 for d in dims):
            raise DlibNetFormatError(f"negative tensor dimension {dims}")
        count = int(np.prod(dims))
        # a read-only view into the file's bytes, no copy: only the folded weights outlive the reading
        values = np.frombuffer(self._take(4 * count), dtype="<f4")
        return values if values.dtype == np.float32 else values.astype(np.float32)

    def expect_version(self, what: str, *allowed: int) -> int:
        version = self.integer()
        if version not in allowed:
            raise DlibNetFormatError(f"{what} has version {version}, expected {allowed}")
        return version

    def expect_string(self, what: str, *allowed: str) -> str:
        found = self.string()
        if found not in allowed:
            raise DlibNetFormatError(f"expected {what} ({' or '.join(allowed)}), found {found!r}")
        return found


# -- the network definition ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    """One wrapper of the network, innermost first: its kind and what the file must say of it."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc
    filters: int = 0  # con: filter count; fc: outputs
    window: int = 0  # con: filter size; pools: window (0: the whole input)
    stride: int = 1
    tag: int = 0  # tag: its id; skip, add_prev: the tag they refer to


def _block(filters: int, stride: int) -> list[_Spec]:
    return [
        _Spec("con", filters, 3, stride),
        _Spec("affine"),
        _Spec("relu"),
        _Spec("con", filters, 3, 1),
        _Spec("affine"),
    ]


def _residual(filters: int) -> list[_Spec]:
    return [_Spec("tag", tag=1), *_block(filters, 1), _Spec("add_prev", tag=1), _Spec("relu")]


def _residual_down(filters: int) -> list[_Spec]:
    # the block's output is tagged 2; the shortcut skips back to the block's input (tag 1), halves it
    # by a 2x2 average and is added to tag 2
    return [
        _Spec("tag", tag=1),
        *_block(filters, 2),
        _Spec("tag", tag=2),
        _Spec("skip", tag=1),
        _Spec("avg_pool", window=2, stride=2),
        _Spec("add_prev", tag=2),
        _Spec("relu"),
    ]


def _network() -> list[_Spec]:
    """dlib's ``anet_type`` from the input up (its template reads from the loss down)."""
    specs = [_Spec("con", 32, 7, 2), _Spec("affine"), _Spec("relu"), _Spec("max_pool", window=3, stride=2)]
    specs += _residual(32) * 3
    specs += _residual_down(64) + _residual(64) * 3
    specs += _residual_down(128) + _residual(128) * 2
    specs += _residual_down(256) + _residual(256) * 2
    specs += _residual_down(256)
    specs += [_Spec("avg_pool", window=0, stride=1), _Spec("fc", 128)]
    return specs


def _padding(window: int, stride: int) -> int:
    """dlib's default padding: half the window at stride 1, none otherwise."""
    return window // 2 if stride == 1 else 0


# -- reading the layers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Conv:
    weights: F32  # (window * window * channels, filters): rows in (row, column, channel) order
    bias: F32  # (filters,)
    window: int
    stride: int
    padding: int


@dataclass(frozen=True, slots=True)
class _Op:
    spec: _Spec
    conv: _Conv | None = None  # con, with the following affine folded in


def _read_con(reader: _Reader, spec: _Spec, channels: int) -> tuple[F32, F32, int]:
    version = reader.expect_string("a convolution", "con_4", "con_5", "con_6")
    params = reader.tensor()
    filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    pad_y, pad_x = reader.integer(), reader.integer()
    filter_shape = reader.shape()
    bias_shape = reader.shape()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.scalar()
    use_bias = reader.boolean() if version in ("con_5", "con_6") else True
    if version == "con_6" and reader.boolean():
        raise DlibNetFormatError("a convolution with a fused relu")
    expected = (spec.filters, spec.window, spec.window, spec.stride, spec.stride)
    padding = _padding(spec.window, spec.stride)
    if (filters, rows, cols, stride_y, stride_x) != expected or (pad_y, pad_x) != (padding, padding):
        raise DlibNetFormatError(
            f"convolution {filters} {rows}x{cols}/{stride_y},{stride_x} pad {pad_y},{pad_x}, expected "
            f"{spec.filters} {spec.window}x{spec.window}/{spec.stride} pad {padding}"
        )
    if filter_shape != (filters, channels, rows, cols):
        raise DlibNetFormatError(f"filters of shape {filter_shape} on {channels} channels")
    size = filters * channels * rows * cols
    if use_bias:
        if bias_shape != (1, filters, 1, 1) or params.size != size + filters:
            raise DlibNetFormatError(f"convolution biases {bias_shape} with {params.size} parameters")
        bias = params[size:]
    else:
        if params.size != size:
            raise DlibNetFormatError(f"convolution with {params.size} parameters, expected {size}")
        bias = np.zeros(filters, dtype=np.float32)
    return params[:size].reshape(filters, channels, rows, cols), bias, padding


def _read_affine(reader: _Reader, channels: int) -> tuple[F32, F32]:
    # (dlib also accepts a batch norm layer here and converts it; the shipped file has none, so such
    # a file is refused and left to dlib)
    version = reader.expect_string("an affine layer", "affine_", "affine_2")
    params = reader.tensor()
    gamma_shape, beta_shape = reader.shape(), reader.shape()
    if gamma_shape != (1, channels, 1, 1) or beta_shape != gamma_shape or params.size != 2 * channels:
        raise DlibNetFormatError(f"affine layer {gamma_shape} {beta_shape} on {channels} channels")
    gamma, beta = params[:channels], params[channels:]
    if reader.integer() != 0:  # layer mode: 0 is CONV_MODE, per channel
        raise DlibNetFormatError("an affine layer that is not per channel")
    if version == "affine_2" and reader.boolean():
        raise DlibNetFormatError("a disabled affine layer")
    return gamma, beta


def _read_relu(reader: _Reader) -> None:
    if reader.expect_string("a relu", "relu_", "relu_2") == "relu_2" and reader.boolean():
        raise DlibNetFormatError("a disabled relu")


def _read_pool(reader: _Reader, spec: _Spec) -> None:
    name = "max_pool_2" if spec.kind == "max_pool" else "avg_pool_2"
    reader.expect_string("a pooling layer", name)
    rows, cols = reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    pad_y, pad_x = reader.integer(), reader.integer()
    padding = _padding(spec.window, spec.stride)
    if (rows, cols, stride_y, stride_x, pad_y, pad_x) != (
        spec.window,
        spec.window,
        spec.stride,
        spec.stride,
        padding,
        padding,
    ):
        raise DlibNetFormatError(f"pool {rows}x{cols}/{stride_y} pad {pad_y}, expected {spec}")


def _read_fc(reader: _Reader, spec: _Spec, inputs: int) -> F32:
    version = reader.expect_string("a fully connected layer", "fc_2", "fc_3")
    outputs, n_in = reader.integer(), reader.integer()
    params = reader.tensor()
    weight_shape = reader.shape()
    reader.shape()  # biases (unused without them)
    if reader.integer() != 1:  # FC_NO_BIAS
        raise DlibNetFormatError("a fully connected layer with biases")
    for _ in range(4):
        reader.scalar()
    if version == "fc_3":
        reader.boolean()
    if (outputs, n_in) != (spec.filters, inputs) or weight_shape != (inputs, outputs, 1, 1):
        raise DlibNetFormatError(
            f"fully connected {n_in} -> {outputs} {weight_shape}, expected {inputs} -> {spec.filters}"
        )
    if params.size != inputs * outputs:
        raise DlibNetFormatError(f"fully connected layer with {params.size} parameters")
    return params.reshape(inputs, outputs)


def _read_layer_state(reader: _Reader, version: int, *, input_layer: bool) -> None:
    """What an ``add_layer`` writes after its layer: flags and (empty at rest) training tensors."""
    for _ in range(3):
        reader.boolean()
    reader.tensor()  # x_grad
    reader.tensor()  # cached output
    if input_layer:
        reader.tensor()  # grad_final
        if version >= 3:
            reader.integer()  # sample expansion factor
    elif version >= 2:
        reader.tensor()  # params_grad


@dataclass(frozen=True, slots=True)
class FaceNet:
    """The descriptor network's weights, ready for :meth:`describe`."""

    mean_rgb: F32  # subtracted from each pixel before scaling by 1/256, as dlib's input layer does
    ops: tuple[_Op, ...]
    fc: F32  # (256, 128)

    def describe(self, chip: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The 128-d descriptor of a 150x150 RGB face chip (as cut by ``dlib.get_face_chip``)."""
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"a face chip is {CHIP_SIZE}x{CHIP_SIZE}x3, not {chip.shape}")
        x: F32 = (chip.astype(np.float32) - self.mean_rgb) / np.float32(256.0)
        tags: dict[int, F32] = {}
        for op in self.ops:
            kind = op.spec.kind
            if op.conv is not None:
                x = _convolve(x, op.conv)
            elif kind == "relu":
                # in place: every relu here follows a convolution or an add, whose output is new
                x = np.maximum(x, np.float32(0.0), out=x)
            elif kind in ("max_pool", "avg_pool"):
                x = _pool(x, op.spec)
            elif kind == "tag":
                tags[op.spec.tag] = x
            elif kind == "skip":
                x = tags[op.spec.tag]
            elif kind == "add_prev":
                x = _add(x, tags[op.spec.tag])
        return (x.reshape(-1) @ self.fc).astype(np.float32)


def _windows(x: F32, window: int, stride: int) -> F32:
    """A read-only view (rows, cols, window, window, channels) of every window of an (H, W, C) map."""
    rows = (x.shape[0] - window) // stride + 1
    cols = (x.shape[1] - window) // stride + 1
    step_r, step_c, step_ch = x.strides
    return as_strided(
        x,
        shape=(rows, cols, window, window, x.shape[2]),
        strides=(step_r * stride, step_c * stride, step_r, step_c, step_ch),
        writeable=False,
    )


def _convolve(x: F32, conv: _Conv) -> F32:
    if conv.padding:
        p = conv.padding
        x = np.pad(x, ((p, p), (p, p), (0, 0)))
    windows = _windows(x, conv.window, conv.stride)
    rows, cols = windows.shape[:2]
    # im2col: one row per output pixel, in (row, column, channel) order like the weights' rows
    out: F32 = windows.reshape(rows * cols, -1) @ conv.weights
    out += conv.bias
    return out.reshape(rows, cols, -1)


def _pool(x: F32, spec: _Spec) -> F32:
    """dlib's max or average pool; the reader checked that this network pads none of them."""
    if spec.window == 0:  # the whole input
        return cast(F32, x.mean(axis=(0, 1), keepdims=True, dtype=np.float32))
    windows = _windows(x, spec.window, spec.stride)
    if spec.kind == "max_pool":
        return cast(F32, windows.max(axis=(2, 3)))
    return cast(F32, windows.mean(axis=(2, 3), dtype=np.float32))


def _add(a: F32, b: F32) -> F32:
    """dlib's add of two tensors of different shape: the larger shape, the missing part zero."""
    if a.shape == b.shape:
        return a + b
    shape = tuple(max(i, j) for i, j in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, dtype=np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out


def _fold(weights: F32, bias: F32, gamma: F32, beta: F32, padding: int, spec: _Spec) -> _Conv:
    """A convolution followed by a per-channel affine, as one convolution (in float64, then float32)."""
    w = weights.astype(np.float64) * gamma.astype(np.float64)[:, None, None, None]
    b = bias.astype(np.float64) * gamma + beta
    # (filters, channels, k, k) -> (k, k, channels, filters) -> (k * k * channels, filters)
    matrix = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
    return _Conv(
        np.ascontiguousarray(matrix, dtype=np.float32),
        b.astype(np.float32),
        spec.window,
        spec.stride,
        padding,
    )


def _parse(data: bytes) -> FaceNet:
    reader = _Reader(data)
    specs = _network()
    reader.expect_version("the loss layer", 1)
    if reader.expect_string("the metric loss", "loss_metric_", "loss_metric_2") == "loss_metric_2":
        reader.scalar()  # margin
        reader.scalar()  # distance threshold
    # one version per wrapper, outermost first; tag and skip wrappers are version 1
    versions: list[int] = []
    for spec in reversed(specs):
        if spec.kind in ("tag", "skip"):
            versions.append(reader.expect_version(f"a {spec.kind} layer", 1))
        elif spec is specs[0]:
            versions.append(reader.expect_version("the first layer", 2, 3))
        else:
            versions.append(reader.expect_version(f"a {spec.kind} layer", 1, 2))
    versions.reverse()
    reader.expect_string("the input layer", "input_rgb_image_sized")
    mean_rgb = np.asarray([reader.scalar(), reader.scalar(), reader.scalar()], dtype=np.float32)
    if (reader.integer(), reader.integer()) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibNetFormatError(f"the input layer is not {CHIP_SIZE}x{CHIP_SIZE}")

    ops: list[_Op] = []
    fc: F32 | None = None
    channels, tag_channels = 3, {}
    pending: tuple[F32, F32, int] | None = None  # a convolution waiting for its affine
    for index, (spec, version) in enumerate(zip(specs, versions, strict=True)):
        if spec.kind == "tag":
            tag_channels[spec.tag] = channels
            ops.append(_Op(spec))
            continue
        if spec.kind == "skip":
            channels = tag_channels[spec.tag]
            ops.append(_Op(spec))
            continue
        if spec.kind == "con":
            pending = _read_con(reader, spec, channels)
            channels = spec.filters
        elif spec.kind == "affine":
            if pending is None:
                raise DlibNetFormatError("an affine layer that does not follow a convolution")
            gamma, beta = _read_affine(reader, channels)
            weights, bias, padding = pending
            ops.append(_Op(specs[index - 1], _fold(weights, bias, gamma, beta, padding, specs[index - 1])))
            pending = None
        elif spec.kind == "relu":
            _read_relu(reader)
            ops.append(_Op(spec))
        elif spec.kind in ("max_pool", "avg_pool"):
            _read_pool(reader, spec)
            ops.append(_Op(spec))
        elif spec.kind == "add_prev":
            reader.expect_string("an add layer", "add_prev_")
            channels = max(channels, tag_channels[spec.tag])
            ops.append(_Op(spec))
        elif spec.kind == "fc":
            fc = _read_fc(reader, spec, channels)
        _read_layer_state(reader, version, input_layer=index == 0)
    if fc is None or pending is not None:
        raise DlibNetFormatError("the network ends early")
    if reader.pos != len(data):
        raise DlibNetFormatError(f"{len(data) - reader.pos} bytes left after the network")
    return FaceNet(mean_rgb, tuple(ops), fc.copy())  # a copy: a view would keep the whole file alive


def read_face_net(path: Path) -> FaceNet:
    """Read ``dlib_face_recognition_resnet_model_v1.dat``; DlibNetFormatError if it is not that net."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibNetFormatError(f"cannot read {path.name}: {exc}") from exc
    return _parse(data)

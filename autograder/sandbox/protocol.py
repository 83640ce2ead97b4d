"""Wire format shared by the trusted runner and the sandboxed child.

This file is also mounted read-only into the sandbox as ``sandbox_protocol``,
so it imports nothing but the standard library and NumPy.

A message is a JSON header followed by zero or more ``.npy`` blobs, each frame
prefixed by its length as an 8-byte big-endian integer::

    [len][header JSON] [len][npy 0] [len][npy 1] ...

The header names how many arrays follow (``"n_arrays"``). Values inside the
header are JSON, with objects used only as tagged markers:

    {"$array": i}                 the i-th array (``"scalar": true``: a NumPy scalar)
    {"$tuple": [...]}             a tuple
    {"$dict": [[key, value], ...]} a dict (keys: JSON scalars)
    {"$dtype": "float32", "type": bool}   np.dtype("float32") or the type np.float32
    {"$generator": state}         a np.random.Generator(PCG64) with that state
    {"$handle": n}                an object that stays in the child (a reference)
    {"$global": name}             a name in the student's namespace (requests only)

Decoding on the trusted side is strict (`decode_npy`, `MAX_DEPTH`): the child
is untrusted, so nothing it sends is ever unpickled or executed.
"""

from __future__ import annotations

import io
import json
import re
import struct

import numpy as np

LENGTH = struct.Struct(">Q")
MAX_DEPTH = 32
NUMERIC_KINDS = "biufc"


class ProtocolError(Exception):
    """The other side sent something that breaks the protocol or its limits."""


# ------------------------------------------------------------------ frames

def pack_message(header: dict, arrays: list) -> list:
    """Header dict + list of ndarrays -> buffers to write in order (array data is not copied)."""
    header = json.dumps(dict(header, n_arrays=len(arrays)), separators=(",", ":")).encode()
    buffers = [LENGTH.pack(len(header)) + header]
    for array in arrays:
        array = array if array.flags.c_contiguous else array.copy(order="C")
        npy_header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            npy_header, np.lib.format.header_data_from_array_1_0(array))
        data = memoryview(array.reshape(-1).view(np.uint8))
        buffers += [LENGTH.pack(npy_header.tell() + array.nbytes) + npy_header.getvalue(), data]
    return buffers


def drop_written(pending: list, written: int) -> None:
    """Remove the first ``written`` bytes from ``pending`` (memoryviews given to os.writev)."""
    while written:
        step = min(written, len(pending[0]))
        written -= step
        pending[0] = pending[0][step:]
        if not len(pending[0]):
            pending.pop(0)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two arrays hold bit-identical data (NaN == NaN, -0.0 != 0.0)."""
    return (a.shape == b.shape and a.dtype == b.dtype and
            np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)))


def unpack_message(read_exact, *, max_bytes: int, max_header_bytes: int = 4 << 20,
                   max_arrays: int = 10_000):
    """Read one message with ``read_exact(n) -> bytes``; return (header, raw npy blobs).

    ``max_bytes`` bounds the whole message, ``max_header_bytes`` its JSON part.
    """
    budget = [max_bytes]

    def frame(limit):
        (size,) = LENGTH.unpack(read_exact(LENGTH.size))
        if size > min(limit, budget[0]):
            raise ProtocolError(f"a message part of {size} bytes exceeds the limit of "
                                f"{min(limit, budget[0])} bytes.")
        budget[0] -= size
        return read_exact(size)

    try:
        header = json.loads(frame(max_header_bytes))
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"invalid JSON header: {str(error)[:200]}") from None
    if not isinstance(header, dict) or type(header.get("n_arrays")) is not int:
        raise ProtocolError("the header must be a JSON object with an integer 'n_arrays'.")
    if not 0 <= header["n_arrays"] <= max_arrays:
        raise ProtocolError(f"too many arrays in one message: {header['n_arrays']}.")
    return header, [frame(max_bytes) for _ in range(header["n_arrays"])]


def decode_npy(blob: bytes, *, max_elements: int) -> np.ndarray:
    """Strictly parse one ``.npy`` blob into a plain, writable, native-order ndarray.

    A writable ``blob`` (bytearray) is used as the array's memory, without a copy.

    Only numeric dtypes (bool, int, uint, float, complex) without fields are accepted;
    the data length must match the header exactly. Never unpickles.
    """
    parsed = _parse_simple_header(blob)
    if parsed is not None:
        shape, fortran, dtype, offset = parsed
    else:
        shape, fortran, dtype, offset = _parse_any_header(blob)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(f"arrays must have a numeric dtype. Received: dtype={dtype}.")
    count = 1
    for n in shape:
        count *= n
    if count > max_elements:
        raise ProtocolError(f"an array of {count} elements exceeds the limit of {max_elements}.")
    if len(blob) - offset != count * dtype.itemsize:
        raise ProtocolError("the .npy data length does not match its header.")
    if count == 0:
        return np.empty(shape, dtype.newbyteorder("="))
    flat = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape, order="F" if fortran else "C")
    if not dtype.isnative:
        return array.astype(dtype.newbyteorder("="))
    return array if array.flags.writeable else array.copy()  # a bytearray blob: no copy


# The exact header NumPy writes for a plain array (version 1.0): parsed without ast.
_SIMPLE_HEADER = re.compile(
    rb"\{'descr': '([<>|=][bifuc][0-9]{1,2})', 'fortran_order': (True|False), "
    rb"'shape': \(((?:[0-9]{1,12}, )*[0-9]{0,12},?)\), \} *\n")


def _parse_simple_header(blob):
    if blob[:8] != b"\x93NUMPY\x01\x00" or len(blob) < 10:
        return None
    size = int.from_bytes(blob[8:10], "little")
    match = _SIMPLE_HEADER.fullmatch(bytes(blob[10:10 + size]))
    if match is None:
        return None
    descr, fortran, dims = match.groups()
    try:
        dtype = np.dtype(descr.decode())
    except TypeError:
        return None  # e.g. '<i3': let the full parser reject it
    shape = tuple(int(d) for d in dims.split(b",") if d.strip())
    return shape, fortran == b"True", dtype, 10 + size


def _parse_any_header(blob):
    stream = io.BytesIO(blob)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ProtocolError(f"unsupported .npy version {version}.")
        shape, fortran, dtype = read_header(stream)
    except ProtocolError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure is a protocol error
        raise ProtocolError(f"invalid .npy header: {str(error)[:200]}") from None
    return shape, fortran, dtype, stream.tell()


# ------------------------------------------------------------------ values

def encode_value(value, arrays: list, encode_other, _ids=None, _depth=0):
    """Python value -> JSON-able structure; arrays are appended to ``arrays``.

    The same ndarray object passed twice is sent once, so aliasing survives.
    ``encode_other(value)`` handles anything else (a handle, or raise TypeError).
    """
    ids = {} if _ids is None else _ids
    if _depth > MAX_DEPTH:
        raise TypeError(f"values nested deeper than {MAX_DEPTH} levels cannot be sent.")
    if value is None or isinstance(value, (bool, int, float, str)):
        if type(value) not in (type(None), bool, int, float, str):
            return encode_other(value)  # e.g. an int subclass with a custom __eq__
        return value
    if (isinstance(value, np.ndarray) and value.dtype.kind in NUMERIC_KINDS
            and value.dtype.fields is None):
        if id(value) not in ids:
            ids[id(value)] = len(arrays)
            arrays.append(np.asarray(value))
        return {"$array": ids[id(value)]}
    if isinstance(value, np.generic) and value.dtype.kind in NUMERIC_KINDS:
        arrays.append(np.asarray(value))
        return {"$array": len(arrays) - 1, "scalar": True}
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return {"$dtype": np.dtype(value).name, "type": isinstance(value, type)}
    if type(value) is np.random.Generator and type(value.bit_generator) is np.random.PCG64:
        return {"$generator": value.bit_generator.state}
    if type(value) in (list, tuple):
        items = [encode_value(v, arrays, encode_other, ids, _depth + 1) for v in value]
        return items if type(value) is list else {"$tuple": items}
    if type(value) is dict and all(type(k) in (str, int, float, bool, type(None)) for k in value):
        return {"$dict": [[k, encode_value(v, arrays, encode_other, ids, _depth + 1)]
                          for k, v in value.items()]}
    return encode_other(value)


def decode_value(data, arrays: list, decode_marker, _depth=0):
    """Inverse of `encode_value`. ``decode_marker(obj)`` handles $handle/$global markers."""
    if _depth > MAX_DEPTH:
        raise ProtocolError(f"values nested deeper than {MAX_DEPTH} levels.")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode_value(v, arrays, decode_marker, _depth + 1) for v in data]
    if type(data) is not dict or len(data) == 0:
        raise ProtocolError(f"unexpected JSON value of type {type(data).__name__}.")
    if "$array" in data:
        index = data["$array"]
        if type(index) is not int or not 0 <= index < len(arrays):
            raise ProtocolError(f"array reference {index!r} out of range.")
        return arrays[index][()] if data.get("scalar") is True else arrays[index]
    if "$tuple" in data and type(data["$tuple"]) is list:
        return tuple(decode_value(v, arrays, decode_marker, _depth + 1) for v in data["$tuple"])
    if "$dict" in data and type(data["$dict"]) is list:
        pairs = data["$dict"]
        if not all(type(p) is list and len(p) == 2 and
                   type(p[0]) in (str, int, float, bool, type(None)) for p in pairs):
            raise ProtocolError("malformed dict.")
        return {k: decode_value(v, arrays, decode_marker, _depth + 1) for k, v in pairs}
    if "$dtype" in data:
        try:
            dtype = np.dtype(str(data["$dtype"]))
        except Exception:  # noqa: BLE001 - numpy raises several types for bad names
            raise ProtocolError(f"unknown dtype {str(data['$dtype'])[:50]!r}.") from None
        if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
            raise ProtocolError(f"only numeric dtypes may be sent. Received: {dtype}.")
        return dtype.type if data.get("type") is True else dtype
    if "$generator" in data:
        generator = np.random.Generator(np.random.PCG64())
        try:
            generator.bit_generator.state = data["$generator"]
        except (TypeError, ValueError, KeyError) as error:
            raise ProtocolError(f"invalid generator state: {str(error)[:100]}") from None
        return generator
    return decode_marker(data)

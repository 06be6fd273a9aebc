"""Typed values as bytes, so what goes into Redis comes back equal and of the same type.

One tag byte, then the value: `n` null, `b` boolean, `i` int, `F` float (8 bytes IEEE 754:
exact, with nan/inf and -0.0), `s` string, `t` naive timestamp and `z` UTC timestamp (epoch
microseconds), `d` date, `D` decimal, `B` bytes, and `j` JSON for arrays, maps and structs
(with the same tags inside, so nested timestamps, decimals and non-string map keys survive).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from featurelake.errors import OnlineStoreError
from featurelake.online.values import EPOCH, EPOCH_UTC, ONE_MICRO
from featurelake.schema import DataType

NULL = b"n"
_DOUBLE = struct.Struct("<d")
_pack_double = _DOUBLE.pack
_unpack_double = _DOUBLE.unpack


def encode(value: Any) -> bytes:
    """The bytes of one feature value."""
    if value is None:
        return NULL
    kind = type(value)
    if kind is float:
        return b"F" + _pack_double(value)
    if kind is int:
        return b"i" + str(value).encode()
    if kind is str:
        return b"s" + value.encode()
    if kind is bool:
        return b"b1" if value else b"b0"
    return _encode_other(value)


def _encode_other(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"b1" if value else b"b0"
    if isinstance(value, int):
        return b"i" + str(int(value)).encode()
    if isinstance(value, float):
        return b"F" + _pack_double(float(value))
    if isinstance(value, str):
        return b"s" + str(value).encode()
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return b"z" + str((value - EPOCH_UTC) // ONE_MICRO).encode()
        return b"t" + str((value - EPOCH) // ONE_MICRO).encode()
    if isinstance(value, date):
        return b"d" + value.isoformat().encode()
    if isinstance(value, Decimal):
        return b"D" + str(value).encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return b"B" + bytes(value)
    if _is_missing(value):
        return NULL
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", 0) == 0:  # numpy scalar
        return encode(item())
    return b"j" + json.dumps(_tree(value), separators=(",", ":"), allow_nan=True).encode()


def _is_missing(value: Any) -> bool:
    return type(value).__name__ in ("NaTType", "NAType")


def _tree(value: Any) -> Any:
    """A JSON-able form; non-JSON types become one-key objects such as {"$t": micros}."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"$f": repr(float(value))}
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return {"$z": (value - EPOCH_UTC) // ONE_MICRO}
        return {"$t": (value - EPOCH) // ONE_MICRO}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$D": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$B": base64.b64encode(bytes(value)).decode()}
    as_dict = getattr(value, "asDict", None)  # a Spark Row (struct)
    if as_dict is not None:
        return {"$s": [[k, _tree(v)] for k, v in as_dict().items()]}
    if isinstance(value, Mapping):
        return {"$m": [[_tree(k), _tree(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [_tree(v) for v in value]
    if _is_missing(value):
        return None
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if tolist is not None:
        return _tree(tolist())
    raise OnlineStoreError(
        f"The value {value!r} of type {type(value).__name__} cannot be stored online.",
        fix="store ints, floats, strings, booleans, timestamps, dates, decimals, arrays, maps "
        "or structs of them.",
    )


def _untree(value: Any) -> Any:
    if isinstance(value, list):
        return [_untree(v) for v in value]
    if isinstance(value, dict):
        ((tag, inner),) = value.items()
        if tag == "$t":
            return EPOCH + timedelta(microseconds=inner)
        if tag == "$z":
            return EPOCH_UTC + timedelta(microseconds=inner)
        if tag == "$d":
            return date.fromisoformat(inner)
        if tag == "$D":
            return Decimal(inner)
        if tag == "$f":
            return float(inner)
        if tag == "$B":
            return base64.b64decode(inner)
        if tag == "$s":
            return {k: _untree(v) for k, v in inner}
        if tag == "$m":
            return {_untree_key(k): _untree(v) for k, v in inner}
    return value


def _untree_key(value: Any) -> Any:
    decoded = _untree(value)
    return tuple(decoded) if isinstance(decoded, list) else decoded


def _int(raw: bytes) -> int:
    return int(raw[1:])


def _float(raw: bytes) -> float:
    return float(raw[1:])


def _double(raw: bytes) -> float:
    return float(_unpack_double(raw[1:])[0])


def _str(raw: bytes) -> str:
    return raw[1:].decode()


def _bool(raw: bytes) -> bool:
    return raw[1:] == b"1"


def _timestamp(raw: bytes) -> datetime:
    return EPOCH + timedelta(microseconds=int(raw[1:]))


def _timestamp_utc(raw: bytes) -> datetime:
    return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(raw[1:]))


def _date(raw: bytes) -> date:
    return date.fromisoformat(raw[1:].decode())


def _decimal(raw: bytes) -> Decimal:
    return Decimal(raw[1:].decode())


def _bytes(raw: bytes) -> bytes:
    return raw[1:]


def _json(raw: bytes) -> Any:
    return _untree(json.loads(raw[1:]))


def _null(raw: bytes) -> None:
    return None


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    ord("n"): _null,
    ord("i"): _int,
    ord("f"): _float,
    ord("F"): _double,
    ord("s"): _str,
    ord("b"): _bool,
    ord("t"): _timestamp,
    ord("z"): _timestamp_utc,
    ord("d"): _date,
    ord("D"): _decimal,
    ord("B"): _bytes,
    ord("j"): _json,
}


def bulk(raw: bytes) -> bytes:
    """`raw` framed as a Redis protocol bulk string."""
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


_NULL_BULK = bulk(NULL)
_TRUE_BULK = bulk(b"b1")
_FALSE_BULK = bulk(b"b0")


def _doubles(values: list[Any]) -> list[bytes]:
    return [_NULL_BULK if v is None else b"$9\r\nF%s\r\n" % _pack_double(v) for v in values]


def _ints(values: list[Any]) -> list[bytes]:
    return [_NULL_BULK if v is None else bulk(b"i%d" % v) for v in values]


def _strings(values: list[Any]) -> list[bytes]:
    return [_NULL_BULK if v is None else bulk(b"s" + v.encode()) for v in values]


def _booleans(values: list[Any]) -> list[bytes]:
    return [_NULL_BULK if v is None else (_TRUE_BULK if v else _FALSE_BULK) for v in values]


def _any(values: list[Any]) -> list[bytes]:
    return [bulk(encode(v)) for v in values]


_COLUMN_ENCODERS: dict[DataType, Callable[[list[Any]], list[bytes]]] = {
    DataType.DOUBLE: _doubles,
    DataType.FLOAT: _doubles,
    DataType.INT: _ints,
    DataType.BIGINT: _ints,
    DataType.STRING: _strings,
    DataType.BOOLEAN: _booleans,
}


def column_bulk_encoder(kind: DataType) -> Callable[[list[Any]], list[bytes]]:
    """Encode and frame a whole column whose values already have the feature's Python type."""
    return _COLUMN_ENCODERS.get(kind, _any)


def decode(raw: bytes) -> Any:
    """The value of bytes made by `encode`."""
    try:
        return _DECODERS[raw[0]](raw)
    except (KeyError, IndexError, ValueError, struct.error) as error:
        raise OnlineStoreError(
            f"An online value could not be read back ({raw[:40]!r}).",
            fix="the key was written by something other than featurelake; delete it and sync "
            "the group again (featurelake sync-online).",
        ) from error

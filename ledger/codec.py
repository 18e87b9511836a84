"""Canonical msgpack: one value, exactly one byte string.

Theory of operation. ``pack`` writes msgpack with the smallest integer and
length forms (msgpack's own packer always does), ``bin`` for bytes, ``str``
for text, and maps in the order their keys were inserted. Records are maps
whose keys follow a fixed schema order (``Field`` lists below), with optional
fields left out rather than written as nil.

``unpack`` accepts a byte string only if re-packing the decoded value gives
the same bytes back. That single check refuses non-minimal integers and
lengths, str/bin confusion and, together with the duplicate-key hook, maps
whose keys repeat. Floats, extension types and trailing bytes are refused
explicitly. ``check_record`` then holds a decoded map to a schema: key order,
no unknown or missing keys, types, sizes and ranges.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import msgpack

from ledger.errors import EncodingError

Value: TypeAlias = (
    "bool | int | bytes | str | list[Value] | tuple[Value, ...] | dict[str, Value]"
    " | None"
)

# Large enough for a 10,000-entry submission; anything bigger is refused
# before msgpack allocates for it.
MAX_ENCODED_SIZE: Final = 16 * 1024 * 1024
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1


# One packer per thread: ``msgpack.packb`` builds a new one per call, which
# costs about as much as the packing. A failed ``pack`` leaves it reset. Its
# buffer keeps the largest size it ever grew to, so after a large value (a
# block's undo record runs to megabytes) the thread starts a fresh one.
_local = threading.local()
_PACKER_BUFFER: Final = 4096
_KEEP_PACKER_BELOW: Final = 64 * 1024


def pack(value: Value) -> bytes:
    """The canonical encoding of ``value`` (dict keys in insertion order)."""
    packer: msgpack.Packer | None = getattr(_local, "packer", None)
    if packer is None:
        # buf_size is in msgpack's Packer, not yet in its type stubs.
        packer = msgpack.Packer(
            use_bin_type=True,
            buf_size=_PACKER_BUFFER,  # type: ignore[call-arg]
        )
        _local.packer = packer
    try:
        out: bytes = packer.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode value: {exc}") from exc
    if len(out) >= _KEEP_PACKER_BELOW:
        _local.packer = None
    return out


def _pairs_hook(pairs: list[tuple[object, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, val in pairs:
        if not isinstance(key, str):
            raise EncodingError("map key is not a string")
        if key in out:
            raise EncodingError(f"duplicate map key {key!r}")
        if isinstance(val, float):
            raise EncodingError(f"float in field {key!r}")
        out[key] = val
    return out


def _list_hook(items: list[object]) -> list[object]:
    for item in items:
        if isinstance(item, float):
            raise EncodingError("float in array")
    return items


def _ext_hook(code: int, data: bytes) -> object:
    raise EncodingError(f"extension type {code} is not allowed")


# What a canonical value is made of. msgpack decodes extension type -1 as
# a Timestamp without asking ext_hook, and a float or a Timestamp packs
# back to itself, so the re-pack cannot see them: they are refused here.
_SCALARS: Final = frozenset({str, bytes, int, bool, type(None)})


def _kind_error(value: object, where: str) -> EncodingError:
    if type(value) is float:
        return EncodingError(f"float {where}")
    if isinstance(value, msgpack.Timestamp):
        return EncodingError(f"extension type -1 (timestamp) {where}")
    return EncodingError(f"{type(value).__name__} {where}")


def _check_kinds(value: object) -> None:
    """Only maps with string keys, arrays, strings, bytes, integers, booleans
    and nil, at any depth."""
    stack = [value]
    if type(value) not in _SCALARS and type(value) not in (dict, list):
        raise _kind_error(value, "value")
    while stack:
        item = stack.pop()
        if type(item) is dict:
            for key, val in item.items():
                if type(key) is not str:
                    raise EncodingError("map key is not a string")
                vkind = type(val)
                if vkind is dict or vkind is list:
                    stack.append(val)
                elif vkind not in _SCALARS:
                    raise _kind_error(val, f"in field {key!r}")
        elif type(item) is list:
            for val in item:
                vkind = type(val)
                if vkind is dict or vkind is list:
                    stack.append(val)
                elif vkind not in _SCALARS:
                    raise _kind_error(val, "in array")


_STR_ONLY: Final = frozenset({str})


def _flat(value: dict[object, object]) -> bool:
    """Whether ``value`` is a map of scalars under string keys, which
    ``_check_kinds`` accepts: most records, checked without a loop."""
    return _STR_ONLY.issuperset(map(type, value)) and _SCALARS.issuperset(
        map(type, value.values())
    )


def _decode(data: bytes | bytearray | memoryview, *, hooks: bool) -> object:
    try:
        if hooks:
            return msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                object_pairs_hook=_pairs_hook,
                list_hook=_list_hook,
                ext_hook=_ext_hook,
            )
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_ext_hook)
    except EncodingError:
        raise
    except msgpack.ExtraData as exc:
        raise EncodingError("trailing bytes after the value") from exc
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException) as exc:
        raise EncodingError(f"not valid msgpack: {exc}") from exc


def unpack(data: bytes, *, max_size: int = MAX_ENCODED_SIZE) -> Value:
    """Decode ``data``, refusing anything but a canonical encoding."""
    if type(data) is not bytes and not isinstance(data, bytearray | memoryview):
        raise EncodingError("expected bytes")
    size = len(data)
    if size > max_size:
        raise EncodingError(f"encoding of {size} bytes exceeds {max_size}")
    if size == 0:
        raise EncodingError("empty input")
    # Decoded without per-map hooks (the hot path: every leaf of every
    # block); a duplicate key collapses in the dict, so the re-pack below
    # differs and refuses it. Only then is it decoded again with the hooks,
    # to say precisely what was wrong.
    value = _decode(data, hooks=False)
    if type(value) is not dict or not _flat(value):
        _check_kinds(value)
    if pack(value) != bytes(data):  # type: ignore[arg-type]
        _decode(data, hooks=True)
        raise EncodingError("not the canonical encoding (non-minimal form?)")
    return value  # type: ignore[return-value]


def array_length(data: bytes, key: str) -> int:
    """The length of the array under ``key`` in the encoded map ``data``,
    read without decoding the array's items.

    For bytes already known to be canonical (they were decoded before, say
    when their block was applied): it checks nothing else. EncodingError if
    ``data`` is not a map holding an array under ``key``.
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_ENCODED_SIZE)
    try:
        unpacker.feed(data)
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == key:
                length: int = unpacker.read_array_header()
                return length
            unpacker.skip()
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException) as exc:
        raise EncodingError(f"no array under {key!r}: {exc}") from exc
    raise EncodingError(f"no array under {key!r}")


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a record schema.

    ``kind`` is the Python type the value must have (``bool`` is not an
    ``int`` here). ``size`` pins the exact length of bytes; ``max_len``
    bounds bytes, str and list lengths; ``low``/``high`` bound integers.
    """

    name: str
    kind: type
    optional: bool = False
    size: int | None = None
    max_len: int | None = None
    low: int = 0
    high: int = INT_MAX


def _check_field(field: Field, val: Value, what: str) -> None:
    kind = field.kind
    ok = isinstance(val, kind) and not (kind is int and isinstance(val, bool))
    if kind is list and isinstance(val, tuple):
        ok = True
    if not ok:
        raise EncodingError(
            f"{what}.{field.name}: expected {kind.__name__}, got {type(val).__name__}"
        )
    number = val if isinstance(val, int) and not isinstance(val, bool) else None
    if number is not None and not field.low <= number <= field.high:
        raise EncodingError(f"{what}.{field.name}: {number} out of range")
    if isinstance(val, bytes) and field.size is not None and len(val) != field.size:
        raise EncodingError(
            f"{what}.{field.name}: expected {field.size} bytes, got {len(val)}"
        )
    sized = val if isinstance(val, bytes | str | list | tuple | dict) else None
    if sized is not None and field.max_len is not None and len(sized) > field.max_len:
        raise EncodingError(f"{what}.{field.name}: longer than {field.max_len}")
    if isinstance(val, str) and field.max_len is None and len(val) > 4096:
        raise EncodingError(f"{what}.{field.name}: string too long")


def check_record(value: Value, fields: Sequence[Field], what: str) -> dict[str, Value]:
    """Hold a decoded map to ``fields``: order, presence, types and bounds.

    Returns the map unchanged so callers can read typed fields from it.
    """
    if not isinstance(value, dict):
        raise EncodingError(f"{what}: expected a map")
    names = [f.name for f in fields]
    unknown = [k for k in value if k not in names]
    if unknown:
        raise EncodingError(f"{what}: unknown field {unknown[0]!r}")
    order = [k for k in names if k in value]
    if list(value) != order:
        raise EncodingError(f"{what}: fields out of order")
    for field in fields:
        if field.name not in value:
            if not field.optional:
                raise EncodingError(f"{what}: missing field {field.name!r}")
            continue
        _check_field(field, value[field.name], what)
    return value


def build_record(fields: Sequence[Field], values: dict[str, Value]) -> dict[str, Value]:
    """A map in schema order with ``None`` optionals left out."""
    out: dict[str, Value] = {}
    for field in fields:
        val = values.get(field.name)
        if val is None:
            if not field.optional:
                raise EncodingError(f"missing field {field.name!r}")
            continue
        out[field.name] = val
    return out


def is_u64(value: Value) -> bool:
    """Whether ``value`` is an int field's value with the default bounds
    (not a bool): what the decoders' fast paths check without ``Field``."""
    return type(value) is int and 0 <= value <= INT_MAX


def get_int(rec: dict[str, Value], name: str) -> int:
    val = rec[name]
    assert isinstance(val, int)
    return val


def get_opt_int(rec: dict[str, Value], name: str) -> int | None:
    val = rec.get(name)
    assert val is None or isinstance(val, int)
    return val


def get_bytes(rec: dict[str, Value], name: str) -> bytes:
    val = rec[name]
    assert isinstance(val, bytes)
    return val


def get_opt_bytes(rec: dict[str, Value], name: str) -> bytes | None:
    val = rec.get(name)
    assert val is None or isinstance(val, bytes)
    return val


def get_str(rec: dict[str, Value], name: str) -> str:
    val = rec[name]
    assert isinstance(val, str)
    return val


def get_opt_str(rec: dict[str, Value], name: str) -> str | None:
    val = rec.get(name)
    assert val is None or isinstance(val, str)
    return val


def get_list(rec: dict[str, Value], name: str) -> list[Value]:
    val = rec[name]
    assert isinstance(val, list | tuple)
    return list(val)

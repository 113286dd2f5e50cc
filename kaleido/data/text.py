"""Decoding Fashion-Gen byte strings: UTF-8 first, a documented fallback for the rest.

Some Fashion-Gen descriptions are not valid UTF-8 (they were stored as Windows-1252). We decode
strictly as UTF-8; on failure we decode as **cp1252** with ``errors="replace"`` (so the five
byte values cp1252 leaves undefined become U+FFFD), and the caller counts the row as a
fallback. Latin-1 would never fail but maps cp1252's curly quotes and dashes (0x80-0x9F) to
invisible control characters; cp1252 gets those right.
"""

from __future__ import annotations

FALLBACK_ENCODING = "cp1252"


def decode(raw: bytes | bytearray | memoryview | str) -> tuple[str, bool]:
    """(text, used_fallback) for one byte string; surrounding whitespace and NULs are stripped."""
    if isinstance(raw, str):
        return raw.strip("\x00").strip(), False
    data = bytes(raw).rstrip(b"\x00")
    try:
        return data.decode("utf-8").strip(), False
    except UnicodeDecodeError:
        return data.decode(FALLBACK_ENCODING, errors="replace").strip(), True


def decode_field(value: object) -> tuple[str, bool]:
    """Decode an HDF5 text cell, which h5py returns as ``bytes`` or a length-1 array of bytes."""
    if hasattr(value, "shape") and getattr(value, "shape", ()) != ():
        value = value.reshape(-1)[0]  # (1,) row of an (N, 1) dataset
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return decode(value)
    if hasattr(value, "tobytes"):  # numpy.bytes_ scalar
        return decode(value.tobytes())
    return str(value).strip(), False

#!/usr/bin/python3
"""Writes numpy_written.safetensors and numpy_written.json, a fixture for
peft/safetensors_test.go made independently of gopeft: the safetensors
format written by hand with numpy (no safetensors package), following the
format's specification (8-byte little-endian header length, JSON header,
data buffer with offsets relative to it, row-major little-endian).

The .json file holds, for each tensor, its shape and its values as numpy
decodes them, each a float.hex() string (exact, and able to say inf/nan).

Run from this directory:  /usr/bin/python3 make_fixture.py
The output is deterministic.
"""
import json
import struct

import numpy as np


def bf16(values):
    """float32 -> bfloat16 bit patterns, rounded to nearest, ties to even."""
    a = np.asarray(values, dtype=np.float32)
    u = np.atleast_1d(a).view(np.uint32).astype(np.uint64)
    s16, one = np.uint64(16), np.uint64(1)
    r = (u + np.uint64(0x7FFF) + ((u >> s16) & one)) >> s16
    return r.astype(np.uint16).reshape(a.shape)


def bf16_decode(bits):
    u = np.atleast_1d(bits).astype(np.uint32) << np.uint32(16)
    return u.view(np.float32).astype(np.float64).reshape(np.shape(bits))


with np.errstate(over="ignore"):
    tensors = {
        # name: (dtype tag, shape, raw little-endian array, decoded float64)
        "f32_matrix": np.arange(12, dtype=np.float32).reshape(3, 4) * np.float32(0.5) - np.float32(2.25),
        "f64_vector": np.array([np.pi, -np.e, 1e-300, 1e300, -0.0], dtype=np.float64),
        "f16_matrix": np.array([[0.1, -1 / 3, 65504.0], [1e-7, 70000.0, 2.5]], dtype=np.float16),
        "f32_3d": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11) / np.float32(8),
        "bias": np.array([1.5, -0.25, np.inf, -np.inf], dtype=np.float32),
        "i64_vector": np.array([-3, 0, 7], dtype=np.int64),
        "u8_matrix": np.array([[0, 255], [17, 128]], dtype=np.uint8),
    }
entries = {}
for name, a in tensors.items():
    tag = {np.float32: "F32", np.float64: "F64", np.float16: "F16",
           np.int64: "I64", np.uint8: "U8"}[a.dtype.type]
    entries[name] = (tag, list(a.shape), a.astype(a.dtype.newbyteorder("<")).tobytes(),
                     a.astype(np.float64))
bits = bf16(np.float32(np.pi))
entries["bf16_scalar"] = ("BF16", [], bits.astype("<u2").tobytes(), bf16_decode(bits))
bits = bf16(np.array([[1.0, -3.140625, 1e38], [2 ** -130, 0.3, -0.0]], dtype=np.float32))
entries["bf16_matrix"] = ("BF16", [2, 3], bits.astype("<u2").tobytes(), bf16_decode(bits))

# Data in reverse name order, so that file order differs from name order.
header, data, expected = {}, b"", {}
for name in sorted(entries, reverse=True):
    tag, shape, raw, dec = entries[name]
    header[name] = {"dtype": tag, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
    expected[name] = {"shape": shape, "values": [float(v).hex() for v in np.ravel(dec)]}
header["__metadata__"] = {"format": "pt", "made_by": "make_fixture.py (numpy)"}
h = json.dumps(header, sort_keys=True).encode()
h += b" " * (-len(h) % 8)
with open("numpy_written.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
with open("numpy_written.json", "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")

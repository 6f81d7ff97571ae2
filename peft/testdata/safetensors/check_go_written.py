#!/usr/bin/python3
"""Reads a safetensors file written by gopeft, by hand with numpy (no
safetensors package), and checks it against the float64 values it was
written from: peft/safetensors_test.go's TestSafetensorsPythonReadsGo runs

    /usr/bin/python3 check_go_written.py EXPECTED.json FILE...

where EXPECTED.json maps each tensor name to {"shape": [...], "values":
[float.hex strings of the float64 values before conversion]} and
"__metadata__" to the expected metadata. F64 must be exact; F32 and F16 must
have the bits numpy's own float64 -> float32/float16 conversions give; BF16
(which numpy lacks) must be the nearest bfloat16, ties to even, checked in
exact rational arithmetic. Prints "ok N" (N values checked in all the
files) or fails with a message naming the file.
"""
import json
import struct
import sys
from fractions import Fraction

import numpy as np

exp_path, paths = sys.argv[1], sys.argv[2:]
errors = []
path = ""


def fail(msg):
    errors.append("%s: %s" % (path, msg))


def bf16_value(bits):
    return float(np.array([int(bits) << 16], dtype=np.uint32).view(np.float32)[0])


def bf16_ok(x, bits):
    """bits is the nearest bfloat16 to x, ties to even."""
    v = bf16_value(bits)
    if np.isnan(x):
        return np.isnan(v)
    if np.isinf(x):
        return v == x
    if np.isinf(v):  # overflow: x must be at least max + half an ulp
        big = Fraction(2 - 2 ** -8) * Fraction(2) ** 127
        return abs(Fraction(x)) >= big and np.sign(v) == np.sign(x)
    fx, fv = Fraction(x), Fraction(v)
    for nb in (int(bits) - 1, int(bits) + 1):
        if nb < 0 or nb > 0xFFFF:
            continue
        w = bf16_value(nb)
        if np.isnan(w) or np.isinf(w) or (nb ^ int(bits)) & 0x8000:
            continue
        d_v, d_w = abs(fx - fv), abs(fx - Fraction(w))
        if d_w < d_v or (d_w == d_v and int(bits) & 1):
            return False
    return True


count = 0
for path in paths:
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    expected = json.load(open(exp_path))
    meta = header.pop("__metadata__", None)
    if meta != expected.pop("__metadata__", None):
        fail("metadata %r differs" % (meta,))
    if sorted(header) != sorted(expected):
        fail("names %r, want %r" % (sorted(header), sorted(expected)))
    for name, h in header.items():
        if name not in expected:
            continue
        b, e = h["data_offsets"]
        raw = data[b:e]
        want = np.array([float.fromhex(s) for s in expected[name]["values"]])
        if h["shape"] != expected[name]["shape"]:
            fail("%s: shape %r, want %r" % (name, h["shape"], expected[name]["shape"]))
        dt = h["dtype"]
        if dt == "F64":
            got = np.frombuffer(raw, dtype="<u8")
            ok = got == want.view(np.uint64)
            ok |= np.isnan(want) & np.isnan(got.view(np.float64))
        elif dt == "F32":
            got = np.frombuffer(raw, dtype="<u4")
            with np.errstate(over="ignore"):
                ok = got == want.astype(np.float32).view(np.uint32)
            ok |= np.isnan(want) & np.isnan(got.view(np.float32))
        elif dt == "F16":
            got = np.frombuffer(raw, dtype="<u2")
            with np.errstate(over="ignore"):
                ok = got == want.astype(np.float16).view(np.uint16)
            ok |= np.isnan(want) & np.isnan(got.view(np.float16))
        elif dt == "BF16":
            got = np.frombuffer(raw, dtype="<u2")
            ok = np.array([bf16_ok(x, g) for x, g in zip(want, got)])
        else:
            fail("%s: unexpected dtype %s" % (name, dt))
            continue
        if len(got) != len(want):
            fail("%s: %d values, want %d" % (name, len(got), len(want)))
            continue
        for i in np.flatnonzero(~ok)[:5]:
            fail("%s[%d] (%s): bits %#x for %r" % (name, i, dt, int(got[i]), want[i]))
        count += len(want)
if errors:
    sys.exit("\n".join(errors))
print("ok", count)

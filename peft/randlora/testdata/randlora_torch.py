#!/usr/bin/python3
"""Recomputes, with PyTorch in float64, the output and ΔW of a RandLoRA
adapter that gopeft saved, the way HuggingFace PEFT's RandLoRA layer
computes them (src/peft/tuners/randlora: layer.py's UniqueBaseGrad,
get_scaled_bases, get_delta_weight and Linear.forward; model.py's
_find_dim), so that randlora_test.go's TestTorchCrossCheck can compare them
with gopeft's.

    /usr/bin/python3 randlora_torch.py DIR

DIR holds adapter/ (what peft.SaveAdapter wrote) and io.json: for each
module its base weight W (d×k), bias (d) and an input x (n×k), as float.hex
strings. The script checks the file's names and shapes, the shared bases
in the 3-D shapes of PEFT's buffers (randlora_A [r, 1, m_max], randlora_B
[M_max, n_max, r]), which it uses as they are, then prints as JSON, per
module, the adapted output (evaluation mode: no dropout) and ΔW, as
float.hex strings.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    """Returns {name: float64 tensor} of the safetensors file at path: an
    8-byte little-endian header length, the JSON header, the raw data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    kinds = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
    out = {}
    for name, e in header.items():
        if e["dtype"] not in kinds:
            sys.exit(f"{name}: dtype {e['dtype']} not handled by this script")
        start, end = e["data_offsets"]
        a = np.frombuffer(data[start:end], dtype=kinds[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(a.astype(np.float64))
    return out


def tensor(values, shape):
    return torch.tensor([float.fromhex(v) for v in values]).reshape(shape)


def hexes(t):
    return [float(v).hex() for v in t.reshape(-1).tolist()]


def num_bases(min_dim, r):
    # PEFT: min_dim / r, rounded up.
    n = min_dim / r
    return int(n) if n.is_integer() else int(n) + 1


root = sys.argv[1]
adir = os.path.join(root, "adapter")
cfg = json.load(open(os.path.join(adir, "adapter_config.json")))
io = json.load(open(os.path.join(root, "io.json")))
if cfg["peft_type"] != "RANDLORA" or cfg["save_projection"] is not True:
    sys.exit(f"peft_type {cfg['peft_type']}, save_projection {cfg['save_projection']}: want RANDLORA, true")
r = cfg["r"]
scaling = cfg["randlora_alpha"] / r
mods = cfg["target_modules"]
if sorted(mods) != sorted(io["modules"]):
    sys.exit(f"target_modules {mods}, io.json has {sorted(io['modules'])}")
sd = read_safetensors(os.path.join(adir, "adapter_model.safetensors"))

# The shared bases are sized as PEFT's _find_dim and
# _init_randlora_A_randlora_B size them.
out_max = max(io["modules"][m]["W_shape"][0] for m in mods)
in_max = max(io["modules"][m]["W_shape"][1] for m in mods)
max_dim, min_dim = max(out_max, in_max), min(out_max, in_max)
n_max = num_bases(min_dim, r)
want = {"base_model.randlora_A": (r, 1, min_dim), "base_model.randlora_B": (max_dim, n_max, r)}
for m in mods:
    d, k = io["modules"][m]["W_shape"]
    n = num_bases(min(d, k), r)
    want[f"base_model.model.{m}.randlora_lambda"] = (r, n)
    want[f"base_model.model.{m}.randlora_gamma"] = (n, min(d, k))
if set(sd) != set(want):
    sys.exit(f"tensors {sorted(sd)}, want {sorted(want)}")
for name, shape in want.items():
    if tuple(sd[name].shape) != shape:
        sys.exit(f"{name}: shape {tuple(sd[name].shape)}, want {shape}")

randlora_A = sd["base_model.randlora_A"]  # (r, 1, min_dim), as PEFT's buffer
randlora_B = sd["base_model.randlora_B"]  # (max_dim, n_max, r)

result = {"outputs": {}, "deltas": {}}
with torch.no_grad():
    for m in mods:
        e = io["modules"][m]
        out_features, in_features = e["W_shape"]
        W, bias = tensor(e["W"], (out_features, in_features)), tensor(e["bias"], (out_features,))
        x = tensor(e["x"], e["x_shape"])
        lam = sd[f"base_model.model.{m}.randlora_lambda"]  # (r, n)
        gam = sd[f"base_model.model.{m}.randlora_gamma"]  # (n, min)
        lo, hi = min(out_features, in_features), max(out_features, in_features)
        n = num_bases(lo, r)
        # get_scaled_bases
        sliced_A = randlora_A[:, :n, :lo]  # (r, 1, lo): A's middle dimension is 1
        sliced_B = randlora_B[:hi, :n, :]  # (hi, n, r)
        update_B = sliced_B.flatten(start_dim=1)  # (hi, n·r)
        update_A = (lam[:, :, None] * sliced_A * gam[None]).flatten(end_dim=1)  # (r·n, lo)
        if lo == in_features:
            first, second = update_A, update_B
        else:
            first, second = update_B.T, update_A.T
        # forward (PEFT names the pair update_B, update_A here)
        h = F.linear(x, W, bias) + F.linear(F.linear(x, first), second) * scaling
        # get_delta_weight
        delta = (first.T @ second.T).T * scaling
        result["outputs"][m] = hexes(h)
        result["deltas"][m] = hexes(delta)
print(json.dumps(result))

#!/usr/bin/python3
"""Recomputes, with PyTorch in float64, the output of a VeRA adapter that
gopeft saved, following HuggingFace PEFT's VeRA (src/peft/tuners/vera:
layer.py's Linear.forward and get_delta_weight, model.py's _find_dim), so
that vera_test.go's TestTorchCrossCheck can compare it with gopeft's.

    /usr/bin/python3 vera_torch.py DIR

DIR holds adapter/ (what peft.SaveAdapter wrote) and io.json: for each
module its base weight W (d×k), bias (d) and an input x (n×k), as float.hex
strings. The script checks the file against PEFT's layout (peft_type VERA,
save_projection true, per module base_model.model.<module>.vera_lambda_b [d]
and .vera_lambda_d [r], shared base_model.vera_A [r, k_max] and
base_model.vera_B [d_max, r], with k_max and d_max the largest in and out
widths among target_modules, nothing else), then prints as JSON, per module,
the adapted output

    h = x·Wᵀ + bias + λ_b ⊙ ((λ_d ⊙ (x·A[:, :k]ᵀ))·B[:d, :]ᵀ)

and ΔW = (λ_b ⊙ B[:d, :]) @ (λ_d ⊙ A[:, :k]), as float.hex strings. There
is no dropout (evaluation mode) and no scaling factor, as in PEFT.
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    """Returns {name: float64 tensor} of the file at path."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        return {k: v.to(torch.float64) for k, v in load_file(path).items()}
    # No safetensors package: parse the format by hand. An 8-byte
    # little-endian header length, the JSON header, then the raw data.
    import numpy as np

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


def tensor(hexes, shape):
    return torch.tensor([float.fromhex(v) for v in hexes]).reshape(shape)


def hexes(t):
    return [float(v).hex() for v in t.reshape(-1).tolist()]


root = sys.argv[1]
adir = os.path.join(root, "adapter")
cfg = json.load(open(os.path.join(adir, "adapter_config.json")))
io = json.load(open(os.path.join(root, "io.json")))
if cfg["peft_type"] != "VERA" or cfg["save_projection"] is not True:
    sys.exit(f"peft_type {cfg['peft_type']}, save_projection {cfg['save_projection']}: want VERA, true")
r = cfg["r"]
mods = cfg["target_modules"]
if sorted(mods) != sorted(io["modules"]):
    sys.exit(f"target_modules {mods}, io.json has {sorted(io['modules'])}")
sd = read_safetensors(os.path.join(adir, "adapter_model.safetensors"))

# The shared projections are sized as PEFT's _find_dim sizes them.
d_max = max(io["modules"][m]["W_shape"][0] for m in mods)
k_max = max(io["modules"][m]["W_shape"][1] for m in mods)
want = {"base_model.vera_A": (r, k_max), "base_model.vera_B": (d_max, r)}
for m in mods:
    d = io["modules"][m]["W_shape"][0]
    want[f"base_model.model.{m}.vera_lambda_b"] = (d,)
    want[f"base_model.model.{m}.vera_lambda_d"] = (r,)
if set(sd) != set(want):
    sys.exit(f"tensors {sorted(sd)}, want {sorted(want)}")
for name, shape in want.items():
    if tuple(sd[name].shape) != shape:
        sys.exit(f"{name}: shape {tuple(sd[name].shape)}, want {shape}")

vera_A, vera_B = sd["base_model.vera_A"], sd["base_model.vera_B"]
result = {"outputs": {}, "deltas": {}}
with torch.no_grad():
    for m in mods:
        e = io["modules"][m]
        d, k = e["W_shape"]
        W, bias = tensor(e["W"], (d, k)), tensor(e["bias"], (d,))
        x = tensor(e["x"], e["x_shape"])
        lambda_b = sd[f"base_model.model.{m}.vera_lambda_b"]
        lambda_d = sd[f"base_model.model.{m}.vera_lambda_d"]
        sliced_A = vera_A[:, :k]  # (r, k)
        sliced_B = vera_B[:d, :]  # (d, r)
        h = F.linear(x, W, bias) + lambda_b * F.linear(lambda_d * F.linear(x, sliced_A), sliced_B)
        delta = (lambda_b.unsqueeze(-1) * sliced_B) @ (lambda_d.unsqueeze(-1) * sliced_A)
        result["outputs"][m] = hexes(h)
        result["deltas"][m] = hexes(delta)
print(json.dumps(result))

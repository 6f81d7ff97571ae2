#!/usr/bin/python3
"""Loads, with PyTorch, what gopeft saved, the way a PEFT user would, and
checks that the outputs are gopeft's. peft/peftformat_test.go's
TestTorchLoadsGoAdapters runs

    /usr/bin/python3 torch_load_go.py DIR

where DIR holds base.safetensors (SaveModel of an MLP), one adapter directory
per method (SaveAdapter) and io.json: the MLP's sizes, an input x and
gopeft's output for each adapter directory (float.hex strings).

No peft or safetensors package is available, so this script reads the files
by hand and rebuilds, as torch modules, the parameter layout of PEFT's
layers (tuners/lora/layer.py: base_layer, lora_A/lora_B ModuleDicts of
nn.Linear, lora_magnitude_vector ModuleDict of a module with .weight;
tuners/adalora/layer.py: lora_A/lora_B/lora_E/ranknum ParameterDicts) under
base_model.model, then inserts the adapter name into the saved keys as
PEFT's set_peft_model_state_dict does and loads them with load_state_dict:
an unexpected key, a missing adapter parameter or a wrong shape fails.
The forward passes follow PEFT's. Prints "ok N" or exits with a message.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

torch.set_default_dtype(torch.float64)
ADAPTER = "default"


def read_safetensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    header.pop("__metadata__", None)
    kinds = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype=kinds[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(a.astype(np.float64))
    return out


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.n = len(sizes) - 1
        for i in range(1, len(sizes)):
            setattr(self, f"fc{i}", nn.Linear(sizes[i - 1], sizes[i]))

    def forward(self, x):
        for i in range(1, self.n + 1):
            x = getattr(self, f"fc{i}")(x)
            if i < self.n:
                x = torch.relu(x)
        return x


class Magnitude(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out))


class LoraLinear(nn.Module):
    """PEFT's lora.Linear parameter layout and forward (no dropout)."""

    def __init__(self, base, r, alpha, rslora, dora):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict({ADAPTER: nn.Linear(base.in_features, r, bias=False)})
        self.lora_B = nn.ModuleDict({ADAPTER: nn.Linear(r, base.out_features, bias=False)})
        self.dora = dora
        if dora:
            self.lora_magnitude_vector = nn.ModuleDict({ADAPTER: Magnitude(base.out_features)})
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r

    def forward(self, x):
        A, B = self.lora_A[ADAPTER].weight, self.lora_B[ADAPTER].weight
        s = self.scaling
        if not self.dora:
            return self.base_layer(x) + s * (x @ A.T @ B.T)
        W = self.base_layer.weight
        norm = (W + s * B @ A).norm(p=2, dim=1).detach()
        g = self.lora_magnitude_vector[ADAPTER].weight / norm
        return self.base_layer(x) + (g - 1) * (x @ W.T) + g * s * (x @ A.T @ B.T)


class AdaLoraLinear(nn.Module):
    """PEFT's adalora.SVDLinear parameter layout and forward (no dropout)."""

    def __init__(self, base, r, init_r, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ParameterDict({ADAPTER: nn.Parameter(torch.zeros(r, base.in_features))})
        self.lora_B = nn.ParameterDict({ADAPTER: nn.Parameter(torch.zeros(base.out_features, r))})
        self.lora_E = nn.ParameterDict({ADAPTER: nn.Parameter(torch.zeros(r, 1))})
        self.ranknum = nn.ParameterDict({ADAPTER: nn.Parameter(torch.tensor([float(init_r)]), requires_grad=False)})
        self.scaling = alpha if alpha > 0 else float(r)

    def forward(self, x):
        A, B, E = self.lora_A[ADAPTER], self.lora_B[ADAPTER], self.lora_E[ADAPTER]
        return self.base_layer(x) + (x @ (A * E).T @ B.T) * self.scaling / (self.ranknum[ADAPTER] + 1e-5)


def pattern(p, module, default):
    for key in sorted(p or {}):
        if key == module or module.endswith("." + key):
            return p[key]
    return default


def load(root, sub, sizes, base_sd):
    mlp = MLP(sizes)
    mlp.load_state_dict(base_sd, strict=True)  # names and PyTorch shapes
    d = os.path.join(root, sub)
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    saved = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    for m in cfg["target_modules"]:
        base = getattr(mlp, m)
        if cfg["peft_type"] == "LORA":
            r = pattern(cfg["rank_pattern"], m, cfg["r"])
            alpha = pattern(cfg["alpha_pattern"], m, cfg["lora_alpha"])
            layer = LoraLinear(base, r, alpha, cfg["use_rslora"], cfg["use_dora"])
        else:
            kept = (cfg["rank_pattern"] or {}).get(m + ".lora_E")
            r = sum(kept) if kept else cfg["init_r"]
            layer = AdaLoraLinear(base, r, cfg["init_r"], cfg["lora_alpha"])
        setattr(mlp, m, layer)
    model = nn.Module()
    model.base_model = nn.Module()
    model.base_model.model = mlp
    # Insert the adapter name, as set_peft_model_state_dict does.
    sd = {}
    for k, v in saved.items():
        if k.endswith(".weight"):
            k = k[: -len(".weight")] + f".{ADAPTER}.weight"
        elif k.endswith("lora_magnitude_vector"):
            k = k + f".{ADAPTER}.weight"
        else:
            k = k + f".{ADAPTER}"
        sd[k] = v
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected:
        sys.exit(f"{sub}: unexpected keys {unexpected}")
    adapter_missing = [k for k in missing if "base_layer" not in k and "ranknum" not in k]
    if adapter_missing:
        sys.exit(f"{sub}: adapter parameters not in the file: {adapter_missing}")
    return model.base_model.model


root = sys.argv[1]
io = json.load(open(os.path.join(root, "io.json")))
x = torch.tensor([float.fromhex(v) for v in io["x"]]).reshape(io["x_shape"])
base_sd = read_safetensors(os.path.join(root, "base.safetensors"))
count = 0
for sub, want_hex in sorted(io["outputs"].items()):
    model = load(root, sub, io["sizes"], base_sd)
    with torch.no_grad():
        got = model(x)
    want = torch.tensor([float.fromhex(v) for v in want_hex]).reshape(got.shape)
    err = (got - want).abs().max().item()
    if not err <= 1e-12 * max(1.0, want.abs().max().item()):
        sys.exit(f"{sub}: torch's output differs from gopeft's by {err}")
    count += 1
print("ok", count)

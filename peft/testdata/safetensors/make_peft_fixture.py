#!/usr/bin/python3
"""Writes, under peft/, HuggingFace PEFT adapter directories made by hand with
numpy (no peft, torch or safetensors package), reproducing PEFT's layout:
adapter_config.json (LoraConfig / AdaLoraConfig fields, as PEFT's
save_pretrained writes them: sorted keys, indent 2) and
adapter_model.safetensors with PEFT's tensor names (src/peft/utils/
save_and_load.py strips the adapter name):

  LoRA     base_model.model.<module>.lora_A.weight (r, in), .lora_B.weight (out, r)
  DoRA     + base_model.model.<module>.lora_magnitude_vector (out,)
  AdaLoRA  base_model.model.<module>.lora_A (r, in), .lora_B (out, r), .lora_E (r, 1),
           truncated to the kept triplets listed in rank_pattern["<module>.lora_E"]

for an MLP fc1 (5 -> 7), ReLU, fc2 (7 -> 4) whose base weights are in
peft/base_mlp.safetensors (names fc1.weight (7, 5), fc1.bias (7,), ...).
peft/expected.json holds an input x (4, 5) and, for the base model and each
adapter, the output computed here with numpy following PEFT's forward passes
(tuners/lora/layer.py, tuners/lora/dora.py, tuners/adalora/layer.py), as
float.hex strings.

Run from this directory:  /usr/bin/python3 make_peft_fixture.py
"""
import json
import os
import struct

import numpy as np

rng = np.random.default_rng(20240229)  # always the same seed
OUT = "peft"
TAGS = {np.dtype("float64"): "F64", np.dtype("float32"): "F32"}


def write_safetensors(path, tensors, metadata=None):
    header, data = {}, b""
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": TAGS[a.dtype], "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def write_config(d, cfg):
    os.makedirs(os.path.join(OUT, d), exist_ok=True)
    with open(os.path.join(OUT, d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def hexes(a):
    return [float(v).hex() for v in np.ravel(a)]


sizes = {"fc1": (7, 5), "fc2": (4, 7)}  # (out, in)
base = {}
for m, (o, i) in sizes.items():
    bound = 1 / np.sqrt(i)
    base[m + ".weight"] = rng.uniform(-bound, bound, (o, i))
    base[m + ".bias"] = rng.uniform(-bound, bound, (o,))
write_safetensors(os.path.join(OUT, "base_mlp.safetensors"), base, {"format": "pt"})
x = rng.normal(size=(4, 5))


def mlp(layer):
    """Runs the MLP with layer(module, h) giving each Linear's output."""
    h = np.maximum(layer("fc1", x), 0)
    return layer("fc2", h)


def plain(m, h):
    return h @ base[m + ".weight"].T + base[m + ".bias"]


expected = {"x": hexes(x), "x_shape": list(x.shape), "base": hexes(mlp(plain))}

common = {  # PeftConfig / LoraConfig fields PEFT writes, with their defaults
    "auto_mapping": None, "base_model_name_or_path": None, "bias": "none",
    "exclude_modules": None, "fan_in_fan_out": False, "inference_mode": True,
    "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
    "layers_to_transform": None, "loftq_config": {}, "lora_bias": False,
    "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
    "peft_version": "0.17.1", "revision": None, "task_type": None,
    "target_parameters": None, "trainable_token_indices": None,
}

# LoRA with rsLoRA, a rank_pattern and an alpha_pattern.
cfg = dict(common, peft_type="LORA", r=2, lora_alpha=4, lora_dropout=0.1, use_rslora=True,
           use_dora=False, target_modules=["fc2", "fc1"], rank_pattern={"fc2": 3},
           alpha_pattern={"fc2": 6})
write_config("lora_rs", cfg)
lora = {}
for m, (o, i) in sizes.items():
    r = 3 if m == "fc2" else 2
    lora[m] = (rng.normal(size=(r, i)), rng.normal(size=(o, r)) * 0.1,
               (6 if m == "fc2" else 4) / np.sqrt(r))
write_safetensors(os.path.join(OUT, "lora_rs", "adapter_model.safetensors"),
                  {f"base_model.model.{m}.{k}.weight": v for m, (A, B, s) in lora.items()
                   for k, v in (("lora_A", A), ("lora_B", B))}, {"format": "pt"})
expected["lora_rs"] = hexes(mlp(lambda m, h: plain(m, h) + lora[m][2] * (h @ lora[m][0].T @ lora[m][1].T)))

# DoRA: W' = m / ||W + s B A||_row * (W + s B A); the norm is over each row
# (dim=1 of the (out, in) weight).
cfg = dict(common, peft_type="LORA", r=2, lora_alpha=3, lora_dropout=0.0, use_rslora=False,
           use_dora=True, target_modules=["fc1", "fc2"], rank_pattern={}, alpha_pattern={})
write_config("dora", cfg)
dora, tensors = {}, {}
for m, (o, i) in sizes.items():
    A, B = rng.normal(size=(2, i)), rng.normal(size=(o, 2)) * 0.1
    mag = rng.uniform(0.5, 1.5, size=(o,))
    dora[m] = (A, B, mag)
    p = f"base_model.model.{m}."
    tensors.update({p + "lora_A.weight": A, p + "lora_B.weight": B, p + "lora_magnitude_vector": mag})
write_safetensors(os.path.join(OUT, "dora", "adapter_model.safetensors"), tensors, {"format": "pt"})


def dora_layer(m, h):
    A, B, mag = dora[m]
    V = base[m + ".weight"] + (3 / 2) * B @ A
    W = (mag / np.linalg.norm(V, axis=1))[:, None] * V
    return h @ W.T + base[m + ".bias"]


expected["dora"] = hexes(mlp(dora_layer))

# AdaLoRA after its final allocation: kept triplets only, mask in rank_pattern;
# output += (x @ (lora_A * lora_E).T @ lora_B.T) * lora_alpha / (ranknum + 1e-5),
# ranknum = init_r.
kept = {"fc1": [True, False, True, False], "fc2": [True, True, True, False]}
cfg = dict(common, peft_type="ADALORA", r=8, lora_alpha=8, lora_dropout=0.0, use_rslora=False,
           use_dora=False, target_modules=["fc1", "fc2"], init_r=4, target_r=2, tinit=0, tfinal=2,
           deltaT=1, beta1=0.85, beta2=0.85, orth_reg_weight=0.5, total_step=10,
           rank_pattern={m + ".lora_E": k for m, k in kept.items()}, alpha_pattern={})
write_config("adalora", cfg)
ada, tensors = {}, {}
for m, (o, i) in sizes.items():
    k = sum(kept[m])
    Q, P, E = rng.normal(size=(k, i)), rng.normal(size=(o, k)), rng.normal(size=(k, 1))
    ada[m] = (Q, P, E)
    p = f"base_model.model.{m}."
    tensors.update({p + "lora_A": Q, p + "lora_B": P, p + "lora_E": E})
write_safetensors(os.path.join(OUT, "adalora", "adapter_model.safetensors"), tensors, {"format": "pt"})
expected["adalora"] = hexes(mlp(lambda m, h: plain(m, h) + (h @ (ada[m][0] * ada[m][2]).T @ ada[m][1].T) * 8 / (4 + 1e-5)))

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")

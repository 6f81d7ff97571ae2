"""PyTorch peer of gopeft's peft benchmarks (peft/bench_test.go).

Times, in the same shapes as the Go benchmarks:
  gpt_lora   one AdamW training step of the tiny GPT (peft.TinyGPTConfig: V=96, T=64,
             2 blocks, 4 heads, C=64, MLP 256) on 16 sequences of 64 characters,
             with LoRA r=8 (alpha 16) on the attention projections q, k, v, o
  gpt_full   the same step training every parameter
  mlp_epoch  one epoch (22 steps of 64 rows, 1348 rows) of LoRA r=8 on fc1, fc2 of the
             64-64-10 digits MLP
Usage: python3 torch_peer.py THREADS [SECONDS]
Prints one line per case and dtype: name dtype wall_seconds_per_op cpu_seconds_per_op
(CPU time of the whole process, all threads: on a shared machine it tells the code's
cost apart from waiting for a core).
Both float64 (gopeft's precision) and float32 are timed. Written for torch 1.13 (Debian's
python3-torch), CPU only.
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRALinear(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(r, base.in_features).uniform_(-1, 1) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        self.s = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.A.t() * self.s) @ self.B.t()


class Block(nn.Module):
    def __init__(self, C, H, hidden):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
        self.fc, self.proj = nn.Linear(C, hidden), nn.Linear(hidden, C)

    def forward(self, x):  # x (B, T, C)
        B, T, C = x.shape
        h = self.ln1(x)
        q, k, v = (f(h).view(B, T, self.H, C // self.H).transpose(1, 2) for f in (self.q, self.k, self.v))  # (B, H, T, hd)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.H)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(a)
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, V=96, T=64, L=2, H=4, C=64, hidden=256):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block(C, H, hidden) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def add_lora(model, names, r, alpha):
    for b in model.blocks:
        for n in names:
            setattr(b, n, LoRALinear(getattr(b, n), r, alpha))


def timeit(step, seconds):
    step()  # warm up
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        step()
        n += 1
        el = time.perf_counter() - start
        if el >= seconds and n >= 3:
            return "%g %g" % (el / n, (time.process_time() - cpu) / n)


def gpt_case(lora, dtype, seconds):
    torch.manual_seed(0)
    m = GPT().to(dtype)
    if lora:
        for p in m.parameters():
            p.requires_grad_(False)
        add_lora(m, ["q", "k", "v", "o"], 8, 16)
        m.to(dtype)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(1)

    def step():
        x = torch.randint(0, 96, (16, 65), generator=g)
        opt.zero_grad(set_to_none=True)
        logits = m(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 96), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1e9)  # gopeft checks gradients each step
        opt.step()

    return timeit(step, seconds)


def mlp_case(dtype, seconds):
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(64, 64).to(dtype), nn.Linear(64, 10).to(dtype)
    l1, l2 = LoRALinear(fc1, 8, 16).to(dtype), LoRALinear(fc2, 8, 16).to(dtype)
    params = [l1.A, l1.B, l2.A, l2.B]
    opt = torch.optim.AdamW(params, lr=1e-3)
    X = torch.rand(1348, 64, dtype=dtype)
    y = torch.randint(0, 10, (1348,))
    g = torch.Generator().manual_seed(1)

    def epoch():
        for _ in range((1348 + 63) // 64):
            idx = torch.randperm(1348, generator=g)[:64]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(l2(F.relu(l1(X[idx]))), y[idx])
            loss.backward()
            opt.step()

    return timeit(epoch, seconds)


def main():
    threads = int(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(threads)
    for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
        print("gpt_lora", name, gpt_case(True, dtype, seconds), flush=True)
        print("gpt_full", name, gpt_case(False, dtype, seconds), flush=True)
        print("mlp_epoch", name, mlp_case(dtype, seconds), flush=True)


if __name__ == "__main__":
    main()

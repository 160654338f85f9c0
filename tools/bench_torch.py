#!/usr/bin/env python3
"""bench_torch.py — the PyTorch peer of `samebits bench`: the same MLPs, batch,
optimizers and thread counts, timed the same way (20 warm-up steps, then the
best of REPS runs of STEPS steps), one JSON object per line.

Thread count: torch.set_num_threads sets ATen's (OpenMP) threads only. Debian's
python3-torch does its matrix products in the system BLAS (OpenBLAS through
libblas.so.3), whose own thread pool ignores that call and uses every core, so
a "1 thread" PyTorch run did its GEMMs on 2 threads. The BLAS that torch loaded
is therefore found in /proc/self/maps and told the same count
(openblas_set_num_threads); each row reports the count the BLAS then holds.

A step here does what a samebits step does: take the next batch from a
per-epoch shuffled order, forward, cross-entropy, backward, optimizer update.

Usage: bench_torch.py [--steps N] [--reps N] [--threads 1,2] [--model NAME]
                      [--optimizer sgd|adam]
"""
import argparse
import ctypes
import json
import time

import torch

MODELS = {  # kept in step with harness/bench.c
    "smoke": dict(widths=[16, 32, 32, 4], act=torch.nn.Tanh, batch=32, samples=512),
    "mlp784": dict(widths=[784, 256, 256, 10], act=torch.nn.ReLU, batch=64, samples=4096),
    # conv(1->8, 3x3, pad 1) relu maxpool2 conv(8->16) relu maxpool2 fc(16*7*7 -> 10)
    "cnn": dict(widths=[784, 0, 0, 10], act=torch.nn.ReLU, batch=32, samples=1024, cnn=True),
    # token sequences: 32 inputs (+1 target) over a vocabulary of 27
    "rnn": dict(widths=[33, 0, 0, 27], batch=16, samples=512, seq="rnn"),
    "transformer": dict(widths=[33, 0, 0, 27], batch=16, samples=512, seq="transformer"),
}


class GRUNet(torch.nn.Module):
    """Embedding(27, 16) → GRU(16, 64), h0 = 0 → Linear(64, 27) at every position."""

    def __init__(self, vocab, embed=16, hidden=64):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.gru = torch.nn.GRU(embed, hidden, batch_first=True)
        self.fc = torch.nn.Linear(hidden, vocab)

    def forward(self, idx):
        h, _ = self.gru(self.embed(idx))
        return self.fc(h)


class Block(torch.nn.Module):
    def __init__(self, c, heads, mlp):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
        self.qkv, self.proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
        self.fc, self.fc_proj = torch.nn.Linear(c, mlp), torch.nn.Linear(mlp, c)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.heads, C // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / D ** 0.5)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.fc_proj(torch.nn.functional.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class TinyGPT(torch.nn.Module):
    """Token + position embedding (64) → 2 pre-norm blocks (4 heads, MLP 256) →
    layer norm → untied head."""

    def __init__(self, vocab, T, c=64, heads=4, layers=2, mlp=256):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(vocab, c), torch.nn.Embedding(T, c)
        self.blocks = torch.nn.ModuleList(Block(c, heads, mlp) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(c)
        self.head = torch.nn.Linear(c, vocab, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def build(m):
    if m.get("seq") == "rnn":
        return GRUNet(m["widths"][-1])
    if m.get("seq") == "transformer":
        return TinyGPT(m["widths"][-1], m["widths"][0] - 1)
    if m.get("cnn"):
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), m["act"](), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), m["act"](), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, m["widths"][-1]))
    layers = []
    w = m["widths"]
    for i in range(len(w) - 1):
        layers.append(torch.nn.Linear(w[i], w[i + 1]))
        if i < len(w) - 2:
            layers.append(m["act"]())
    return torch.nn.Sequential(*layers)


def loaded_openblas():
    """The OpenBLAS this process has mapped (torch's BLAS), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {l.split()[-1] for l in f if "/" in l}
    except OSError:
        return None
    for p in sorted(paths):
        base = p.rsplit("/", 1)[-1]
        if "openblas" in base or base.startswith("libblas.so"):
            try:
                lib = ctypes.CDLL(p)
                lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
                lib.openblas_get_num_threads.restype = ctypes.c_int
                return lib
            except (OSError, AttributeError):
                continue
    return None


def set_threads(threads):
    """ATen's and the BLAS's thread counts; returns the BLAS's (None: not OpenBLAS)."""
    torch.set_num_threads(threads)
    torch.zeros(2, 2) @ torch.zeros(2, 2)  # make sure the BLAS is loaded
    lib = loaded_openblas()
    if lib is None:
        return None
    lib.openblas_set_num_threads(threads)
    return lib.openblas_get_num_threads()


def measure(name, opt_name, threads, steps, reps):
    m = MODELS[name]
    g = torch.Generator().manual_seed(1)
    centres = 3 * torch.randn(m["widths"][-1], m["widths"][0], generator=g)
    y = torch.arange(m["samples"]) % m["widths"][-1]
    x = centres[y] + torch.randn(m["samples"], m["widths"][0], generator=g)
    if m.get("seq"):  # token rows: inputs are the first T, targets the last T
        x = torch.randint(0, m["widths"][-1], (m["samples"], m["widths"][0]), generator=g)
    if m.get("cnn"):
        x = x.reshape(m["samples"], 1, 28, 28)
    model = build(m)
    if opt_name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.001, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    B, N = m["batch"], m["samples"]
    state = {"pos": 0, "order": torch.randperm(N, generator=g)}

    def step():
        if state["pos"] + B > N:
            state["order"] = torch.randperm(N, generator=g)
            state["pos"] = 0
        idx = state["order"][state["pos"]:state["pos"] + B]
        state["pos"] += B
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        if m.get("seq"):
            logits = model(xb[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1))
        else:
            loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    for _ in range(20):
        step()
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = max(best, steps / (time.perf_counter() - t0))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--model", default=None)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default=None)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    for name in MODELS:
        if a.model and a.model != name:
            continue
        for opt in ("sgd", "adam"):
            if a.optimizer and a.optimizer != opt:
                continue
            for t in threads:
                blas_threads = set_threads(t)
                if blas_threads is not None and blas_threads != t:
                    raise SystemExit(f"bench_torch.py: OpenBLAS kept {blas_threads} threads, asked for {t}")
                sps = measure(name, opt, t, a.steps, a.reps)
                print(json.dumps({"impl": "pytorch " + torch.__version__, "model": name,
                                  "optimizer": opt, "threads": t, "batch": MODELS[name]["batch"],
                                  "blas_threads": blas_threads,
                                  "steps_per_s": round(sps, 2)}), flush=True)


if __name__ == "__main__":
    main()

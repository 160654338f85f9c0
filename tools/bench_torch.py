#!/usr/bin/env python3
"""bench_torch.py — the PyTorch peer of `samebits bench`: the same MLPs, batch,
optimizers and thread counts, timed the same way (20 warm-up steps, then the
best of REPS runs of STEPS steps), one JSON object per line.

A step here does what a samebits step does: take the next batch from a
per-epoch shuffled order, forward, cross-entropy, backward, optimizer update.

Usage: bench_torch.py [--steps N] [--reps N] [--threads 1,2] [--model NAME]
"""
import argparse
import json
import time

import torch

MODELS = {  # kept in step with harness/bench.c
    "smoke": dict(widths=[16, 32, 32, 4], act=torch.nn.Tanh, batch=32, samples=512),
    "mlp784": dict(widths=[784, 256, 256, 10], act=torch.nn.ReLU, batch=64, samples=4096),
    # conv(1->8, 3x3, pad 1) relu maxpool2 conv(8->16) relu maxpool2 fc(16*7*7 -> 10)
    "cnn": dict(widths=[784, 0, 0, 10], act=torch.nn.ReLU, batch=32, samples=1024, cnn=True),
}


def build(m):
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


def measure(name, opt_name, threads, steps, reps):
    m = MODELS[name]
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    centres = 3 * torch.randn(m["widths"][-1], m["widths"][0], generator=g)
    y = torch.arange(m["samples"]) % m["widths"][-1]
    x = centres[y] + torch.randn(m["samples"], m["widths"][0], generator=g)
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
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    for name in MODELS:
        if a.model and a.model != name:
            continue
        for opt in ("sgd", "adam"):
            for t in threads:
                sps = measure(name, opt, t, a.steps, a.reps)
                print(json.dumps({"impl": "pytorch " + torch.__version__, "model": name,
                                  "optimizer": opt, "threads": t, "batch": MODELS[name]["batch"],
                                  "steps_per_s": round(sps, 2)}), flush=True)


if __name__ == "__main__":
    main()

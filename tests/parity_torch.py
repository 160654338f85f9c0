#!/usr/bin/python3
"""parity_torch.py — samebits' MLP against PyTorch: the same initial weights
and the same batches must give the same losses, gradients and weights.

Usage: /usr/bin/python3 parity_torch.py SAMEBITS SOURCE_DIR CASE [--measure]

Runs with Debian's python3-torch and python3-numpy (tools/install-deps
--tests installs both); CTest registers each case (tests/parity.cmake).
A missing torch or numpy is a failure, never a skip. --measure prints the
observed errors of every configuration (what the tolerances below were set
from) and always exits 0.

Per configuration (activation × depth × optimizer) a case:
  1. writes a suite into a temp dir;
  2. `samebits train --init-only` → the step-0 weights, and
     `samebits data export` → the batches x [steps, batch, features] and
     y [steps, batch];
  3. `samebits train` on the ref and blas backends (deterministic, 1 thread,
     trace on) → run.json "losses", the trace's step-1 snapshot of
     fc<l>/matmul.bwd_weight and fc<l>/bias.grad, and the final checkpoint;
  4. trains the same model in PyTorch (float32, one thread) from those weights
     on those batches, and writes its final weights and optimizer state under
     samebits' names (fc<l>.weight, optim.momentum.*, optim.m.*, optim.v.*);
  5. compares losses and gradients here, and the final weights with
     `samebits diff --atol --rtol`, whose exit code must be 0.

Safetensors files are read and written by the few lines below (8-byte LE
header length, JSON header, raw little-endian data), not by the safetensors
package: the test venv's numpy 2 cannot load Debian's torch 1.13, so this
script runs outside it.

Not here: dropout (its masks come from samebits' Philox streams and PyTorch
cannot draw them), fast and canonical modes (deterministic mode is the one
whose op order is plain; the others are compared with it elsewhere).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # a failure, not a skip: tools/check installs them
    print(f"parity_torch.py: {e}; install Debian's python3-torch and python3-numpy "
          "(tools/install-deps --tests)", file=sys.stderr)
    sys.exit(1)

SAMEBITS = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
MEASURE = "--measure" in sys.argv

# ---------------------------------------------------------------------------
# Tolerances. Every comparison is numpy.allclose's (and `samebits diff`'s)
# |samebits - torch| <= atol + rtol*|torch|, elementwise, and any NaN or Inf
# on either side fails.
#
# Where the differences come from: both sides compute the same float32
# formulas, but sum in different orders — samebits' ref backend in one fixed
# sequential order, blas through OpenBLAS's blocked SGEMM, PyTorch through its
# own GEMM and vectorised reductions (the loss mean, the bias gradient sum,
# the softmax sum) — and PyTorch's log_softmax, tanh, exp and AdamW's
# mul/add (instead of lerp) round differently. Each such difference is a few
# float32 ULPs (eps = 1.2e-7) of the values summed; later steps carry it
# forward (SGD: linearly — over 5 steps the errors stayed at step 1's size;
# AdamW: amplified where gradients are small, see below).
#
# Observed (--measure, and the same over seeds 1-9 — seed 7 is the one the
# test uses; 12 configurations each: tanh/relu/gelu × 1-2 hidden layers ×
# SGD/AdamW, widths 20-48-5 and 20-48-24-5, batch 32, 5 steps, both
# backends), and the bound set from the worst of all of them. Every bound is
# about 8× that worst case, so another OpenBLAS kernel or PyTorch build
# (other summation blocking) has room, while a real mismatch — a wrong
# formula, a missed term, a 0.1% different learning rate (the failing case
# below shows it fails) — is orders of magnitude above:
#   loss per step:     max |Δ| 4.8e-7 on losses ~1.0-1.8, i.e. ~4 ULP of the
#                      loss (the batch mean of 32 log-sum-exps). Bound 4e-6.
LOSS_ATOL, LOSS_RTOL = 4e-6, 0.0
#   step-1 gradients:  the same inputs on both sides, one step of rounding
#                      only: max |Δ| 2.4e-7 on weight gradients up to ~1.3
#                      (2 ULP of the tensor's largest element; relative to
#                      small elements it is larger, so the bound is absolute,
#                      on the tensor's scale). Bound atol 2e-6.
GRAD_ATOL, GRAD_RTOL = 2e-6, 0.0
#   final weights and optimizer state after 5 steps:
#     SGD (lr 0.1, momentum 0.9, weight decay 0.01): max |Δ| 2.4e-7, on
#       momentum buffers up to ~1.1 and weights up to ~0.5 (1-2 ULP: each
#       step adds lr·buf, so step-1 gradient errors carry over linearly, not
#       amplified). Bound atol 2e-6.
SGD_WEIGHTS_ATOL, SGD_WEIGHTS_RTOL = 2e-6, 0.0
#     AdamW (lr 0.01, betas 0.9/0.999, eps 1e-8, weight decay 0.01): the
#       update lr·m̂/(√v̂ + eps) is normalised by √v̂, so its size is ~lr
#       whatever |g| is, and its error is ~lr × the relative error of g —
#       for a small gradient element (a sum that mostly cancels) that
#       relative error is large, a rounding-sized absolute difference
#       becomes a weight difference of up to a sizeable fraction of lr. That
#       is why these differences vary most between seeds: max |Δ| 7.5e-8 to
#       5.9e-7 (seed 2); at seed 7, 1.2e-7. m and v differ by ≤3e-8 and
#       ≤6e-10. Bound atol 5e-6: ~8× the worst over the seeds, ~40× seed 7's,
#       and still 1/2000 of lr.
ADAM_WEIGHTS_ATOL, ADAM_WEIGHTS_RTOL = 5e-6, 0.0

STEPS, BATCH, FEATURES, CLASSES, SAMPLES, SEED = 5, 32, 20, 5, 512, 7
HIDDEN = {1: [48], 2: [48, 24]}
ACTIVATIONS = ("tanh", "relu", "gelu")
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "adam": {"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
             "weight_decay": 0.01},
}
BACKENDS = ("ref", "blas")


# ---------------------------------------------------------------------------
# safetensors, the few lines this test needs

_DT = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}


def st_read(path):
    """Returns ({name: ndarray}, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[base + a:base + b], dtype=_DT[t["dtype"]])
        out[name] = arr.reshape(t["shape"]).copy()
    return out, meta


def st_write(path, tensors, metadata=None):
    """tensors: {name: float32 ndarray}, written in name order."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---------------------------------------------------------------------------
# trace.sbt (engine/trace.h): 32-byte header, 64-byte records, value blobs,
# footer (u32 length + JSON with the op table)

_REC = np.dtype([("step", "<u4"), ("stage", "<u2"), ("flags", "<u2"), ("op", "<u4"),
                 ("n_out", "<u4"), ("in", "V16"), ("out", "V16"), ("l2", "<f4"),
                 ("maxabs", "<f4"), ("values", "<u8")])
assert _REC.itemsize == 64


def trace_values(path, step):
    """{op name: float32 outputs} of every record of `step` that stores values."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"SBTRACE\0":
        raise AssertionError(f"{path}: not a samebits trace")
    version, rec_size, n, footer = struct.unpack_from("<IIQQ", data, 8)
    if version != 1 or rec_size != 64:
        raise AssertionError(f"{path}: trace version {version}, record size {rec_size}")
    (flen,) = struct.unpack_from("<I", data, footer)
    ops = [o["name"] for o in json.loads(data[footer + 4:footer + 4 + flen])["ops"]]
    recs = np.frombuffer(data, dtype=_REC, count=n, offset=32)
    out = {}
    for r in recs:
        if r["step"] == step and r["values"]:
            off, cnt = int(r["values"]), int(r["n_out"])
            out[ops[r["op"]]] = np.frombuffer(data, dtype="<f4", count=cnt, offset=off).copy()
    return out


# ---------------------------------------------------------------------------
# samebits and PyTorch


def samebits(*args, cwd, expect=0):
    p = subprocess.run([SAMEBITS, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"samebits {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def write_suite(d, act, depth, optim):
    s = {
        "name": f"parity-{act}-{depth}-{optim}",
        "model": {"kind": "mlp", "hidden": HIDDEN[depth], "activation": act},
        "data": {"kind": "blobs", "samples": SAMPLES, "features": FEATURES, "classes": CLASSES,
                 "noise": 1.5, "shuffle": "epoch"},
        "train": {"steps": STEPS, "batch": BATCH, "optimizer": OPTIMIZERS[optim]},
        "matrix": {"seeds": [SEED], "backends": ["ref"], "modes": ["deterministic"], "threads": [1]},
        "checks": [{"name": "repeats", "kind": "repeatable", "expect": "bitwise"}],
    }
    path = os.path.join(d, "suite.json")
    with open(path, "w") as f:
        json.dump(s, f, indent=1)
    return path


def f32(x):
    """A suite's float as samebits holds it (the C side parses into float)."""
    return float(np.float32(x))


def torch_train(act, params, x, y, optim, lr_scale=1.0):
    """PyTorch's run: (losses per step, {param: step-1 grad}, final state
    under samebits' checkpoint names)."""
    torch.set_num_threads(1)
    L = len([k for k in params if k.endswith(".weight")])
    layers = []
    for l in range(1, L + 1):
        w = params[f"fc{l}.weight"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(params[f"fc{l}.bias"]))
        layers.append(lin)
    named = {}
    for l, lin in enumerate(layers, 1):
        named[f"fc{l}.weight"], named[f"fc{l}.bias"] = lin.weight, lin.bias
    o = OPTIMIZERS[optim]
    # hyperparameters as the float32 values samebits trains with
    lr = f32(o["lr"]) * lr_scale
    if optim == "sgd":
        opt = torch.optim.SGD(named.values(), lr=lr, momentum=f32(o["momentum"]),
                              weight_decay=f32(o["weight_decay"]))
    else:  # samebits' adam is decoupled weight decay: PyTorch's AdamW
        opt = torch.optim.AdamW(named.values(), lr=lr, betas=(f32(o["beta1"]), f32(o["beta2"])),
                                eps=f32(o["eps"]), weight_decay=f32(o["weight_decay"]))

    def activation(z):
        if act == "tanh":
            return torch.tanh(z)
        if act == "relu":
            return torch.relu(z)
        return F.gelu(z, approximate="tanh")  # samebits' GELU is the tanh form

    losses, grads1 = [], {}
    for s in range(x.shape[0]):
        a = torch.from_numpy(x[s])
        for l, lin in enumerate(layers, 1):
            a = lin(a)
            if l < L:
                a = activation(a)
        loss = F.cross_entropy(a, torch.from_numpy(y[s].astype(np.int64)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s == 0:
            grads1 = {k: p.grad.detach().numpy().copy() for k, p in named.items()}
        opt.step()
        losses.append(loss.item())
    state = {k: p.detach().numpy().copy() for k, p in named.items()}
    for k, p in named.items():
        st = opt.state[p]
        if optim == "sgd":
            state[f"optim.momentum.{k}"] = st["momentum_buffer"].numpy().copy()
        else:
            state[f"optim.m.{k}"] = st["exp_avg"].numpy().copy()
            state[f"optim.v.{k}"] = st["exp_avg_sq"].numpy().copy()
    return losses, grads1, state


def worst(a, b, atol, rtol):
    """(passes, max |a-b|, index, a, b, bound there) under allclose semantics
    with b the reference; NaN/Inf anywhere fails."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return False, float("inf"), -1, None, None, None
    finite = np.isfinite(a).all() and np.isfinite(b).all()
    d = np.abs(a - b)
    excess = d - (atol + rtol * np.abs(b))
    i = int(np.nanargmax(excess)) if a.size else 0
    ok = finite and bool((excess <= 0).all())
    return ok, float(d.max(initial=0.0)), i, a[i], b[i], atol + rtol * abs(b[i])


class Config:
    """One configuration, run once on the samebits side (both backends) and
    once in PyTorch; compare() returns the failures as strings."""

    def __init__(self, tmp, act, depth, optim):
        self.act, self.depth, self.optim = act, depth, optim
        self.label = f"{act}, {depth} hidden layer{'s' if depth > 1 else ''}, {optim}"
        self.dir = os.path.join(tmp, f"{act}-{depth}-{optim}")
        os.makedirs(self.dir)
        self.suite = write_suite(self.dir, act, depth, optim)
        samebits("train", self.suite, "--out", "init", "--init-only", cwd=self.dir)
        self.init, meta = st_read(os.path.join(self.dir, "init", "weights.safetensors"))
        if meta.get("samebits.step") != "0":
            raise AssertionError(f"{self.label}: --init-only wrote step {meta.get('samebits.step')}")
        self.init = {k: v for k, v in self.init.items() if not k.startswith("optim.")}
        samebits("data", "export", self.suite, "--out", "batches.safetensors", cwd=self.dir)
        b, _ = st_read(os.path.join(self.dir, "batches.safetensors"))
        self.x, self.y = b["x"], b["y"]
        if self.x.shape != (STEPS, BATCH, FEATURES) or self.y.shape != (STEPS, BATCH):
            raise AssertionError(f"{self.label}: export shapes {self.x.shape} {self.y.shape}")
        for be in BACKENDS:
            samebits("train", self.suite, "--out", be, "--backend", be, "--threads", "1",
                     "--mode", "deterministic", cwd=self.dir)

    def compare(self, lr_scale=1.0, report=None):
        losses, grads1, state = torch_train(self.act, self.init, self.x, self.y, self.optim,
                                            lr_scale)
        torch_path = os.path.join(self.dir, f"torch-{lr_scale}.safetensors")
        st_write(torch_path, state, {"producer": f"PyTorch {torch.__version__}"})
        failures = []

        def note(what, ok, d, i, a, b, bound):
            line = (f"{self.label}: {what}: max |samebits - torch| {d:.3g}"
                    f" (at {i}: samebits {a!r}, torch {b!r}, bound {bound!r})")
            if report is not None:
                report.append((what.split(" ")[0], d, line))
            if not ok:
                failures.append(line)

        wa, wr = ((SGD_WEIGHTS_ATOL, SGD_WEIGHTS_RTOL) if self.optim == "sgd"
                  else (ADAM_WEIGHTS_ATOL, ADAM_WEIGHTS_RTOL))
        for be in BACKENDS:
            rd = os.path.join(self.dir, be)
            with open(os.path.join(rd, "run.json")) as f:
                sb_losses = json.load(f)["losses"]
            note(f"losses [{be}] (steps 1..{STEPS})",
                 *worst(sb_losses, losses, LOSS_ATOL, LOSS_RTOL))
            snap = trace_values(os.path.join(rd, "trace.sbt"), 1)
            for l in range(1, self.depth + 2):
                for op, p in ((f"fc{l}/matmul.bwd_weight", f"fc{l}.weight"),
                              (f"fc{l}/bias.grad", f"fc{l}.bias")):
                    if op not in snap:
                        failures.append(f"{self.label}: [{be}] trace has no step-1 values of {op}")
                        continue
                    note(f"gradient [{be}] {op} (step 1)",
                         *worst(snap[op], grads1[p], GRAD_ATOL, GRAD_RTOL))
            sb_state, _ = st_read(os.path.join(rd, "weights.safetensors"))
            if set(sb_state) != set(state):
                failures.append(f"{self.label}: [{be}] tensors differ: samebits {sorted(sb_state)}"
                                f" torch {sorted(state)}")
            for k in sorted(set(sb_state) & set(state)):
                ok, d, i, a, b, bound = worst(sb_state[k], state[k], wa, wr)
                if report is not None:
                    note(f"weights [{be}] {k} (after step {STEPS})", ok, d, i, a, b, bound)
            # the verdict on the weights is samebits' own diff's exit code
            p = samebits("diff", os.path.join(rd, "weights.safetensors"), torch_path,
                         "--atol", repr(wa), "--rtol", repr(wr), cwd=self.dir, expect=None)
            if p.returncode != 0:
                failures.append(f"{self.label}: [{be}] samebits diff --atol {wa} --rtol {wr}"
                                f" exit {p.returncode}:\n{p.stdout}{p.stderr}")
        return failures


# ---------------------------------------------------------------------------
# cases


def run_family(tmp, optim):
    failures = []
    for act in ACTIVATIONS:
        for depth in (1, 2):
            c = Config(tmp, act, depth, optim)
            f = c.compare()
            print(f"{c.label}: {'ok' if not f else 'FAIL'}")
            failures += f
    if failures:
        raise AssertionError("\n".join(failures))


def mlp_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights(tmp):
    run_family(tmp, "sgd")


def mlp_with_adamw_should_match_pytorch_losses_gradients_and_weights(tmp):
    run_family(tmp, "adam")


def parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger(tmp):
    # A 0.1% larger learning rate on the PyTorch side: step 1 (loss,
    # gradients) must still agree — the learning rate has not acted yet — and
    # the later losses and the final weights must not. Shows the tolerances
    # are tight enough to see a small real difference.
    for optim in OPTIMIZERS:
        c = Config(tmp, "tanh", 1, optim)
        if c.compare():
            raise AssertionError(f"{c.label}: fails even with the same learning rate")
        f = c.compare(lr_scale=1.001)
        for be in BACKENDS:
            if not any(f"[{be}] samebits diff" in x for x in f):
                raise AssertionError(f"{c.label}: [{be}] weights agree although PyTorch used lr×1.001")
            if not any(f"losses [{be}]" in x for x in f):
                raise AssertionError(f"{c.label}: [{be}] losses agree although PyTorch used lr×1.001")
            if any(f"gradient [{be}]" in x for x in f):
                raise AssertionError(f"{c.label}: [{be}] step-1 gradients differ with lr×1.001:\n"
                                     + "\n".join(f))
        print(f"{c.label}: lr×1.001 fails as it should ({len(f)} failures)")


def init_only_should_write_the_step_0_checkpoint_training_starts_from(tmp):
    # resuming the --init-only checkpoint must give the bits of a run that
    # never stopped, on both backends; --init-only trains nothing
    d = os.path.join(tmp, "init")
    os.makedirs(d)
    suite = write_suite(d, "tanh", 2, "adam")
    samebits("train", suite, "--out", "init", "--init-only", cwd=d)
    with open(os.path.join(d, "init", "run.json")) as f:
        rj = json.load(f)
    if rj["steps_done"] != 0 or rj["losses"] != [] or rj["checkpoint"] != "weights.safetensors":
        raise AssertionError(f"--init-only run.json: steps_done {rj['steps_done']}, "
                             f"losses {rj['losses']}, checkpoint {rj['checkpoint']!r}")
    if os.path.exists(os.path.join(d, "init", "trace.sbt")):
        raise AssertionError("--init-only wrote a trace")
    for be in BACKENDS:
        samebits("train", suite, "--out", f"full-{be}", "--backend", be, "--no-trace", cwd=d)
        samebits("train", suite, "--out", f"resumed-{be}", "--backend", be, "--no-trace",
                 "--resume", os.path.join("init", "weights.safetensors"), cwd=d)
        samebits("diff", os.path.join(f"full-{be}", "weights.safetensors"),
                 os.path.join(f"resumed-{be}", "weights.safetensors"), cwd=d)
    samebits("train", suite, "--out", "bad", "--init-only", "--resume", "x", cwd=d, expect=2)


def measure(tmp):
    """Prints the worst observed error of each kind over every configuration."""
    rows = []
    for optim in OPTIMIZERS:
        for act in ACTIVATIONS:
            for depth in (1, 2):
                Config(tmp, act, depth, optim).compare(report=rows)
    kinds = {}
    for kind, d, line in rows:
        key = (kind, "sgd" if ", sgd" in line else "adam")
        if key not in kinds or d > kinds[key][0]:
            kinds[key] = (d, line)
    for key in sorted(kinds):
        print(f"worst {key[0]} ({key[1]}): {kinds[key][1]}")


CASES = {f.__name__: f for f in (
    mlp_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights,
    mlp_with_adamw_should_match_pytorch_losses_gradients_and_weights,
    parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger,
    init_only_should_write_the_step_0_checkpoint_training_starts_from,
)}


def main():
    if len(sys.argv) < 4 or (sys.argv[3] not in CASES and not MEASURE):
        print("usage: parity_torch.py SAMEBITS SOURCE_DIR CASE [--measure]\ncases:\n  "
              + "\n  ".join(CASES), file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sb-parity-")
    try:
        if MEASURE:
            measure(tmp)
            return 0
        CASES[sys.argv[3]](tmp)
        print(f"{sys.argv[3]}: ok")
        return 0
    except AssertionError as e:
        print(f"{sys.argv[3]}: FAILED\n{e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

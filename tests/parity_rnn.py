#!/usr/bin/python3
"""parity_rnn.py — samebits' recurrent net (engine/rnn.c) against PyTorch's
nn.Embedding → nn.GRU → nn.Linear: the same initial weights and the same
batches must give the same losses, hidden states, gradients, weights and
optimizer state.

Usage: /usr/bin/python3 parity_rnn.py SAMEBITS SOURCE_DIR CASE
       /usr/bin/python3 parity_rnn.py SAMEBITS SOURCE_DIR measure [--seed=N] [--lr-control]

Runs with Debian's python3-torch and python3-numpy, never with the test venv
(tests/parity.cmake says why); CTest registers each case (tests/rnn.cmake).
A missing torch or numpy is a failure, never a skip. `measure` prints the
observed errors of every configuration (what the tolerances below were set
from) and exits 0. (PyTorch's speed on this model: tools/bench_torch.py
--model rnn.)

Per configuration (two model shapes × SGD with momentum / AdamW) a case:
  1. writes a suite into a temp dir;
  2. `samebits train --init-only` → the step-0 checkpoint, which must load
     into the torch modules with load_state_dict(strict=True) — PyTorch's
     own names and shapes — and `samebits data export` → the batches
     x [steps, batch, T+1] (token ids as floats) and y [steps, batch];
  3. `samebits train` on the ref and blas backends (deterministic, 1 thread,
     trace on) → run.json "losses", the trace's step-1 snapshot of the
     hidden states (gru/step.fwd, time-major) and of every parameter
     gradient op, and the final checkpoint;
  4. trains the same model in PyTorch (float32, one thread) from those
     weights on those batches (inputs = tokens 0..T-1, targets = 1..T,
     F.cross_entropy over all B·T positions), and writes its final weights
     and optimizer state under samebits' checkpoint names;
  5. compares losses, hidden states and gradients here, and the final
     weights and state with `samebits diff --atol --rtol` (exit 0 required).

Helpers (safetensors reading and writing, the error metric, running
samebits) come from parity_torch.py, which imports without side effects
beyond reading its command line the same way; the trace reader is here.

Not here: fast and canonical modes (compared with deterministic mode by
test_rnn.c), the suite (e2e.py).
"""
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from parity_torch import f32, samebits, st_read, st_write, worst
except ImportError as e:  # a failure, not a skip: tools/install-deps --tests installs them
    print(f"parity_rnn.py: {e}; install Debian's python3-torch and python3-numpy "
          "(tools/install-deps --tests)", file=sys.stderr)
    sys.exit(1)

# ---------------------------------------------------------------------------
# Tolerances: |samebits - torch| <= atol (+ rtol·|torch|, rtol 0 here)
# elementwise, NaN or Inf anywhere fails.
#
# Where the differences come from: both sides run the same float32 formulas
# in different orders. samebits computes the input projection for all steps
# in one GEMM, the recurrent GEMM per step, the cell in its own elementwise
# form (h = n + z·(h_prev - n), expf/tanhf from libm), and the weight
# gradients as one GEMM over all B·T rows in time-major order; PyTorch's CPU
# GRU (aten's native RNN in 1.13) also projects the input for all steps at
# once, but with its own GEMM blocking and vectorised sigmoid/tanh, and its
# autograd sums the recurrent weight gradient step by step, batch-major rows
# for the loss. Each difference is a few float32 ULPs; the recurrence
# carries hidden-state differences forward through the T steps (they were
# not seen to grow), and backward through time adds T terms per
# weight-gradient element.
#
# Observed with `measure --lr-control` over seeds 1..29 (4 configurations
# each: the two shapes below × SGD/AdamW, 5 steps, both backends; the test
# runs seed 7). Each bound sits several times above the worst over all seeds
# and below the smallest difference lr×1.001 on the PyTorch side makes (the
# control case shows it fails), so another OpenBLAS kernel or PyTorch build
# has room, while a real mismatch (a wrong gate order, a missed BPTT term)
# is orders of magnitude above:
#   loss per step: max |Δ| 1.7e-6 on losses ~2.4-3.4 (the mean of 40-96
#     log-sum-exps, summed in another order: ≤ 7 ULP). lr×1.001 moves the
#     later losses by ≥ 1.5e-5. Bound 6e-6.
LOSS_ATOL = 6e-6
#   step-1 hidden states (gru/step.fwd, |h| < 1): max |Δ| 1.8e-7 (the
#     recurrence carries step-to-step rounding forward but contracts it).
#     Bound 1e-6.
HIDDEN_ATOL = 1e-6
#   step-1 gradients (all seven tensors, elements up to ~0.2): max |Δ| 6.0e-8.
#     Bound 4e-7.
GRAD_ATOL = 4e-7
#   after 5 steps, SGD (lr 0.1, momentum 0.9, weight decay 0.01): max |Δ|
#     2.4e-7 (embed.weight, |w| up to ~3: 1 ULP there); lr×1.001 moves the
#     weights by ≥ 7.5e-5. Bound 2e-6.
SGD_WEIGHTS_ATOL = 2e-6
#   after 5 steps, AdamW (lr 0.01, weight decay 0.01, eps 1e-6): the update
#     lr·m̂/(√v̂ + eps) is normalised by √v̂, so an element whose gradient
#     mostly cancels turns a rounding-sized gradient error into a sizeable
#     fraction of lr (as for the MLP, parity_torch.py). eps 1e-6 rather than
#     PyTorch's default 1e-8 caps that amplification for the tiniest
#     elements: with 1e-8 the worst over the seeds was 2.0e-5, with 1e-6 it
#     is 7.3e-6 (seed 7: 1.1e-6), while lr×1.001 still moves the weights by
#     ≥ 5.2e-5 (it acts on every element). Bound 2e-5, 1/500 of lr.
ADAM_WEIGHTS_ATOL = 2e-5

STEPS, SEED = 5, 7
for _a in sys.argv:
    if _a.startswith("--seed="):
        SEED = int(_a.split("=", 1)[1])
# (vocab, seq_len, embed, hidden, batch): the suite's own shape shrunk to keep
# every step-1 output under the trace's 16 Ki stored values, and an odd one
# (sizes that are no multiple of any SIMD width, a batch of 5).
SHAPES = {"main": (27, 12, 16, 32, 8), "odd": (11, 7, 5, 13, 5)}
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "adam": {"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-6,
             "weight_decay": 0.01},
}
BACKENDS = ("ref", "blas")
# trace op → the PyTorch parameter whose step-1 gradient it writes
GRAD_OPS = [("fc/matmul.bwd_weight", "fc.weight"), ("fc/bias.grad", "fc.bias"),
            ("gru/weight_hh.grad", "gru.weight_hh_l0"), ("gru/bias_hh.grad", "gru.bias_hh_l0"),
            ("gru/weight_ih.grad", "gru.weight_ih_l0"), ("gru/bias_ih.grad", "gru.bias_ih_l0"),
            ("embed/scatter_add.bwd", "embed.weight")]


# ---------------------------------------------------------------------------
# trace.sbt (engine/trace.h): 32-byte header, 64-byte records, value blobs,
# footer (u32 length + JSON with the op table). Versions 1 and 2 share this
# layout (they differ in how hashes are computed, which is not read here).

_REC = np.dtype([("step", "<u4"), ("stage", "<u2"), ("flags", "<u2"), ("op", "<u4"),
                 ("n_out", "<u4"), ("in", "V16"), ("out", "V16"), ("l2", "<f4"),
                 ("maxabs", "<f4"), ("values", "<u8")])


def trace_values(path, step):
    """{op name: float32 outputs} of every record of `step` that stores values."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"SBTRACE\0":
        raise AssertionError(f"{path}: not a samebits trace")
    version, rec_size, n, footer = struct.unpack_from("<IIQQ", data, 8)
    if version not in (1, 2, 3) or rec_size != 64:
        raise AssertionError(f"{path}: trace version {version}, record size {rec_size}")
    (flen,) = struct.unpack_from("<I", data, footer)
    ops = [o["name"] for o in json.loads(data[footer + 4:footer + 4 + flen])["ops"]]
    out = {}
    for r in np.frombuffer(data, dtype=_REC, count=n, offset=32):
        if r["step"] == step and r["values"]:
            out[ops[r["op"]]] = np.frombuffer(data, dtype="<f4", count=int(r["n_out"]),
                                              offset=int(r["values"])).copy()
    return out


# ---------------------------------------------------------------------------
# the model on both sides


class GRUNet(torch.nn.Module):
    """engine/rnn.c's model: Embedding(V, E) → GRU(E, H), batch_first, h0 = 0
    → Linear(H, V) at every position. Its state_dict keys are the names of
    samebits' checkpoint."""

    def __init__(self, V, E, H):
        super().__init__()
        self.embed = torch.nn.Embedding(V, E)
        self.gru = torch.nn.GRU(E, H, batch_first=True)
        self.fc = torch.nn.Linear(H, V)

    def forward(self, ids):
        h, _ = self.gru(self.embed(ids))
        return self.fc(h), h


def write_suite(d, shape, optim, steps=STEPS):
    V, T, E, H, B = shape
    s = {
        "name": f"parity-rnn-{optim}",
        "model": {"kind": "rnn", "embed": E, "hidden": H},
        "data": {"kind": "chars", "samples": 128, "seq_len": T, "vocab": V, "noise": 0.1,
                 "shuffle": "epoch"},
        "train": {"steps": steps, "batch": B, "optimizer": OPTIMIZERS[optim]},
        "matrix": {"seeds": [SEED], "backends": ["ref"], "modes": ["deterministic"], "threads": [1]},
        "checks": [{"name": "repeats", "kind": "repeatable", "expect": "bitwise"}],
    }
    path = os.path.join(d, "suite.json")
    with open(path, "w") as f:
        json.dump(s, f, indent=1)
    return path


def make_optimizer(params, o, lr_scale=1.0):
    lr = f32(o["lr"]) * lr_scale  # hyperparameters as the float32 values samebits uses
    if o["name"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=f32(o["momentum"]),
                               weight_decay=f32(o["weight_decay"]))
    # samebits' adam is decoupled weight decay: PyTorch's AdamW
    return torch.optim.AdamW(params, lr=lr, betas=(f32(o["beta1"]), f32(o["beta2"])),
                             eps=f32(o["eps"]), weight_decay=f32(o["weight_decay"]))


def torch_train(shape, init, x, optim_cfg, lr_scale=1.0):
    """(losses, step-1 hidden states [T, B, H] time-major, {name: step-1
    grad}, final state under samebits' checkpoint names)."""
    torch.set_num_threads(1)
    V, T, E, H, B = shape
    net = GRUNet(V, E, H)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in init.items()}, strict=True)
    named = dict(net.named_parameters())
    opt = make_optimizer(named.values(), optim_cfg, lr_scale)
    losses, h1, grads1 = [], None, {}
    for s in range(x.shape[0]):
        tok = torch.from_numpy(x[s].astype(np.int64))
        logits, h = net(tok[:, :T])
        loss = F.cross_entropy(logits.reshape(-1, V), tok[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s == 0:
            h1 = h.detach().numpy().transpose(1, 0, 2).copy()
            grads1 = {k: p.grad.detach().numpy().copy() for k, p in named.items()}
        opt.step()
        losses.append(loss.item())
    state = {k: p.detach().numpy().copy() for k, p in named.items()}
    for k, p in named.items():
        st = opt.state[p]
        if optim_cfg["name"] == "sgd":
            state[f"optim.momentum.{k}"] = st["momentum_buffer"].numpy().copy()
        else:
            state[f"optim.m.{k}"] = st["exp_avg"].numpy().copy()
            state[f"optim.v.{k}"] = st["exp_avg_sq"].numpy().copy()
    return losses, h1, grads1, state


class Config:
    """One configuration, trained once by samebits (both backends) and
    compared with PyTorch by compare()."""

    def __init__(self, tmp, shape_name, optim):
        self.shape, self.optim = SHAPES[shape_name], optim
        self.label = f"rnn {shape_name}, {optim}"
        self.dir = os.path.join(tmp, f"{shape_name}-{optim}")
        os.makedirs(self.dir)
        V, T, E, H, B = self.shape
        self.suite = write_suite(self.dir, self.shape, optim)
        samebits("train", self.suite, "--out", "init", "--init-only", cwd=self.dir)
        init, meta = st_read(os.path.join(self.dir, "init", "weights.safetensors"))
        if meta.get("samebits.step") != "0":
            raise AssertionError(f"{self.label}: --init-only wrote step {meta.get('samebits.step')}")
        self.init = {k: v for k, v in init.items() if not k.startswith("optim.")}
        samebits("data", "export", self.suite, "--out", "batches.safetensors", cwd=self.dir)
        b, _ = st_read(os.path.join(self.dir, "batches.safetensors"))
        self.x, y = b["x"], b["y"]
        if self.x.shape != (STEPS, B, T + 1) or y.shape != (STEPS, B):
            raise AssertionError(f"{self.label}: export shapes {self.x.shape} {y.shape}")
        if not (np.array_equal(self.x, np.round(self.x)) and self.x.min() >= 0
                and self.x.max() < V and np.array_equal(self.x[:, :, T], y)):
            raise AssertionError(f"{self.label}: exported tokens are not ids in [0, {V}) "
                                 "with the last token as label")
        for be in BACKENDS:
            samebits("train", self.suite, "--out", be, "--backend", be, "--threads", "1",
                     "--mode", "deterministic", cwd=self.dir)

    def compare(self, lr_scale=1.0, report=None):
        V, T, E, H, B = self.shape
        o = OPTIMIZERS[self.optim]
        losses, h1, grads1, state = torch_train(self.shape, self.init, self.x, o, lr_scale)
        torch_path = os.path.join(self.dir, f"torch-{lr_scale}.safetensors")
        st_write(torch_path, state, {"producer": f"PyTorch {torch.__version__}"})
        wa = SGD_WEIGHTS_ATOL if self.optim == "sgd" else ADAM_WEIGHTS_ATOL
        failures = []

        def note(what, ok, d, i, a, b, bound):
            line = (f"{self.label}: {what}: max |samebits - torch| {d:.3g}"
                    f" (at {i}: samebits {a!r}, torch {b!r}, bound {bound!r})")
            if report is not None:
                report.append((what.split(" ")[0], d, line))
            if not ok:
                failures.append(line)

        for be in BACKENDS:
            rd = os.path.join(self.dir, be)
            with open(os.path.join(rd, "run.json")) as f:
                sb_losses = json.load(f)["losses"]
            note(f"losses [{be}] (steps 1..{STEPS})", *worst(sb_losses, losses, LOSS_ATOL, 0.0))
            snap = trace_values(os.path.join(rd, "trace.sbt"), 1)
            # gru/step.fwd's outputs: h [T·B, H] (time-major), then saved [T·B, 4H]
            step = snap.get("gru/step.fwd")
            if step is None or step.size != T * B * H * 5:
                failures.append(f"{self.label}: [{be}] no step-1 values of gru/step.fwd "
                                f"(or not {T * B * H * 5} of them)")
            else:
                note(f"hidden [{be}] gru/step.fwd h (step 1)",
                     *worst(step[:T * B * H], h1, HIDDEN_ATOL, 0.0))
            for op, p in GRAD_OPS:
                if op not in snap:
                    failures.append(f"{self.label}: [{be}] trace has no step-1 values of {op}")
                    continue
                note(f"gradient [{be}] {op} (step 1)", *worst(snap[op], grads1[p], GRAD_ATOL, 0.0))
            sb_state, _ = st_read(os.path.join(rd, "weights.safetensors"))
            if set(sb_state) != set(state):
                failures.append(f"{self.label}: [{be}] tensors differ: samebits {sorted(sb_state)}"
                                f" torch {sorted(state)}")
            for k in sorted(set(sb_state) & set(state)):
                if sb_state[k].shape != state[k].shape:
                    failures.append(f"{self.label}: [{be}] {k}: samebits shape "
                                    f"{sb_state[k].shape}, torch {state[k].shape}")
                elif report is not None:
                    note(f"weights [{be}] {k} (after step {STEPS})",
                         *worst(sb_state[k], state[k], wa, 0.0))
            # the verdict on the weights and state is samebits' own diff's exit code
            p = samebits("diff", os.path.join(rd, "weights.safetensors"), torch_path,
                         "--atol", repr(wa), "--rtol", "0", cwd=self.dir, expect=None)
            if p.returncode != 0:
                failures.append(f"{self.label}: [{be}] samebits diff --atol {wa} --rtol 0"
                                f" exit {p.returncode}:\n{p.stdout}{p.stderr}")
        return failures


# ---------------------------------------------------------------------------
# cases


def family(tmp, optim):
    failures = []
    for shape in SHAPES:
        c = Config(tmp, shape, optim)
        f = c.compare()
        print(f"{c.label}: {'ok' if not f else 'FAIL'}")
        failures += f
    if failures:
        raise AssertionError("\n".join(failures))


def rnn_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights(tmp):
    family(tmp, "sgd")


def rnn_with_adamw_should_match_pytorch_losses_gradients_and_weights(tmp):
    family(tmp, "adam")


def rnn_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger(tmp):
    # PyTorch with lr×1.001: the step-1 loss, hidden states and gradients
    # (before the learning rate acts) must still agree; the later losses and
    # `samebits diff` on the final weights must fail, on both backends.
    for optim in OPTIMIZERS:
        c = Config(tmp, "main", optim)
        if c.compare():
            raise AssertionError(f"{c.label}: fails even with the same learning rate")
        f = c.compare(lr_scale=1.001)
        for be in BACKENDS:
            if not any(f"[{be}] samebits diff" in x for x in f):
                raise AssertionError(f"{c.label}: [{be}] weights agree although PyTorch used lr×1.001")
            if not any(f"losses [{be}]" in x for x in f):
                raise AssertionError(f"{c.label}: [{be}] losses agree although PyTorch used lr×1.001")
            if any(f"gradient [{be}]" in x or f"hidden [{be}]" in x for x in f):
                raise AssertionError(f"{c.label}: [{be}] step-1 values differ with lr×1.001:\n"
                                     + "\n".join(f))
        print(f"{c.label}: lr×1.001 fails as it should ({len(f)} failures)")


def measure(tmp):
    """Prints the worst observed error of each kind over every configuration
    and, with --lr-control, the smallest lr×1.001 difference of each kind
    (per configuration and backend the largest over steps or tensors: what
    decides whether the control fails)."""
    rows, ctl = [], []
    for optim in OPTIMIZERS:
        for shape in SHAPES:
            c = Config(tmp, shape, optim)
            c.compare(report=rows)
            if "--lr-control" in sys.argv:
                c.compare(lr_scale=1.001, report=ctl)
    kinds = {}
    for kind, d, line in rows:
        key = (kind, "sgd" if ", sgd" in line else "adam")
        if key not in kinds or d > kinds[key][0]:
            kinds[key] = (d, line)
    for key in sorted(kinds):
        print(f"worst {key[0]} ({key[1]}): {kinds[key][1]}")
    per = {}  # (kind, optimizer, config and backend) -> largest difference
    for kind, d, line in ctl:
        if kind in ("losses", "weights"):
            k = (kind, "sgd" if ", sgd" in line else "adam", line.split(":")[0], line.split("]")[0])
            per[k] = max(per.get(k, 0.0), d)
    low = {}
    for (kind, optim, _, _), d in per.items():
        low[(kind, optim)] = min(low.get((kind, optim), float("inf")), d)
    for key in sorted(low):
        print(f"smallest lr×1.001 {key[0]} ({key[1]}): {low[key]:.3g}")


CASES = {f.__name__: f for f in (
    rnn_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights,
    rnn_with_adamw_should_match_pytorch_losses_gradients_and_weights,
    rnn_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger,
)}


def main():
    if len(sys.argv) < 4 or (sys.argv[3] not in CASES and sys.argv[3] != "measure"):
        print("usage: parity_rnn.py SAMEBITS SOURCE_DIR CASE|measure\ncases:\n  "
              + "\n  ".join(CASES), file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sb-parity-rnn-")
    try:
        if sys.argv[3] == "measure":
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

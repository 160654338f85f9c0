#!/usr/bin/python3
"""parity_transformer.py — samebits' tiny transformer (engine/transformer.c)
against the same model written in PyTorch: the same initial weights and the
same batches must give the same losses, gradients and weights.

Usage: /usr/bin/python3 parity_transformer.py SAMEBITS SOURCE_DIR CASE
       /usr/bin/python3 parity_transformer.py SAMEBITS SOURCE_DIR measure [--seed=N] [--lr-control]

Runs with Debian's python3-torch 1.13 and python3-numpy (tests/parity.cmake
says why not the test venv); CTest registers each case
(tests/transformer.cmake). A missing torch or numpy is a failure, never a
skip. `measure` prints the worst observed error of every kind over every
configuration (what the tolerances below were set from) and exits 0;
--lr-control adds the lr×1.001 runs.

Per configuration (tied/untied head × SGD with momentum/AdamW) a case:
  1. writes a suite (chars data, a 2-block model) into a temp dir;
  2. `samebits train --init-only` → the step-0 weights, and
     `samebits data export` → the batches x [steps, batch, T+1] (token ids as
     floats: inputs are the first T, targets the last T);
  3. `samebits train` on ref and blas (deterministic, 1 thread, trace on) →
     run.json "losses", the trace's step-1 values of the backward ops, and
     the final checkpoint;
  4. trains the model below in PyTorch (float32, one thread) from those
     weights on those batches, and writes its final weights and optimizer
     state under samebits' names;
  5. compares losses and step-1 gradients here, and the final weights and
     optimizer state with `samebits diff --atol`, whose exit code must be 0.

The PyTorch model is written out with torch.nn.functional so it is plainly
the one engine/transformer.c documents: F.embedding + the position table,
per block F.layer_norm (eps 1e-5) → F.linear (qkv) → split into q, k, v
(qkv.split(C, -1), heads by .view(B, T, H, D).transpose(1, 2)) → causal
attention by hand (PyTorch 1.13 has no F.scaled_dot_product_attention:
q·kᵀ · 1/√D, future keys masked with -inf, softmax, · v) → heads merged →
F.linear (proj) → residual; F.layer_norm → F.linear → F.gelu(approximate=
'tanh') → F.linear → residual; then F.layer_norm and the head (tied: wte's
weight), F.cross_entropy over all B·T positions.

The safetensors and trace readers and the comparison helper are
tests/parity_torch.py's (importing it has no side effects beyond its
imports and constants).

Not here: fast and canonical modes (deterministic mode is the one whose op
order is plain; test_transformer.c compares the others with it).
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from parity_torch import f32, st_read, st_write, trace_values, worst
except ImportError as e:  # a failure, not a skip: tools/check installs them
    print(f"parity_transformer.py: {e}; install Debian's python3-torch and python3-numpy "
          "(tools/install-deps --tests)", file=sys.stderr)
    sys.exit(1)

SAMEBITS = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""

STEPS, BATCH, SEQ, VOCAB, SAMPLES, SEED = 5, 8, 16, 16, 64, 3
for _a in sys.argv:  # measure --seed=N: the errors at another seed
    if _a.startswith("--seed="):
        SEED = int(_a.split("=", 1)[1])
D_MODEL, HEADS, LAYERS, MLP = 32, 4, 2, 64
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    # eps 1e-6 as in suites/transformer.json: the key bias's gradient is zero
    # in exact arithmetic and rounding noise (~1e-10) in float; with eps 1e-8
    # AdamW turns that noise into steps of up to lr, different on each side,
    # and the key bias alone would need a tolerance of ~lr
    "adam": {"name": "adam", "lr": 0.003, "beta1": 0.9, "beta2": 0.999, "eps": 1e-6,
             "weight_decay": 0.01},
}
BACKENDS = ("ref", "blas")

# ---------------------------------------------------------------------------
# Tolerances: |samebits - torch| <= atol elementwise (numpy.allclose's and
# `samebits diff`'s form with rtol 0); NaN or Inf on either side fails.
#
# Where the differences come from: both sides compute the same float32
# formulas in other orders — samebits' ref backend in fixed sequential
# loops, blas through OpenBLAS's blocked SGEMM (one per attention head and
# product), PyTorch through its own GEMMs (batched matmul for attention) and
# vectorised reductions (layer norm's mean and variance, softmax's sum, the
# loss mean, bias and weight gradients) — and PyTorch's exp, tanh (GELU) and
# AdamW's mul/add round differently. Per step each difference is a few ULP
# of the values summed; the backward carries it through 2 blocks, and later
# steps carry it forward.
#
# Observed with `measure` over seeds 1-6 (4 configurations each: tied and
# untied × SGD/AdamW, chars vocab 16, seq_len 16, d_model 32, 4 heads,
# 2 blocks, mlp 64, batch 8, 5 steps, both backends; seed 3 is the one the
# test uses); each bound is ~8× the worst of them:
#   loss per step: max |Δ| 1.2e-6 on losses ~2.6-2.9 (5 ULP: the mean of
#     128 log-sum-exps after two blocks). Bound 1e-5.
LOSS_ATOL = 1e-5
#   step-1 gradients (every weight's and bias's, the embeddings' including
#     the tied head's part, the layer norms' input gradients — the residual
#     stream's —, the attention's dq/dk/dv and the logits' gradient): max
#     |Δ| 2.4e-7 (wte's and wpe's, elements up to ~0.6). Bound 2e-6.
GRAD_ATOL = 2e-6
#   after 5 steps, SGD (lr 0.1, momentum 0.9, weight decay 0.01): max |Δ|
#     1.8e-7 on weights up to ~1 and momentum buffers up to ~0.6 (step-1
#     errors carried linearly). Bound 1.5e-6.
SGD_WEIGHTS_ATOL = 1.5e-6
#   after 5 steps, AdamW (lr 0.003, eps 1e-6, weight decay 0.01): max |Δ|
#     5.1e-6 (qkv weights) — Adam's √v normalisation makes an update ~lr
#     whatever the gradient's size, so a rounding-sized error in a small
#     gradient element becomes a weight error of a fraction of lr; m and v
#     agree far more closely. Bound 4e-5, 1/75 of lr.
ADAM_WEIGHTS_ATOL = 4e-5
#   the key bias (attn.qkv.bias[C:2C]) after 5 AdamW steps: max |Δ| 1.7e-5.
#     Its gradient is rounding noise (~1e-10) on both sides, different noise,
#     and even with eps 1e-6 AdamW turns it into steps of ~lr·1e-3. Checked
#     here against its own bound, 1.5e-4 (1/20 of lr), and taken out of the
#     `samebits diff` verdict (the PyTorch file handed to it carries
#     samebits' key bias). SGD moves it by lr·noise: within SGD's bound.
KEY_BIAS_ATOL = 1.5e-4
# With lr×1.001 on the PyTorch side (the control case) the later losses move
# by 5.6e-5 and the weights by up to 1.9e-4 (AdamW) and 5.5e-4 (SGD): above
# these bounds, so a 0.1% error in the update is seen.


# ---------------------------------------------------------------------------
# samebits


def samebits(*args, cwd, expect=0):
    p = subprocess.run([SAMEBITS, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"samebits {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def write_suite(d, tied, optim):
    s = {
        "name": f"parity-transformer-{'tied' if tied else 'untied'}-{optim}",
        "model": {"kind": "transformer", "d_model": D_MODEL, "heads": HEADS, "layers": LAYERS,
                  "mlp": MLP, "tied": tied},
        "data": {"kind": "chars", "samples": SAMPLES, "seq_len": SEQ, "vocab": VOCAB,
                 "noise": 0.1, "shuffle": "epoch"},
        "train": {"steps": STEPS, "batch": BATCH, "optimizer": OPTIMIZERS[optim]},
        "matrix": {"seeds": [SEED], "backends": ["ref"], "modes": ["deterministic"],
                   "threads": [1]},
        "checks": [{"name": "repeats", "kind": "repeatable", "expect": "bitwise"}],
    }
    path = os.path.join(d, "suite.json")
    with open(path, "w") as f:
        json.dump(s, f, indent=1)
    return path


# ---------------------------------------------------------------------------
# the model in PyTorch


def tf_model(params, tied):
    """({samebits name: leaf tensor}, forward(inputs [B, T] int64, keep) ->
    logits [B, T, V]). With keep a dict, forward() keeps (retain_grad) what
    the trace's backward ops output besides parameter gradients: the logits,
    each block's input x<i> and middle xmid<i>, the last block's output
    x<L>, each block's q<i>, k<i>, v<i> [B, H, T, D], and for a tied head
    the head's and the embedding's views of wte (head_w, emb_w)."""
    named = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
    C, H = D_MODEL, HEADS
    Dh = C // H

    def ln(x, name):
        return F.layer_norm(x, (C,), named[f"{name}.weight"], named[f"{name}.bias"], 1e-5)

    def keep_(keep, name, t):
        if keep is not None:
            t.retain_grad()
            keep[name] = t

    def forward(idx, keep):
        B, T = idx.shape
        wte = named["wte.weight"]
        emb_w, head_w = (wte.view_as(wte), wte.view_as(wte)) if tied else (wte, named["head.weight"])
        if tied:
            keep_(keep, "emb_w", emb_w)
            keep_(keep, "head_w", head_w)
        x = F.embedding(idx, emb_w) + named["wpe.weight"]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for i in range(LAYERS):
            p = f"blocks.{i}."
            keep_(keep, f"x{i}", x)
            qkv = F.linear(ln(x, p + "ln1"), named[p + "attn.qkv.weight"], named[p + "attn.qkv.bias"])
            q, k, v = (t.view(B, T, H, Dh).transpose(1, 2) for t in qkv.split(C, dim=-1))
            for n, t in (("q", q), ("k", k), ("v", v)):
                keep_(keep, f"{n}{i}", t)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(Dh))
            att = torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            x = x + F.linear(y, named[p + "attn.proj.weight"], named[p + "attn.proj.bias"])
            keep_(keep, f"xmid{i}", x)
            h = F.linear(ln(x, p + "ln2"), named[p + "mlp.fc.weight"], named[p + "mlp.fc.bias"])
            h = F.gelu(h, approximate="tanh")  # samebits' GELU is the tanh form
            x = x + F.linear(h, named[p + "mlp.proj.weight"], named[p + "mlp.proj.bias"])
        keep_(keep, f"x{LAYERS}", x)
        logits = F.linear(ln(x, "ln_f"), head_w)
        keep_(keep, "logits", logits)
        return logits
    return named, forward


def torch_train(model, x, optim_cfg, lr_scale=1.0):
    """(losses per step, {name: step-1 gradient}, final state under samebits'
    checkpoint names) of PyTorch's run on batches x [steps, B, T+1]."""
    torch.set_num_threads(1)
    named, forward = model
    o = optim_cfg
    lr = f32(o["lr"]) * lr_scale  # hyperparameters as the float32 values samebits uses
    if o["name"] == "sgd":
        opt = torch.optim.SGD(named.values(), lr=lr, momentum=f32(o["momentum"]),
                              weight_decay=f32(o["weight_decay"]))
    else:  # samebits' adam is decoupled weight decay: PyTorch's AdamW
        opt = torch.optim.AdamW(named.values(), lr=lr, betas=(f32(o["beta1"]), f32(o["beta2"])),
                                eps=f32(o["eps"]), weight_decay=f32(o["weight_decay"]))
    losses, grads1 = [], {}
    for s in range(x.shape[0]):
        tok = torch.from_numpy(x[s].astype(np.int64))
        keep = {} if s == 0 else None
        logits = forward(tok[:, :-1], keep)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s == 0:
            grads1 = {k: p.grad.detach().numpy().copy() for k, p in named.items()}
            for k, t in keep.items():
                grads1[k] = t.grad.detach().numpy().copy()
        opt.step()
        losses.append(loss.item())
    state = {k: p.detach().numpy().copy() for k, p in named.items()}
    for k, p in named.items():
        st = opt.state[p]
        if o["name"] == "sgd":
            state[f"optim.momentum.{k}"] = st["momentum_buffer"].numpy().copy()
        else:
            state[f"optim.m.{k}"] = st["exp_avg"].numpy().copy()
            state[f"optim.v.{k}"] = st["exp_avg_sq"].numpy().copy()
    return losses, grads1, state


def gradient_ops(tied):
    """[(trace op, [torch gradient names])]: each op's step-1 values are its
    float outputs concatenated in order (engine/transformer.c)."""
    ops = [("loss/xent.bwd", ["logits"]),
           ("head/matmul.bwd_weight", ["head_w" if tied else "head.weight"]),
           ("ln_f.bwd", ["ln_f.weight", "ln_f.bias", f"x{LAYERS}"])]
    for i in reversed(range(LAYERS)):
        p = f"blocks.{i}"
        ops += [(f"{p}/mlp.proj/matmul.bwd_weight", [f"{p}.mlp.proj.weight"]),
                (f"{p}/mlp.proj/bias.grad", [f"{p}.mlp.proj.bias"]),
                (f"{p}/mlp.fc/matmul.bwd_weight", [f"{p}.mlp.fc.weight"]),
                (f"{p}/mlp.fc/bias.grad", [f"{p}.mlp.fc.bias"]),
                (f"{p}/ln2.bwd", [f"{p}.ln2.weight", f"{p}.ln2.bias", f"xmid{i}"]),
                (f"{p}/attn.proj/matmul.bwd_weight", [f"{p}.attn.proj.weight"]),
                (f"{p}/attn.proj/bias.grad", [f"{p}.attn.proj.bias"]),
                (f"{p}/attn/sdpa.bwd", [f"q{i}", f"k{i}", f"v{i}"]),
                (f"{p}/attn.qkv/matmul.bwd_weight", [f"{p}.attn.qkv.weight"]),
                (f"{p}/attn.qkv/bias.grad", [f"{p}.attn.qkv.bias"]),
                (f"{p}/ln1.bwd", [f"{p}.ln1.weight", f"{p}.ln1.bias", f"x{i}"])]
    # the scatter-add's output is wte's whole gradient (tied: with the head's part)
    ops += [("wpe/add.bwd", ["wpe.weight"]), ("wte/scatter_add.bwd", ["wte.weight"])]
    return ops


# ---------------------------------------------------------------------------
# one configuration


class Config:
    def __init__(self, tmp, tied, optim):
        self.tied, self.optim = tied, optim
        self.label = f"transformer, {'tied' if tied else 'untied'}, {optim}"
        self.dir = os.path.join(tmp, f"tf-{'tied' if tied else 'untied'}-{optim}")
        os.makedirs(self.dir)
        self.suite = write_suite(self.dir, tied, optim)
        samebits("train", self.suite, "--out", "init", "--init-only", cwd=self.dir)
        self.init, meta = st_read(os.path.join(self.dir, "init", "weights.safetensors"))
        if meta.get("samebits.step") != "0":
            raise AssertionError(f"{self.label}: --init-only wrote step {meta.get('samebits.step')}")
        self.init = {k: v for k, v in self.init.items() if not k.startswith("optim.")}
        samebits("data", "export", self.suite, "--out", "batches.safetensors", cwd=self.dir)
        b, _ = st_read(os.path.join(self.dir, "batches.safetensors"))
        self.x = b["x"]
        if self.x.shape != (STEPS, BATCH, SEQ + 1):
            raise AssertionError(f"{self.label}: export shape {self.x.shape}")
        for be in BACKENDS:
            samebits("train", self.suite, "--out", be, "--backend", be, "--threads", "1",
                     "--mode", "deterministic", cwd=self.dir)

    def compare(self, lr_scale=1.0, report=None):
        model = tf_model(self.init, self.tied)
        losses, grads1, state = torch_train(model, self.x, OPTIMIZERS[self.optim], lr_scale)
        wa = SGD_WEIGHTS_ATOL if self.optim == "sgd" else ADAM_WEIGHTS_ATOL
        failures = []

        def note(kind, what, ok, d, i, a, b, bound):
            line = (f"{self.label}: {what}: max |samebits - torch| {d:.3g}"
                    f" (at {i}: samebits {a!r}, torch {b!r}, bound {bound!r})")
            if report is not None:
                report.append((kind, self.optim, d, line))
            if not ok:
                failures.append(line)

        for be in BACKENDS:
            rd = os.path.join(self.dir, be)
            with open(os.path.join(rd, "run.json")) as f:
                sb_losses = json.load(f)["losses"]
            note("losses", f"losses [{be}] (steps 1..{STEPS})", *worst(sb_losses, losses, LOSS_ATOL, 0.0))
            snap = trace_values(os.path.join(rd, "trace.sbt"), 1)
            for op, names in gradient_ops(self.tied):
                if op not in snap:
                    failures.append(f"{self.label}: [{be}] trace has no step-1 values of {op}")
                    continue
                vals, at = snap[op], 0
                for name in names:
                    n = grads1[name].size
                    what = op if len(names) == 1 else f"{op} → {name}"
                    note("gradient", f"gradient [{be}] {what} (step 1)",
                         *worst(vals[at:at + n], grads1[name], GRAD_ATOL, 0.0))
                    at += n
                if at != vals.size:
                    failures.append(f"{self.label}: [{be}] {op} stores {vals.size} values, "
                                    f"expected {at}")
            sb_state, _ = st_read(os.path.join(rd, "weights.safetensors"))
            if set(sb_state) != set(state):
                failures.append(f"{self.label}: [{be}] tensors differ: samebits {sorted(sb_state)}"
                                f" torch {sorted(state)}")
            checked = dict(state)
            for k in sorted(set(sb_state) & set(state)):
                if self.optim == "adam" and k.endswith(".attn.qkv.bias"):
                    # the key bias apart, with its own bound; the diff below
                    # sees samebits' values there
                    C = D_MODEL
                    note("weights (key bias)", f"weights [{be}] {k}[C:2C] (after step {STEPS})",
                         *worst(sb_state[k][C:2 * C], state[k][C:2 * C], KEY_BIAS_ATOL, 0.0))
                    checked[k] = state[k].copy()
                    checked[k][C:2 * C] = sb_state[k][C:2 * C]
                ok, d, i, a, b, bound = worst(sb_state[k], checked[k], wa, 0.0)
                if report is not None:
                    note("weights", f"weights [{be}] {k} (after step {STEPS})", ok, d, i, a, b, bound)
            diff_path = os.path.join(self.dir, f"torch-{lr_scale}-{be}.safetensors")
            st_write(diff_path, checked, {"producer": f"PyTorch {torch.__version__}"})
            # the verdict on the weights is samebits' own diff's exit code
            p = samebits("diff", os.path.join(rd, "weights.safetensors"), diff_path,
                         "--atol", repr(wa), "--rtol", "0", cwd=self.dir, expect=None)
            if p.returncode != 0:
                failures.append(f"{self.label}: [{be}] samebits diff --atol {wa}"
                                f" exit {p.returncode}:\n{p.stdout}{p.stderr}")
        return failures


# ---------------------------------------------------------------------------
# cases


def family(tmp, optim):
    failures = []
    for tied in (False, True):
        c = Config(tmp, tied, optim)
        f = c.compare()
        print(f"{c.label}: {'ok' if not f else 'FAIL'}")
        failures += f
    if failures:
        raise AssertionError("\n".join(failures))


def transformer_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights(tmp):
    family(tmp, "sgd")


def transformer_with_adamw_should_match_pytorch_losses_gradients_and_weights(tmp):
    family(tmp, "adam")


def transformer_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger(tmp):
    # PyTorch with lr×1.001: step 1 (loss, gradients) must still agree — the
    # learning rate has not acted yet — and the later losses and `samebits
    # diff` on the final weights must not, on both backends. Shows the
    # tolerances are tight enough to see a small real difference.
    for optim in OPTIMIZERS:
        c = Config(tmp, optim == "adam", optim)
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


def measure(tmp):
    """Prints the worst observed error of each kind and optimizer over every
    configuration (and, with --lr-control, what lr×1.001 gives)."""
    rows = []
    scales = (1.0, 1.001) if "--lr-control" in sys.argv else (1.0,)
    for optim in OPTIMIZERS:
        for tied in (False, True):
            c = Config(tmp, tied, optim)
            for s in scales:
                r = []
                c.compare(lr_scale=s, report=r)
                rows += [(kind + ("" if s == 1.0 else " lr×1.001"), o, d, line) for kind, o, d, line in r]
    worst_of = {}
    for kind, o, d, line in rows:
        if (kind, o) not in worst_of or d > worst_of[(kind, o)][0]:
            worst_of[(kind, o)] = (d, line)
    for key in sorted(worst_of):
        print(f"worst {key[0]} ({key[1]}): {worst_of[key][1]}")


CASES = {f.__name__: f for f in (
    transformer_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights,
    transformer_with_adamw_should_match_pytorch_losses_gradients_and_weights,
    transformer_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger,
)}


def main():
    if len(sys.argv) < 4 or (sys.argv[3] not in CASES and sys.argv[3] != "measure"):
        print("usage: parity_transformer.py SAMEBITS SOURCE_DIR CASE|measure [--seed=N] "
              "[--lr-control]\ncases:\n  " + "\n  ".join(CASES), file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sb-parity-tf-")
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

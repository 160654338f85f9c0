#!/usr/bin/env python3
"""e2e.py — end-to-end tests of the samebits command (run, train, bless,
diff, inspect) through its exit codes, its files and its output.

Usage: e2e.py SAMEBITS SOURCE_DIR CASE
Each case is a function below; CTest registers each as its own test
(tests/harness.cmake). A case fails by raising; the exit code is 1 then.
Only the standard library is used, except where a case says otherwise.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SAMEBITS = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])


def run(*args, cwd=None, expect=None):
    p = subprocess.run([SAMEBITS, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if expect is not None and p.returncode != expect:
        raise AssertionError(
            f"samebits {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
            f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tiny_suite(name, **over):
    s = {
        "name": name,
        "model": {"kind": "mlp", "hidden": [16], "activation": "tanh"},
        "data": {"kind": "blobs", "samples": 256, "features": 8, "classes": 3, "noise": 1.5},
        "train": {"steps": 40, "batch": 32,
                  "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
        "matrix": {"seeds": [3], "backends": ["blas"], "modes": ["deterministic"], "threads": [2]},
        "repeats": 2,
        "checks": [{"name": "repeats", "kind": "repeatable", "expect": "bitwise"}],
    }
    s.update(over)
    return s


def write_suite(d, suite, fname=None):
    path = os.path.join(d, fname or (suite["name"] + ".json"))
    with open(path, "w") as f:
        json.dump(suite, f, indent=1)
    return path


def load_summary(out):
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------- cases

def smoke_suite_should_pass_against_its_blessed_baseline(tmp):
    out = os.path.join(tmp, "res")
    p = run("run", os.path.join(SRC, "suites/smoke.json"), "--out", out,
            "--baselines", os.path.join(SRC, "baselines"), "-j", "2", expect=0)
    check("verdict: PASS" in p.stdout, f"no PASS verdict in:\n{p.stdout}")
    s = load_summary(out)
    check(s["schema"] == "samebits.summary/1", f"schema {s['schema']}")
    check(s["suite"] == "smoke", "suite name")
    check(len(s["runs"]) == 16, f"{len(s['runs'])} runs, expected 16 (8 cells x 2 repeats)")
    for r in s["runs"]:
        for k in ("id", "config", "status", "checkpoint", "sha256", "weights_sha256", "seconds"):
            check(k in r, f"run lacks {k}: {r}")
        for k in ("seed", "backend", "mode", "threads", "repeat"):
            check(k in r["config"], f"config lacks {k}")
        check(r["status"] == "ok", f"run {r['id']} {r['status']}")
        ck = os.path.join(out, r["checkpoint"])
        check(sha256(ck) == r["sha256"], f"{ck}: sha256 differs from summary")
    covered = {(r["config"]["backend"], r["config"]["mode"], r["config"]["threads"])
               for r in s["runs"]}
    check(len(covered) == 8, f"smoke must cover both backends, modes and 1/2 threads: {covered}")
    kinds = set()
    for c in s["checks"]:
        for k in ("name", "kind", "expect", "status", "comparisons"):
            check(k in c, f"check lacks {k}")
        check(c["status"] == "pass", f"check {c['name']} {c['status']}")
        check(len(c["comparisons"]) > 0, f"check {c['name']} compared nothing")
        kinds.add(c["kind"])
        for x in c["comparisons"]:
            for k in ("a", "b", "bitwise_equal", "max_abs", "max_rel", "max_ulp", "mismatched",
                      "worst_tensor"):
                check(k in x, f"comparison lacks {k}: {x}")
    check(kinds == {"repeatable", "cross", "baseline"}, f"kinds {kinds}")
    # deterministic repeats: equal weights digests, whatever the metadata (run ids differ)
    by_cell = {}
    for r in s["runs"]:
        if r["config"]["mode"] == "deterministic":
            by_cell.setdefault(r["cell"], set()).add(r["weights_sha256"])
    for cell, digests in by_cell.items():
        check(len(digests) == 1, f"{cell}: repeats have different weights digests")
    shas = {r["sha256"] for r in s["runs"] if r["config"]["mode"] == "deterministic"}
    check(len(shas) == len([r for r in s["runs"] if r["config"]["mode"] == "deterministic"]),
          "checkpoint files of different runs should differ (their metadata names the run)")


def perturbed_fast_cell_should_be_reported_not_repeatable(tmp):
    suite = tiny_suite("perturbed", perturb=True,
                       matrix={"seeds": [3], "backends": ["blas"], "modes": ["fast"],
                               "threads": [1, 2]},
                       repeats=3)
    path = write_suite(tmp, suite)
    out = os.path.join(tmp, "res")
    p = run("run", path, "--out", out, expect=1)
    check("FAIL" in p.stdout, f"verdict table lacks FAIL:\n{p.stdout}")
    s = load_summary(out)
    check(s["exit_code"] == 1 and s["verdict"] == "fail", "summary verdict")
    c = s["checks"][0]
    check(c["status"] == "fail", f"check status {c['status']}")
    bad = [x for x in c["comparisons"] if not x["bitwise_equal"]]
    check(len(bad) == len(c["comparisons"]),
          f"perturbed repeats agreed bitwise in {len(c['comparisons']) - len(bad)} comparisons")
    check(all(x["worst_tensor"] for x in bad), "worst tensor not named")
    with open(os.path.join(out, "runs", s["runs"][0]["id"], "run.json")) as f:
        check(json.load(f)["perturb"] is True, "run.json does not record the perturbation")


def deterministic_threads_cross_check_should_agree(tmp):
    # the same check without perturbation, deterministic mode: repeatable and
    # equal across thread counts (our reductions do not depend on threads)
    suite = tiny_suite("threads", matrix={"seeds": [3], "backends": ["blas"],
                                          "modes": ["deterministic"], "threads": [1, 2]},
                       checks=[{"name": "repeats", "kind": "repeatable", "expect": "bitwise"},
                               {"name": "threads", "kind": "cross", "axis": "threads",
                                "expect": {"ulp": 64}}])
    out = os.path.join(tmp, "res")
    run("run", write_suite(tmp, suite), "--out", out, expect=0)


def bless_should_write_a_manifest_and_refuse_to_overwrite(tmp):
    suite = tiny_suite("blessme", checks=[
        {"name": "repeats", "kind": "repeatable", "expect": "bitwise"},
        {"name": "base", "kind": "baseline", "expect": "bitwise"}])
    path = write_suite(tmp, suite)
    bdir = os.path.join(tmp, "baselines")
    run("bless", path, "--baselines", bdir, cwd=tmp, expect=0)
    cell = "seed3-blas-deterministic-t2"
    man = json.load(open(os.path.join(bdir, "blessme", "manifest.json")))
    check(man["schema"] == "samebits.baseline/1", "manifest schema")
    w = os.path.join(bdir, "blessme", cell, "weights.safetensors")
    check(man["cells"][cell]["sha256"] == sha256(w), "manifest sha256 differs from the file")
    check("fc1.weight" in man["cells"][cell]["tensors"], "manifest lacks per-tensor hashes")
    check(man["cells"][cell]["config"]["seed"] == "3", "manifest lacks the config")
    tr = os.path.join(bdir, "blessme", cell, "trace.sbt")
    check(man["cells"][cell]["trace"]["sha256"] == sha256(tr), "manifest lacks the trace's sha256")
    before = sha256(w)
    p = run("bless", path, "--baselines", bdir, cwd=tmp, expect=2)
    check("--force" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
          f"refusal should be one line mentioning --force: {p.stderr!r}")
    check(sha256(w) == before, "baseline changed although bless refused")
    leftovers = [n for n in os.listdir(bdir) if n.startswith(".")]
    check(not leftovers, f"temporary folders left behind: {leftovers}")
    out = os.path.join(tmp, "res")
    run("run", path, "--out", out, "--baselines", bdir, expect=0)
    # bless --from an existing results folder, --force replaces
    run("bless", path, "--baselines", bdir, "--from", out, "--force", cwd=tmp, expect=0)
    check(not [n for n in os.listdir(bdir) if n.startswith(".")], "leftovers after --force")
    # a tampered baseline is an error naming the file, not a silent pass or fail
    with open(w, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    out2 = os.path.join(tmp, "res2")
    p = run("run", path, "--out", out2, "--baselines", bdir, expect=2)
    s = load_summary(out2)
    base = [c for c in s["checks"] if c["kind"] == "baseline"][0]
    check(base["status"] == "error" and "manifest" in base["message"],
          f"tampered baseline: {base}")


def baseline_check_should_fail_when_training_changes(tmp):
    suite = tiny_suite("regress", checks=[{"name": "base", "kind": "baseline",
                                            "expect": {"atol": 1e-7}}])
    bdir = os.path.join(tmp, "baselines")
    run("bless", write_suite(tmp, suite), "--baselines", bdir, cwd=tmp, expect=0)
    suite["train"]["optimizer"]["lr"] = 0.0501  # a "new library version" that moves numbers
    path = write_suite(tmp, suite)
    out = os.path.join(tmp, "res")
    p = run("run", path, "--out", out, "--baselines", bdir, expect=1)
    s = load_summary(out)
    x = s["checks"][0]["comparisons"][0]
    check(not x["bitwise_equal"] and x["max_abs"] > 1e-7 and x["mismatched"] > 0,
          f"comparison: {x}")
    check("baseline:seed3-blas-deterministic-t2" == x["b"], f"b = {x['b']}")
    # the baseline keeps its run's trace, so the regression is attributed: the
    # learning rate changed, so the first op whose inputs agree and outputs
    # differ is the optimizer's update at step 1
    fd = x.get("first_divergence")
    check(fd and fd["op"] == "sgd/update" and fd["stage"] == "optimizer" and fd["step"] == 1
          and fd["kind"] == "source", f"first divergence against the baseline: {fd}")


def missing_baseline_should_be_an_error_not_a_pass(tmp):
    suite = tiny_suite("nobase", checks=[{"name": "base", "kind": "baseline", "expect": "bitwise"}])
    out = os.path.join(tmp, "res")
    p = run("run", write_suite(tmp, suite), "--out", out, "--baselines",
            os.path.join(tmp, "none"), expect=2)
    check("samebits bless" in p.stdout, f"should say how to bless:\n{p.stdout}")


def timed_out_runs_should_fail_alone_and_exit_3(tmp):
    suite = tiny_suite("slow", timeout=0.001)
    suite["train"]["steps"] = 100000
    out = os.path.join(tmp, "res")
    p = run("run", write_suite(tmp, suite), "--out", out, expect=3)
    s = load_summary(out)
    check(all(r["status"] == "timeout" for r in s["runs"]), "runs not marked timeout")
    check(s["checks"][0]["status"] == "error", "check over failed runs must be an error")
    check("timeout" in p.stdout, f"verdict does not mention the timeout:\n{p.stdout}")


def bad_suites_should_exit_2_with_one_line_and_write_nothing(tmp):
    cases = {
        "malformed.json": ('{"name": "x", "model": ', "line"),
        "wrongtype.json": (json.dumps(tiny_suite("x", repeats="two")), "repeats"),
        "seedtype.json": (json.dumps(tiny_suite("x", matrix={"seeds": [1, "a"]})),
                          "matrix.seeds[1]"),
        "unknown.json": (json.dumps(tiny_suite("x", colour="red")), "colour"),
    }
    for fname, (text, where) in cases.items():
        path = os.path.join(tmp, fname)
        with open(path, "w") as f:
            f.write(text)
        out = os.path.join(tmp, "res-" + fname)
        for cmd in (["run", path, "--out", out], ["train", path, "--out", out],
                    ["bless", path, "--baselines", os.path.join(tmp, "b")]):
            p = run(*cmd, cwd=tmp, expect=2)
            lines = p.stderr.strip().splitlines()
            check(len(lines) == 1, f"{cmd[0]} {fname}: expected one line, got {lines}")
            check(fname in lines[0] and where in lines[0],
                  f"{cmd[0]} {fname}: message should name the file and {where!r}: {lines[0]}")
            check(not os.path.exists(out), f"{cmd[0]} {fname}: left {out} behind")
            check(not os.path.exists(os.path.join(tmp, "b")), "bless left a baselines folder")
            check(not os.path.exists(os.path.join(tmp, "results")), "left a results folder")


def results_should_never_be_rewritten_and_resume_should_keep_finished_runs(tmp):
    suite = tiny_suite("resume", matrix={"seeds": [1, 2], "backends": ["ref"],
                                         "modes": ["deterministic"], "threads": [1]})
    path = write_suite(tmp, suite)
    out = os.path.join(tmp, "res")
    run("run", path, "--out", out, expect=0)
    first = load_summary(out)
    p = run("run", path, "--out", out, expect=2)
    check("never rewritten" in p.stderr, p.stderr)
    # simulate an interrupted invocation: no summary, one run unfinished
    os.unlink(os.path.join(out, "summary.json"))
    victim = first["runs"][1]["id"]
    os.unlink(os.path.join(out, "runs", victim, "run.json"))
    p = run("run", path, "--out", out, expect=2)  # without --resume: refuses
    run("run", path, "--out", out, "--resume", expect=0)
    s = load_summary(out)
    resumed = {r["id"]: r["resumed"] for r in s["runs"]}
    check(resumed[victim] is False and sum(resumed.values()) == len(resumed) - 1,
          f"resume should rerun only {victim}: {resumed}")
    for a, b in zip(first["runs"], s["runs"]):
        check(a["weights_sha256"] == b["weights_sha256"], f"{a['id']}: weights changed on resume")
    # resuming with another suite file is refused
    suite["train"]["steps"] = 41
    os.unlink(os.path.join(out, "summary.json"))
    p = run("run", write_suite(tmp, suite), "--out", out, "--resume", expect=2)
    check("different suite" in p.stderr, p.stderr)


def train_resume_should_equal_an_uninterrupted_run(tmp):
    suite = tiny_suite("cont", train={"steps": 80, "batch": 24, "optimizer": {
        "name": "adam", "lr": 0.01}})
    path = write_suite(tmp, suite)
    a, b, c = (os.path.join(tmp, x) for x in "abc")
    run("train", path, "--steps", "33", "--out", a, expect=0)
    run("train", path, "--resume", os.path.join(a, "weights.safetensors"), "--out", b, expect=0)
    run("train", path, "--out", c, expect=0)
    p = run("diff", os.path.join(b, "weights.safetensors"), os.path.join(c, "weights.safetensors"),
            expect=0)
    run("train", path, "--out", c, expect=2)  # refuses to overwrite a finished run
    rj = json.load(open(os.path.join(b, "run.json")))
    check(rj["first_step"] == 33 and rj["steps_done"] == 80 and len(rj["losses"]) == 47,
          f"run.json of the resumed run: {rj['first_step']} {rj['steps_done']} {len(rj['losses'])}")


def checkpoint_should_load_in_the_reference_safetensors_package(tmp):
    # needs the PyPI packages safetensors and numpy (tools/check installs them)
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
    suite = tiny_suite("interop")
    path = write_suite(tmp, suite)
    out = os.path.join(tmp, "a")
    run("train", path, "--out", out, expect=0)
    ck = os.path.join(out, "weights.safetensors")
    tensors = load_file(ck)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    want = {"fc1.weight": (16, 8), "fc1.bias": (16,), "fc2.weight": (3, 16), "fc2.bias": (3,),
            "optim.momentum.fc1.weight": (16, 8), "optim.momentum.fc1.bias": (16,),
            "optim.momentum.fc2.weight": (3, 16), "optim.momentum.fc2.bias": (3,)}
    check(shapes == want, f"names/shapes {shapes}")
    check(all(v.dtype == np.float32 for v in tensors.values()), "dtypes")
    with safe_open(ck, framework="numpy") as f:
        meta = f.metadata()
    check(meta["samebits.format"] == "checkpoint/1" and meta["samebits.step"] == "40",
          f"metadata {meta}")
    cfg = json.loads(meta["samebits.config"])
    check(cfg["seed"] == "3" and cfg["backend"] == "blas", f"config {cfg}")
    # values: the per-tensor SHA-256 that samebits inspect reports equal numpy's bytes
    p = run("inspect", "--json", ck, expect=0)
    info = json.loads(p.stdout)
    by_name = {t["name"]: t for t in info["tensors"]}
    for k, v in tensors.items():
        h = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
        check(by_name[k]["sha256"] == h, f"{k}: bytes differ between samebits and safetensors")
    check(np.isfinite(tensors["fc1.weight"]).all(), "non-finite weights")


def pitfalls_suite_should_name_the_stage_and_op_of_every_case(tmp):
    out = os.path.join(tmp, "res")
    p = run("run", os.path.join(SRC, "suites/pitfalls.json"), "--out", out, "-j", "2", expect=1)
    s = load_summary(out)
    checks = {c["name"]: c for c in s["checks"]}
    expect = {  # case check -> (stage, op, step or None)
        "unseeded-shuffle/repeatable": ("data.shuffle", "data/shuffle", 1),
        "unseeded-reshuffle/repeatable": ("data.shuffle", "data/shuffle", 9),  # epoch 2 = step 256/32+1
        "unseeded-augment/repeatable": ("data.augment", "data/augment", 1),
        "unseeded-dropout/repeatable": ("forward", "dropout1/fwd", 1),
        "completion-loader/repeatable": ("data.batch", "data/batch", None),
    }
    lines = p.stdout.splitlines()
    for name, (stage, op, step) in expect.items():
        c = checks[name]
        check(c["status"] == "fail", f"{name}: {c['status']}")
        x = c["comparisons"][0]
        fd = x["first_divergence"]
        check(fd and fd["stage"] == stage and fd["op"] == op and fd["kind"] == "source",
              f"{name}: first divergence {fd}, expected {stage} {op} source")
        if step is not None:
            check(fd["step"] == step, f"{name}: first divergence at step {fd['step']}, expected {step}")
        check(any(o["op"] == op and o["stage"] == stage for o in x["sources"]),
              f"{name}: sources {x['sources']}")
        row = [l for l in lines if l.startswith(name)]
        check(row and op in row[0] and stage in row[0] and "FAIL" in row[0],
              f"{name}: verdict row does not name {op} ({stage}): {row}")
    # fast kernels: a backward batch reduction is a source
    fk = checks["fast-kernels/repeatable"]
    srcs = fk["comparisons"][0]["sources"]
    check(fk["status"] == "fail" and any(
        o["stage"] == "backward" and (o["op"].endswith("bias.grad") or o["op"].endswith("matmul.bwd_weight"))
        for o in srcs), f"fast-kernels sources: {srcs}")
    # thread count in deterministic mode: the first op that depends on it, or a pass (none does)
    tc = checks["thread-count/threads-agree"]
    if tc["status"] == "fail":
        fd = tc["comparisons"][0]["first_divergence"]
        check(fd["kind"] == "source" and "matmul" in fd["op"], f"thread-count: {fd}")
    else:
        check(tc["status"] == "pass", f"thread-count: {tc['status']}")
    check(checks["control/repeatable"]["status"] == "pass", "the control must pass bitwise")
    # unseeded streams are recorded with the entropy they drew (to replay a run)
    rid = [r for r in s["runs"] if r["id"].startswith("unseeded-shuffle/")][0]
    rj = json.load(open(os.path.join(out, rid["dir"], "run.json")))
    check(rj["unseeded_streams"] and rj["unseeded_streams"][0]["stream"] == "data/shuffle"
          and rj["unseeded_streams"][0]["entropy_seed"].isdigit(), f"run.json: {rj['unseeded_streams']}")


def recheck_should_flag_nondeterministic_ops_within_one_run(tmp):
    suite = tiny_suite("recheck", repeats=1, recheck=True,
                       data={"kind": "blobs", "samples": 256, "features": 8, "classes": 3,
                             "augment": {"noise": 0.1}},
                       rng={"unseeded": ["data/augment"]},
                       matrix={"seeds": [3], "backends": ["ref", "blas"], "modes": ["deterministic"],
                               "threads": [1]},
                       checks=[{"name": "backends", "kind": "cross", "axis": "backends",
                                "expect": {"atol": 10}}])
    out = os.path.join(tmp, "res")
    run("run", write_suite(tmp, suite), "--out", out, expect=0)
    s = load_summary(out)
    for r in s["runs"]:
        ops = r.get("nondeterministic_ops", [])
        check([o["op"] for o in ops] == ["data/augment"],
              f"{r['id']}: recheck should flag exactly data/augment, got {ops}")
        check(ops[0]["first_step"] == 1 and ops[0]["steps"] == 40, f"{r['id']}: {ops}")
    # a fully seeded deterministic run flags nothing; fast+perturb flags the reductions
    suite2 = tiny_suite("recheck2", repeats=1,
                        matrix={"seeds": [3], "backends": ["blas"], "modes": ["deterministic", "fast"],
                                "threads": [2]}, perturb=True,
                        checks=[{"name": "modes", "kind": "cross", "axis": "modes",
                                 "expect": {"atol": 1}}])
    out2 = os.path.join(tmp, "res2")
    run("run", write_suite(tmp, suite2), "--out", out2, "--recheck", expect=0)
    s2 = load_summary(out2)
    det = [r for r in s2["runs"] if r["config"]["mode"] == "deterministic"][0]
    fast = [r for r in s2["runs"] if r["config"]["mode"] == "fast"][0]
    check(not det.get("nondeterministic_ops"), f"deterministic run flagged {det.get('nondeterministic_ops')}")
    flagged = {o["op"] for o in fast.get("nondeterministic_ops", [])}
    check(any(o.endswith("bias.grad") or o.endswith("matmul.bwd_weight") for o in flagged),
          f"fast run should flag its backward reductions, got {flagged}")


def trace_diff_should_name_the_source_between_two_runs(tmp):
    suite = tiny_suite("tdiff", rng={"unseeded": ["data/shuffle"]},
                       matrix={"seeds": [3], "backends": ["ref"], "modes": ["deterministic"],
                               "threads": [1]})
    out = os.path.join(tmp, "res")
    run("run", write_suite(tmp, suite), "--out", out, expect=1)
    a = os.path.join(out, "runs", "seed3-ref-deterministic-t1-r0")
    b = os.path.join(out, "runs", "seed3-ref-deterministic-t1-r1")
    p = run("trace-diff", a, b, expect=1)
    check("data/shuffle" in p.stdout and "data.shuffle" in p.stdout, p.stdout)
    p = run("trace-diff", a, os.path.join(a, "trace.sbt"), expect=0)
    p = run("trace-diff", "--json", a, b, expect=1)
    j = json.loads(p.stdout)
    check(j["first_divergence"]["op"] == "data/shuffle", f"{j.get('first_divergence')}")
    with open(os.path.join(tmp, "bad.sbt"), "wb") as f:
        f.write(b"SBTRACE\0garbage")
    p = run("trace-diff", a, os.path.join(tmp, "bad.sbt"), expect=2)
    check(len(p.stderr.strip().splitlines()) == 1 and "bad.sbt" in p.stderr, p.stderr)


def canonical_suite_should_give_the_same_bits_on_any_threads_backend_and_simd_path(tmp):
    # suites/canonical.json: cross checks over threads (1, 2, 3) and backends
    # (ref, blas) expecting bitwise, in canonical mode; then the same suite
    # with blas forced onto its scalar GEMM path must give the same weights
    out = os.path.join(tmp, "res")
    p = run("run", os.path.join(SRC, "suites/canonical.json"), "--out", out, "-j", "2", expect=0)
    check("verdict: PASS" in p.stdout, f"no PASS verdict in:\n{p.stdout}")
    s = load_summary(out)
    check(all(r["status"] == "ok" and r["config"]["mode"] == "canonical" for r in s["runs"]),
          "a run failed or was not canonical")
    check(all(c["status"] == "pass" for c in s["checks"]) and len(s["checks"]) == 12,
          f"checks: {[(c['name'], c['status']) for c in s['checks']]}")
    out2 = os.path.join(tmp, "scalar")
    env = dict(os.environ, SB_CANONICAL_ISA="scalar")
    p2 = subprocess.run([SAMEBITS, "run", os.path.join(SRC, "suites/canonical.json"), "--out", out2,
                         "-j", "2"], capture_output=True, text=True, timeout=600, env=env)
    check(p2.returncode == 0, f"scalar path: exit {p2.returncode}\n{p2.stdout}\n{p2.stderr}")
    a = {r["id"]: r["weights_sha256"] for r in s["runs"]}
    b = {r["id"]: r["weights_sha256"] for r in load_summary(out2)["runs"]}
    check(a == b, "the scalar GEMM path gave other weights than the default path")


def cnn_suite_should_pass_against_its_blessed_baseline(tmp):
    # suites/cnn.json: the CNN on 1x28x28 shapes, repeatable (bitwise), cross
    # over threads and backends, and its blessed baselines in baselines/cnn
    out = os.path.join(tmp, "res")
    p = run("run", os.path.join(SRC, "suites/cnn.json"), "--out", out,
            "--baselines", os.path.join(SRC, "baselines"), "-j", "2", expect=0)
    check("verdict: PASS" in p.stdout, f"no PASS verdict in:\n{p.stdout}")
    s = load_summary(out)
    check(all(r["status"] == "ok" for r in s["runs"]), "a run failed")
    check(all(c["status"] == "pass" and c["comparisons"] for c in s["checks"]),
          f"checks: {[(c['name'], c['status']) for c in s['checks']]}")
    check({c["kind"] for c in s["checks"]} == {"repeatable", "cross", "baseline"},
          "cnn.json must have repeatable, cross and baseline checks")
    run_dir = os.path.join(out, "runs", "seed1-ref-deterministic-t1-r0")
    with open(os.path.join(run_dir, "trace.sbt"), "rb") as f:
        trace = f.read()
    for op in ("data/augment", "conv1/conv.fwd", "conv1/relu.fwd", "pool1/maxpool.fwd",
               "conv2/conv.fwd", "pool2/maxpool.fwd", "fc/matmul.fwd", "loss/xent.fwd",
               "pool2/maxpool.bwd", "conv2/conv.bwd", "conv1/conv.bwd", "adam/update"):
        check(op.encode() in trace, f"the trace names no op {op}")
    p = run("inspect", "--json", os.path.join(run_dir, "weights.safetensors"), expect=0)
    shapes = {t["name"]: t["shape"] for t in json.loads(p.stdout)["tensors"]}
    check(shapes.get("conv1.weight") == [4, 1, 3, 3] and shapes.get("conv2.weight") == [8, 4, 3, 3]
          and shapes.get("fc.weight") == [6, 8 * 7 * 7], f"not PyTorch's layouts: {shapes}")


def bench_trace_should_print_one_json_line_per_configuration(tmp):
    # samebits bench --trace --json: untraced and traced blocks alternate in
    # one process; every configuration gives positive steps/s for both and
    # an overhead equal to the ratio of the medians' pairs (not a timing
    # assertion: only that the numbers exist and are consistent), and no
    # trace file is left behind
    before = set(os.listdir("/tmp"))
    p = run("bench", "--model", "smoke", "--threads", "1,2", "--steps", "5", "--reps", "3",
            "--trace", "--json", expect=0)
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    check(len(rows) == 2 * 2 * 3, f"want 12 rows (2 optimizers x 2 thread counts x 3 modes): {rows}")
    check({(r["optimizer"], r["threads"], r["mode"]) for r in rows} ==
          {(o, t, m) for o in ("sgd", "adam") for t in (1, 2)
           for m in ("deterministic", "fast", "canonical")}, f"configurations: {rows}")
    for r in rows:
        check(r["model"] == "smoke" and r["steps_per_s"] > 0 and r["traced_steps_per_s"] > 0
              and r["trace_overhead"] > -1, f"bad row {r}")
        # the bytes a traced step hashes: the smoke MLP's step writes at
        # least its parameters and gradients (1,732 floats each) and its
        # batch (32 x 16 floats); the floor is those bytes at the measured
        # rate over the untraced step (rounded as printed: 1%)
        want = r["hashed_bytes_per_step"] / r["hash_bytes_per_s"] * r["steps_per_s"]
        check(r["hashed_bytes_per_step"] > 2 * 1732 * 4 + 32 * 16 * 4
              and r["hash_bytes_per_s"] > 0 and abs(r["hash_floor"] - want) <= 0.01 * want + 1e-4,
              f"bad hashing figures {r}")
    left = {f for f in set(os.listdir("/tmp")) - before if f.startswith("samebits-bench-")}
    check(not left, f"trace files left behind: {left}")
    p = run("bench", "--steps", "0", expect=2)
    check("bad or incomplete option '--steps'" in p.stderr, p.stderr)


def bench_gemm_should_report_the_machine_peak_next_to_each_shape(tmp):
    # samebits bench --gemm: the FP32 FMA peak is measured in the same run
    # (bench_peak.c) and every row carries it, so "% of peak" is read against
    # today's machine; one row per shape and thread count (not a timing
    # assertion: only that the numbers exist)
    p = run("bench", "--gemm", "--only", "mlp784 fc3 dW", "--threads", "1,2", "--reps", "1",
            "--seconds", "0.02", "--json", expect=0)
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    check([r["threads"] for r in rows] == [1, 2], f"want one row per thread count: {rows}")
    for r in rows:
        check(r["shape"] == "mlp784 fc3 dW" and r["peak_gflops"] > 0 and r["canonical_gflops"] > 0
              and r["openblas_gflops"] > 0, f"bad row {r}")
    p = run("bench", "--gemm", "--only", "mlp784 fc3", "--threads", "1", "--reps", "1",
            "--seconds", "0.02", expect=0)
    check("FMA probe, measured now): " in p.stdout and "% peak" in p.stdout, p.stdout)
    p = run("bench", "--gemm", "--seconds", "0", expect=2)
    check("bad or incomplete option '--seconds'" in p.stderr, p.stderr)


def rnn_suite_should_pass_against_its_blessed_baseline(tmp):
    # suites/rnn.json: the GRU on chars, repeatable (bitwise), cross over
    # threads and backends, and its blessed baselines in baselines/rnn; the
    # loss falls, the trace names every op of the model and the checkpoint
    # holds nn.Embedding / nn.GRU / nn.Linear's names and shapes
    out = os.path.join(tmp, "res")
    p = run("run", os.path.join(SRC, "suites/rnn.json"), "--out", out,
            "--baselines", os.path.join(SRC, "baselines"), "-j", "2", expect=0)
    check("verdict: PASS" in p.stdout, f"no PASS verdict in:\n{p.stdout}")
    s = load_summary(out)
    check(all(r["status"] == "ok" for r in s["runs"]), "a run failed")
    check(all(c["status"] == "pass" and c["comparisons"] for c in s["checks"]),
          f"checks: {[(c['name'], c['status']) for c in s['checks']]}")
    check({c["kind"] for c in s["checks"]} == {"repeatable", "cross", "baseline"},
          "rnn.json must have repeatable, cross and baseline checks")
    run_dir = os.path.join(out, "runs", "seed1-ref-deterministic-t1-r0")
    with open(os.path.join(run_dir, "run.json")) as f:
        losses = json.load(f)["losses"]
    first, last = sum(losses[:5]) / 5, sum(losses[-20:]) / 20
    check(last < first / 3, f"the loss did not fall clearly: {first:.3f} -> {last:.3f}")
    with open(os.path.join(run_dir, "trace.sbt"), "rb") as f:
        trace = f.read()
    for op in ("data/tokens", "data/time_major", "embed/lookup.fwd", "gru/input.fwd",
               "gru/step.fwd", "fc/matmul.fwd", "fc/bias.fwd", "loss/xent.fwd", "loss/xent.bwd",
               "fc/matmul.bwd_weight", "fc/bias.grad", "fc/matmul.bwd_input", "gru/step.bwd",
               "gru/weight_hh.grad", "gru/bias_hh.grad", "gru/weight_ih.grad", "gru/bias_ih.grad",
               "gru/input.bwd", "embed/scatter_add.bwd", "adam/update"):
        check(op.encode() in trace, f"the trace names no op {op}")
    p = run("inspect", "--json", os.path.join(run_dir, "weights.safetensors"), expect=0)
    shapes = {t["name"]: t["shape"] for t in json.loads(p.stdout)["tensors"]
              if not t["name"].startswith("optim.")}
    want = {"embed.weight": [27, 16], "gru.weight_ih_l0": [192, 16],
            "gru.weight_hh_l0": [192, 64], "gru.bias_ih_l0": [192], "gru.bias_hh_l0": [192],
            "fc.weight": [27, 64], "fc.bias": [27]}
    check(shapes == want, f"not PyTorch's names and layouts: {shapes}")


def transformer_suite_should_pass_against_its_blessed_baseline(tmp):
    # suites/transformer.json: the tiny GPT-style transformer on chars,
    # repeatable (bitwise), cross over threads and backends, and its blessed
    # baselines in baselines/transformer; the loss falls, the trace names
    # every op of the model as a layer path and the checkpoint holds the torch
    # module's names and shapes (tests/parity_transformer.py)
    out = os.path.join(tmp, "res")
    p = run("run", os.path.join(SRC, "suites/transformer.json"), "--out", out,
            "--baselines", os.path.join(SRC, "baselines"), "-j", "2", expect=0)
    check("verdict: PASS" in p.stdout, f"no PASS verdict in:\n{p.stdout}")
    s = load_summary(out)
    check(all(r["status"] == "ok" for r in s["runs"]), "a run failed")
    check(all(c["status"] == "pass" and c["comparisons"] for c in s["checks"]),
          f"checks: {[(c['name'], c['status']) for c in s['checks']]}")
    check({c["kind"] for c in s["checks"]} == {"repeatable", "cross", "baseline"},
          "transformer.json must have repeatable, cross and baseline checks")
    run_dir = os.path.join(out, "runs", "seed1-ref-deterministic-t1-r0")
    with open(os.path.join(run_dir, "run.json")) as f:
        losses = json.load(f)["losses"]
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    check(last < first / 2, f"the loss did not fall clearly: {first:.3f} -> {last:.3f}")
    with open(os.path.join(run_dir, "trace.sbt"), "rb") as f:
        trace = f.read()
    block = ("ln1.fwd", "attn.qkv/matmul.fwd", "attn.qkv/bias.fwd", "attn/split_heads.fwd",
             "attn/sdpa.fwd", "attn/merge_heads.fwd", "attn.proj/matmul.fwd", "attn.proj/bias.fwd",
             "residual1.fwd", "ln2.fwd", "mlp.fc/matmul.fwd", "mlp.fc/bias.fwd", "mlp/gelu.fwd",
             "mlp.proj/matmul.fwd", "mlp.proj/bias.fwd", "residual2.fwd", "residual2.bwd",
             "mlp.proj/matmul.bwd_weight", "mlp.proj/bias.grad", "mlp.proj/matmul.bwd_input",
             "mlp/gelu.bwd", "mlp.fc/matmul.bwd_weight", "ln2.bwd", "residual1.bwd",
             "attn.proj/matmul.bwd_input", "attn/merge_heads.bwd", "attn/sdpa.bwd",
             "attn/split_heads.bwd", "attn.qkv/matmul.bwd_weight", "attn.qkv/bias.grad",
             "attn.qkv/matmul.bwd_input", "ln1.bwd")
    ops = ["data/tokens", "wte/lookup.fwd", "wpe/add.fwd", "ln_f.fwd", "head/matmul.fwd",
           "loss/xent.fwd", "loss/xent.bwd", "head/matmul.bwd_weight", "head/matmul.bwd_input",
           "ln_f.bwd", "wpe/add.bwd", "wte/scatter_add.bwd", "adam/update"]
    ops += [f"blocks.{i}/{op}" for i in (0, 1) for op in block]
    for op in ops:
        check(op.encode() in trace, f"the trace names no op {op}")
    p = run("inspect", "--json", os.path.join(run_dir, "weights.safetensors"), expect=0)
    shapes = {t["name"]: t["shape"] for t in json.loads(p.stdout)["tensors"]
              if not t["name"].startswith("optim.")}
    V, T, C, M = 27, 32, 64, 256
    want = {"wte.weight": [V, C], "wpe.weight": [T, C], "ln_f.weight": [C], "ln_f.bias": [C],
            "head.weight": [V, C]}
    for i in (0, 1):
        b = f"blocks.{i}."
        want.update({b + "ln1.weight": [C], b + "ln1.bias": [C],
                     b + "attn.qkv.weight": [3 * C, C], b + "attn.qkv.bias": [3 * C],
                     b + "attn.proj.weight": [C, C], b + "attn.proj.bias": [C],
                     b + "ln2.weight": [C], b + "ln2.bias": [C],
                     b + "mlp.fc.weight": [M, C], b + "mlp.fc.bias": [M],
                     b + "mlp.proj.weight": [C, M], b + "mlp.proj.bias": [C]})
    check(shapes == want, f"not the torch module's names and layouts: {shapes}")


# ------------------------------------------------- environment fingerprint

class Skip(Exception):
    """The case cannot run in this build (exit 77: CTest reports it skipped)."""


def samebits_env(*args, env=None):
    p = subprocess.run([SAMEBITS, "env", *args], capture_output=True, text=True, timeout=60,
                       env=env)
    if p.returncode == 2 and "unknown command 'env'" in p.stderr:
        raise Skip("this samebits has no 'env' command yet (harness/main.c dispatch)")
    check(p.returncode == 0, f"samebits env {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def cpuinfo(key):
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, sep, v = line.partition(":")
            if sep and k.strip() == key:
                return v.strip()
    return None


def read_st_metadata(path):
    import struct
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


ENV_SECTIONS = {
    "samebits": ("version", "compiler", "codegen_flags", "build_flags"),
    "os": ("name", "kernel"),
    "cpu": ("arch", "model", "isa", "logical_cpus"),
    "libc": ("version",),
    "blas": ("library", "version", "core", "threads"),
    "libraries": ("cjson", "openssl", "xxhash"),
    "cuda": ("driver", "runtime", "cudnn", "gpu"),
}


def check_fingerprint(fp, where):
    check(fp.get("schema") == "samebits.environment/1", f"{where}: schema {fp.get('schema')}")
    check(isinstance(fp.get("warnings"), list), f"{where}: no warnings list")
    for sec, keys in ENV_SECTIONS.items():
        for k in keys:
            check(k in fp.get(sec, {}), f"{where}: {sec}.{k} missing")
    check(isinstance(fp.get("env"), dict), f"{where}: no env object")
    check("blas.core" in fp["can_change_bits"] and "os.kernel" not in fp["can_change_bits"],
          f"{where}: can_change_bits {fp['can_change_bits']}")


def env_command_should_print_the_fingerprint_with_warnings_first(tmp):
    fp = json.loads(samebits_env("--json").stdout)
    check_fingerprint(fp, "samebits env --json")
    model = cpuinfo("model name")
    if model:
        check(fp["cpu"]["model"] == model, f"cpu.model {fp['cpu']['model']!r}, /proc/cpuinfo {model!r}")
    check(fp["cpu"]["logical_cpus"] == os.cpu_count(), f"logical_cpus {fp['cpu']['logical_cpus']}")
    # a variable that changes numerics is captured; with no GPU, CUDA_VISIBLE_DEVICES is flagged
    env = dict(os.environ, MKL_CBWR="COMPATIBLE", CUDA_VISIBLE_DEVICES="0")
    fp2 = json.loads(samebits_env("--json", env=env).stdout)
    check(fp2["env"].get("MKL_CBWR") == "COMPATIBLE", f"env {fp2['env']}")
    text = samebits_env(env=env).stdout
    check(text.startswith("warnings:"), f"listing should open with the warnings:\n{text[:300]}")
    if fp2["cuda"]["gpu"] == "no device":
        codes = [w["code"] for w in fp2["warnings"]]
        check("cuda-visible-devices" in codes, f"warnings {codes}")
        check(text.index("CUDA_VISIBLE_DEVICES=0 is set") < text.index("\ncpu\n"),
              f"the warning should come before the fields:\n{text}")
    p = subprocess.run([SAMEBITS, "env", "--bogus"], capture_output=True, text=True)
    check(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, f"bad option: {p.stderr}")


def runs_should_record_the_environment_in_run_json_checkpoint_and_summary(tmp):
    suite = tiny_suite("envrec", matrix={"seeds": [3], "backends": ["blas"],
                                         "modes": ["deterministic"], "threads": [1, 2]})
    out = os.path.join(tmp, "res")
    env = dict(os.environ, MKL_CBWR="COMPATIBLE")
    p = subprocess.run([SAMEBITS, "run", write_suite(tmp, suite), "--out", out],
                       capture_output=True, text=True, timeout=600, env=env)
    check(p.returncode == 0, f"run: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    s = load_summary(out)
    check_fingerprint(s["environment"], "summary.json")
    check(s["environment"]["env"].get("MKL_CBWR") == "COMPATIBLE", "summary env lacks MKL_CBWR")
    for r in s["runs"]:
        rj = json.load(open(os.path.join(out, r["dir"], "run.json")))
        fp = rj["environment"]
        check_fingerprint(fp, f"{r['id']}/run.json")
        threads = r["config"]["threads"]
        check(fp["blas"]["threads"] == threads, f"{r['id']}: blas.threads {fp['blas']['threads']}")
        check(fp["env"].get("OPENBLAS_NUM_THREADS") == str(threads) and
              fp["env"].get("MKL_CBWR") == "COMPATIBLE", f"{r['id']}: env {fp['env']}")
        meta = read_st_metadata(os.path.join(out, r["checkpoint"]))
        check(json.loads(meta["samebits.environment"]) == fp,
              f"{r['id']}: checkpoint metadata environment differs from run.json's")


def baseline_from_another_environment_should_name_the_fields_and_use_the_fallback(tmp):
    suite = tiny_suite("envbase", repeats=1, checks=[
        {"name": "bitwise", "kind": "baseline", "expect": "bitwise"},
        {"name": "with-fallback", "kind": "baseline", "expect": "bitwise",
         "fallback": {"atol": 1}}])
    cell = "seed3-blas-deterministic-t2"
    bdir = os.path.join(tmp, "baselines")
    run("bless", write_suite(tmp, suite), "--baselines", bdir, cwd=tmp, expect=0)
    mpath = os.path.join(bdir, "envbase", "manifest.json")
    man = json.load(open(mpath))
    check_fingerprint(man["environment"], "manifest.json")
    check_fingerprint(man["cells"][cell]["environment"], f"manifest cells.{cell}")
    suite["train"]["optimizer"]["lr"] = 0.0501  # the weights move (as a new stack would)
    path = write_suite(tmp, suite)

    # same environment: bitwise everywhere, no environment named
    out = os.path.join(tmp, "same")
    p = run("run", path, "--out", out, "--baselines", bdir, expect=1)
    checks = {c["name"]: c for c in load_summary(out)["checks"]}
    for name in ("bitwise", "with-fallback"):
        c = checks[name]
        x = c["comparisons"][0]
        check(c["status"] == "fail" and x["environment_differs"] == [] and
              x["expect_used"] == "expect" and "another environment" not in c.get("message", ""),
              f"same environment, {name}: {c}")

    # the baseline's cell comes from a machine whose OpenBLAS ran another kernel
    real = man["cells"][cell]["environment"]["blas"]["core"]
    other = "Haswell" if real != "Haswell" else "SkylakeX"
    man["cells"][cell]["environment"]["blas"]["core"] = other
    with open(mpath, "w") as f:
        json.dump(man, f, indent=1)
    out = os.path.join(tmp, "other")
    p = run("run", path, "--out", out, "--baselines", bdir, expect=1)
    checks = {c["name"]: c for c in load_summary(out)["checks"]}
    c = checks["bitwise"]
    x = c["comparisons"][0]
    check(c["status"] == "fail", f"bitwise: {c['status']}")
    check(x["environment_differs"] == [{"field": "blas.core", "baseline": other, "run": real}],
          f"environment_differs {x['environment_differs']}")
    check(f"blas.core {other} \u2192 {real}" in c["message"] and
          "another environment" in c["message"], f"message: {c['message']}")
    row = [l for l in p.stdout.splitlines() if l.startswith("bitwise ")]
    check(row and "blas.core" in row[0], f"verdict row should name blas.core: {row}")
    c = checks["with-fallback"]
    x = c["comparisons"][0]
    check(c["status"] == "pass" and x["status"] == "pass" and x["expect_used"] == "fallback",
          f"with-fallback: {c}")
    check(c["fallback"] == {"atol": 1} and "fallback" in c["message"] and
          "blas.core" in c["message"], f"with-fallback message: {c.get('message')}")

    # a baseline that records no environment: noted, compared as declared
    del man["cells"][cell]["environment"]
    with open(mpath, "w") as f:
        json.dump(man, f, indent=1)
    out = os.path.join(tmp, "none")
    run("run", path, "--out", out, "--baselines", bdir, expect=1)
    x = {c["name"]: c for c in load_summary(out)["checks"]}["with-fallback"]["comparisons"][0]
    check("environment_differs" not in x and "records no environment" in x["environment_note"]
          and x["expect_used"] == "expect", f"no recorded environment: {x}")


def mlp_suite_should_pass_against_its_blessed_baseline(tmp):
    out = os.path.join(tmp, "res")
    run("run", os.path.join(SRC, "suites/mlp.json"), "--out", out,
        "--baselines", os.path.join(SRC, "baselines"), "-j", "2", expect=0)
    s = load_summary(out)
    names = {c["name"]: c["status"] for c in s["checks"]}
    check(all(v == "pass" for v in names.values()), f"checks: {names}")
    check({"canonical-any-threads", "canonical-any-backend", "ref-baseline",
           "canonical-baseline"} <= set(names), f"checks: {sorted(names)}")


def malformed_manifest_should_be_an_error_naming_the_file_and_place(tmp):
    suite = tiny_suite("badman", checks=[{"name": "base", "kind": "baseline", "expect": "bitwise"}])
    path = write_suite(tmp, suite)
    bdir = os.path.join(tmp, "baselines")
    run("bless", path, "--baselines", bdir, cwd=tmp, expect=0)
    man = os.path.join(bdir, "badman", "manifest.json")
    with open(man, "w") as f:
        f.write('{"schema": "samebits.baseline/1",\n "cells": {"x": [1, 2,,]}}\n')
    out = os.path.join(tmp, "res")
    p = run("run", path, "--out", out, "--baselines", bdir, expect=2)
    c = load_summary(out)["checks"][0]
    check(c["status"] == "error" and man in c["message"] and "line 2, column" in c["message"],
          f"message should name {man} and the line: {c.get('message')}")
    # a valid manifest with anything after it, or with a key given twice
    # (JSON leaves duplicates to the reader; ours refuses to pick one)
    run("bless", path, "--baselines", bdir, "--force", cwd=tmp, expect=0)
    with open(man) as f:
        good = f.read()
    bad = {"trailing": (good + "\n{}\n", "line %d, column" % (good.count("\n") + 2)),
           "duplicate": (re.sub(r'"cells":\s*\{', '"cells": {"x": 1, "x": 2, ', good, count=1),
                         "cells.x: duplicate key")}
    for name, (text, where) in bad.items():
        with open(man, "w") as f:
            f.write(text)
        out = os.path.join(tmp, "res-" + name)
        run("run", path, "--out", out, "--baselines", bdir, expect=2)
        c = load_summary(out)["checks"][0]
        check(c["status"] == "error" and man in c["message"] and where in c["message"],
              f"{name}: message should name {man} and '{where}': {c.get('message')}")


def main():
    case = sys.argv[3]
    fn = globals().get(case)
    if fn is None:
        print(f"unknown case {case}", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sb_e2e_")
    try:
        fn(tmp)
    except AssertionError as e:
        print(f"FAIL - {case}: {e}", file=sys.stderr)
        return 1
    except Skip as e:
        print(f"skip - {case}: {e}")
        return 77
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok - {case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

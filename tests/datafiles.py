#!/usr/bin/env python3
"""datafiles.py — real data files through the samebits command: .npy files
written by numpy itself, CSV and IDX suites trained with `samebits run`,
malformed files rejected by run, train and data export, and `data export`
checked against the values the training trace stored.

Usage: datafiles.py SAMEBITS SOURCE_DIR CASE (tests/datafile.cmake registers
each case). Needs numpy and safetensors (SB_PYTHON). A case fails by raising.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

SAMEBITS = os.path.abspath(sys.argv[1])


def run(*args, cwd=None, expect=None):
    p = subprocess.run([SAMEBITS, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"samebits {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def blobs(n=120, f=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.normal(0, 3, (k, f))[y] + rng.normal(0, 1, (n, f))
    return x.astype(np.float32), y


def write_idx(path, a, type_code):
    a = np.ascontiguousarray(a)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, type_code, a.ndim))
        fh.write(struct.pack(">" + "I" * a.ndim, *a.shape))
        fh.write(a.astype(a.dtype.newbyteorder(">")).tobytes())


def suite(name, data, **over):
    s = {"name": name,
         "model": {"kind": "mlp", "hidden": [8]},
         "data": data,
         "train": {"steps": 12, "batch": 16, "optimizer": {"name": "adam", "lr": 0.01}},
         "matrix": {"backends": ["ref", "blas"]},
         "repeats": 2,
         "checks": [{"name": "repeats", "kind": "repeatable", "expect": "bitwise"}]}
    s.update(over)
    return s


def write_suite(d, s, fname=None):
    p = os.path.join(d, fname or s["name"] + ".json")
    with open(p, "w") as fh:
        json.dump(s, fh)
    return p


def export(suite_path, out, *extra, cwd=None):
    run("data", "export", suite_path, "--out", out, *extra, cwd=cwd, expect=0)
    return load_file(out)


# ---------------------------------------------------------------------------

def numpy_written_files_should_load_bitwise_in_every_dtype_and_order(tmp):
    """np.save output in several dtypes, byte orders and Fortran order: with
    shuffle "none" and batch = samples, the first exported batch is x itself."""
    x, y = blobs(n=40, f=5)
    variants = {
        "f4": x, "f8": x.astype(np.float64), "be_f8": x.astype(">f8"),
        "fortran": np.asfortranarray(x), "i2": (x * 100).astype(np.int16),
        "u1_3d": (np.abs(x) * 10).astype(np.uint8).reshape(40, 5, 1),
    }
    labels = {"i8": y.astype(np.int64), "u1": y.astype(np.uint8), "be_i4": y.astype(">i4")}
    for i, (name, xv) in enumerate(variants.items()):
        yname = list(labels)[i % len(labels)]
        np.save(os.path.join(tmp, f"x_{name}.npy"), xv)
        np.save(os.path.join(tmp, f"y_{yname}.npy"), labels[yname])
        s = suite(f"np{i}", {"kind": "npy", "x": f"x_{name}.npy", "y": f"y_{yname}.npy",
                             "shuffle": "none"},
                  train={"steps": 1, "batch": 40, "optimizer": {"name": "sgd", "lr": 0.1}})
        t = export(write_suite(tmp, s), os.path.join(tmp, f"b{i}.safetensors"))
        want = np.asarray(xv, dtype=np.float64).astype(np.float32).reshape(40, -1)
        got = t["x"][0]
        check(got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}")
        check(got.tobytes() == want.tobytes(), f"{name}: values differ from numpy's")
        check(np.array_equal(t["y"][0], y), f"{name}/{yname}: labels differ")


def suites_on_each_format_should_train_repeatably_from_a_copied_suite(tmp):
    """npy, CSV and IDX suites pass a bitwise repeatable check under `run`, whose
    children read a copy of the suite in the results folder: paths resolve
    against the original suite's folder, started from another directory."""
    data_dir = os.path.join(tmp, "suites")
    os.makedirs(os.path.join(data_dir, "data"))
    x, y = blobs()
    np.save(os.path.join(data_dir, "data", "x.npy"), x)
    np.save(os.path.join(data_dir, "data", "y.npy"), y)
    with open(os.path.join(data_dir, "data", "t.csv"), "w") as fh:
        fh.write(",".join([f"f{i}" for i in range(x.shape[1])] + ["label"]) + "\n")
        for r, l in zip(x, y):
            fh.write(",".join(repr(float(v)) for v in r) + f",{l}\n")
    img = np.clip((x - x.min()) * 20, 0, 255).astype(np.uint8).reshape(-1, 2, 3)
    write_idx(os.path.join(data_dir, "data", "x.idx"), img, 0x08)
    write_idx(os.path.join(data_dir, "data", "y.idx"), y.astype(np.uint8), 0x08)
    kinds = {
        "npy": {"kind": "npy", "x": "data/x.npy", "y": "data/y.npy", "augment": {"noise": 0.1}},
        "csv": {"kind": "csv", "path": "data/t.csv", "header": True, "label_column": "label"},
        "idx": {"kind": "idx", "x": "data/x.idx", "y": "data/y.idx", "scale": 1 / 255,
                "classes": 4},
    }
    elsewhere = os.path.join(tmp, "elsewhere")
    os.makedirs(elsewhere)
    for kind, data in kinds.items():
        sp = write_suite(data_dir, suite("fmt-" + kind, data))
        out = os.path.join(tmp, "res-" + kind)
        run("run", sp, "--out", out, cwd=elsewhere, expect=0)
        summ = json.load(open(os.path.join(out, "summary.json")))
        check(all(c["status"] == "pass" for c in summ["checks"]), f"{kind}: {summ['checks']}")
        rj = json.load(open(os.path.join(out, "runs", summ["runs"][0]["id"], "run.json")))
        files = rj["data_files"]
        check(len(files) == (1 if kind == "csv" else 2), f"{kind}: data_files {files}")
        for f in files:
            check(os.path.isabs(f["path"]) and os.path.exists(f["path"]), f"{kind}: {f}")
            import hashlib
            check(f["sha256"] == hashlib.sha256(open(f["path"], "rb").read()).hexdigest(),
                  f"{kind}: sha256 of {f['path']}")
        cfg = rj["config"]["data"]
        check(cfg["samples"] == 120 and cfg["features"] == 6, f"{kind}: {cfg}")
        check(cfg["classes"] == (4 if kind == "idx" else 3), f"{kind}: classes {cfg['classes']}")


def malformed_data_should_exit_2_with_one_line_and_write_nothing(tmp):
    x, y = blobs(n=30)
    np.save(os.path.join(tmp, "x.npy"), x)
    np.save(os.path.join(tmp, "y.npy"), y)
    with open(os.path.join(tmp, "x.npy"), "r+b") as fh:  # truncate the data
        fh.truncate(os.path.getsize(os.path.join(tmp, "x.npy")) - 7)
    with open(os.path.join(tmp, "bad.csv"), "w") as fh:
        fh.write("1,2,0\n3,abc,1\n4,5,1\n")
    cases = {
        "npy": ({"kind": "npy", "x": "x.npy", "y": "y.npy"}, "x.npy: data: truncated"),
        "csv": ({"kind": "csv", "path": "bad.csv"},
                'bad.csv: row 2, column 2: expected a number, got "abc"'),
        "missing": ({"kind": "idx", "x": "nope.idx", "y": "y.npy"}, "nope.idx: cannot open"),
    }
    for name, (data, want) in cases.items():
        sp = write_suite(tmp, suite("bad-" + name, data))
        for args in (["run", sp, "--out", os.path.join(tmp, "out-run-" + name)],
                     ["train", sp, "--out", os.path.join(tmp, "out-train-" + name)],
                     ["data", "export", sp, "--out", os.path.join(tmp, name + ".safetensors")]):
            p = run(*args, expect=2)
            lines = p.stderr.strip().splitlines()
            check(len(lines) == 1 and want in lines[0], f"{args[0]} {name}: stderr {p.stderr!r}")
            check(not os.path.exists(args[-1]), f"{args[0]} {name}: left {args[-1]} behind")


def read_trace(path):
    """(records, blob reader) of a trace.sbt (README: Trace file)."""
    b = open(path, "rb").read()
    check(b[:8] == b"SBTRACE\0", "trace magic")
    _, recsize, count, _ = struct.unpack_from("<IIQQ", b, 8)
    recs = []
    for i in range(count):
        step, stage, flags, op, n_out = struct.unpack_from("<IHHII", b, 32 + i * recsize)
        values = struct.unpack_from("<Q", b, 32 + i * recsize + 56)[0]
        vals = np.frombuffer(b, np.float32, n_out, values) if values else None
        recs.append((step, stage, vals))
    return recs


def export_should_equal_the_batches_the_trace_recorded(tmp):
    """Training stores the data stages' output values at snapshot steps (1, 2,
    4, 8, … and the last); the exported batches must equal them bitwise (the
    C test test_datafile compares the hashes of every step)."""
    x, y = blobs(n=50)
    np.save(os.path.join(tmp, "x.npy"), x)
    np.save(os.path.join(tmp, "y.npy"), y)
    for aug in (False, True):
        data = {"kind": "npy", "x": "x.npy", "y": "y.npy"}
        if aug:
            data["augment"] = {"noise": 0.5, "feature_drop": 0.1}
        s = suite(f"exp{int(aug)}", data,
                  train={"steps": 9, "batch": 16, "optimizer": {"name": "sgd", "lr": 0.05}})
        sp = write_suite(tmp, s)
        rdir = os.path.join(tmp, f"train{int(aug)}")
        run("train", sp, "--out", rdir, "--seed", "5", expect=0)
        t = export(sp, os.path.join(tmp, f"exp{int(aug)}.safetensors"), "--seed", "5")
        check(t["x"].shape == (9, 16, 6) and t["y"].shape == (9, 16), f"shapes {t['x'].shape}")
        stage = 2 if aug else 3  # data.augment / data.batch (its float output: the batch)
        compared = 0
        for step, st, vals in read_trace(os.path.join(rdir, "trace.sbt")):
            if st != stage or vals is None:
                continue
            check(vals.tobytes() == t["x"][step - 1].tobytes(),
                  f"aug={aug} step {step}: exported batch differs from the traced one")
            compared += 1
        check(compared == 5, f"aug={aug}: compared {compared} snapshot steps, expected 1 2 4 8 9")


def suite_keys_for_data_files_should_be_strict(tmp):
    x, y = blobs(n=30)
    np.save(os.path.join(tmp, "x.npy"), x)
    np.save(os.path.join(tmp, "y.npy"), y)
    cases = [
        ({"kind": "npy", "x": "x.npy", "y": "y.npy", "samples": 30}, 'data: unknown key "samples"'),
        ({"kind": "npy", "x": "x.npy"}, 'missing required key "y"'),
        ({"kind": "npy", "x": "x.npy", "y": "y.npy", "path": "a.csv"},
         'data.path: not a key of data.kind "npy"'),
        ({"kind": "npy", "x": "x.npy", "y": "y.npy", "classes": 2}, "label 2 out of range [0, 2)"),
        ({"kind": "npy", "x": "x.npy", "y": "y.npy", "scale": 0}, "data.scale: expected a number > 0"),
        ({"kind": "csv", "path": "t.csv", "label_column": "l"}, 'a column name needs "header": true'),
    ]
    for i, (data, want) in enumerate(cases):
        sp = write_suite(tmp, suite(f"k{i}", data))
        p = run("train", sp, "--out", os.path.join(tmp, f"o{i}"), expect=2)
        check(want in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              f"case {i}: stderr {p.stderr!r}, wanted {want!r}")


def main():
    case = sys.argv[3]
    fn = globals().get(case)
    if not callable(fn):
        print(f"unknown case {case}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sb-datafiles-") as tmp:
        fn(tmp)
    print(f"ok - {case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

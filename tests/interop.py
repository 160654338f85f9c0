#!/usr/bin/env python3
"""interop.py — samebits against the reference `safetensors` Python package.

Cases (the first argument):
  reference_file_should_be_inspected_and_diffed_by_samebits
      a file written by safetensors.numpy.save_file is inspected by
      `samebits inspect` (names, shapes, metadata) and diffed against a copy
      with one element 1 ULP away (exactly that tensor, 1 element, max ULP 1,
      exit 1; with --ulp 1, exit 0).
  samebits_file_should_load_in_the_reference_reader
      a file written by samebits' C writer (tests/st_write_sample) loads with
      safetensors.numpy.load_file and safe_open, with the names, dtypes,
      shapes, metadata and values the writer's formulas give.

Usage: interop.py CASE SAMEBITS ST_WRITE_SAMPLE WORKDIR

This test FAILS (it does not skip) when numpy or safetensors is missing:
tools/check installs them (python3 -m pip install safetensors numpy).
Not here: bad-input handling (tests/bad_input.sh).
"""
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
except ImportError as e:  # a missing dependency is a failure, not a skip
    print(f"interop: FAIL: cannot import the reference implementation ({e}); "
          "run `python3 -m pip install safetensors numpy`", file=sys.stderr)
    sys.exit(1)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    if not cond:
        print(f"interop: FAIL: {what}", file=sys.stderr)
        sys.exit(1)


def reference_file_should_be_inspected_and_diffed_by_samebits(samebits, writer, work):
    rng = np.random.default_rng(12345)
    tensors = {
        "fc1.weight": rng.standard_normal((8, 16)).astype(np.float32),
        "fc1.bias": rng.standard_normal(16).astype(np.float32),
        "head.weight": rng.standard_normal((16, 3)).astype(np.float64),
        "scalar": np.array(0.125, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    meta = {"run": "interop", "step": "7"}
    a = os.path.join(work, "ref.safetensors")
    b = os.path.join(work, "ref_1ulp.safetensors")
    save_file(tensors, a, metadata=meta)

    rc, out, err = run(samebits, "inspect", "--json", a)
    check(rc == 0, f"inspect exited {rc}: {err}")
    doc = json.loads(out)
    got = {t["name"]: t for t in doc["tensors"]}
    check(set(got) == set(tensors), f"inspect lists {sorted(got)}")
    for name, arr in tensors.items():
        check(got[name]["shape"] == list(arr.shape), f"{name}: shape {got[name]['shape']}")
        want_dtype = {np.float32: "F32", np.float64: "F64"}[arr.dtype.type]
        check(got[name]["dtype"] == want_dtype, f"{name}: dtype {got[name]['dtype']}")
    check(doc["metadata"] == meta, f"metadata {doc['metadata']}")
    w = tensors["fc1.weight"].astype(np.float64)
    check(got["fc1.weight"]["stats"]["max"] == float(w.max()), "fc1.weight max")
    rc, out, err = run(samebits, "inspect", a)
    check(rc == 0 and all(n in out for n in tensors), f"text inspect: {rc} {err}")

    changed = dict(tensors)
    cw = tensors["fc1.weight"].copy()
    cw[3, 5] = np.nextafter(cw[3, 5], np.float32(np.inf), dtype=np.float32)
    changed["fc1.weight"] = cw
    save_file(changed, b, metadata=meta)

    rc, out, err = run(samebits, "diff", a, a)
    check(rc == 0, f"diff of a file with itself exited {rc}: {out}{err}")
    rc, out, err = run(samebits, "diff", a, b)
    check(rc == 1, f"diff with a 1-ULP change exited {rc}: {err}")
    check("fc1.weight" in out and "[3,5]" in out, f"text diff does not name the element:\n{out}")
    rc, out, err = run(samebits, "diff", "--json", a, b)
    check(rc == 1, f"diff --json exited {rc}: {err}")
    doc = json.loads(out)
    drifted = [t for t in doc["tensor_diffs"] if t["differing"] != 0]
    check([t["name"] for t in drifted] == ["fc1.weight"], f"drifted tensors {drifted}")
    t = drifted[0]
    check(t["differing"] == 1 and t["max_ulp"] == 1, f"fc1.weight: {t}")
    check(t["worst"]["index"] == [3, 5], f"worst index {t['worst']['index']}")
    check(float.fromhex(t["worst"]["a_hex"]) == float(tensors["fc1.weight"][3, 5]), "worst a")
    check(float.fromhex(t["worst"]["b_hex"]) == float(cw[3, 5]), "worst b")
    check(doc["worst_tensor"] == "fc1.weight", f"worst tensor {doc['worst_tensor']}")
    rc, out, err = run(samebits, "diff", "--ulp", "1", a, b)
    check(rc == 0, f"diff --ulp 1 exited {rc}: {out}{err}")


def samebits_file_should_load_in_the_reference_reader(samebits, writer, work):
    path = os.path.join(work, "sample.safetensors")
    rc, out, err = run(writer, path)
    check(rc == 0, f"st_write_sample exited {rc}: {err}")
    want = {
        "layer.weight": (np.arange(12, dtype=np.float32) * np.float32(0.25) - np.float32(1)).reshape(3, 4),
        "layer.bias": np.array([1.0 / (i + 1) for i in range(4)], dtype=np.float64),
        "half": (np.arange(6, dtype=np.float16) * np.float16(0.5)).reshape(2, 3),
        "counts": (np.arange(4, dtype=np.int64) * 1000000007 - 2).reshape(2, 2),
        "mask": (np.arange(5) % 2).astype(np.uint8),
        "flags": np.array([True, False, True]),
        "step": np.array(42, dtype=np.int32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    got = load_file(path)
    check(set(got) == set(want), f"names {sorted(got)}")
    for name, w in want.items():
        g = got[name]
        check(g.dtype == w.dtype, f"{name}: dtype {g.dtype}, want {w.dtype}")
        check(g.shape == w.shape, f"{name}: shape {g.shape}, want {w.shape}")
        check(g.tobytes() == w.tobytes(), f"{name}: values {g!r}, want {w!r}")
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        check(sorted(f.keys()) == sorted(want), f"safe_open keys {list(f.keys())}")
    check(meta == {"producer": "samebits st_write_sample", "format": "pt",
                   "note": "quote \" backslash \\ newline \n e-acute \u00e9"}, f"metadata {meta}")
    # and samebits reads back what it wrote
    rc, out, err = run(samebits, "inspect", "--json", path)
    check(rc == 0, f"inspect exited {rc}: {err}")


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    case, samebits, writer, work = sys.argv[1:]
    cases = {f.__name__: f for f in (reference_file_should_be_inspected_and_diffed_by_samebits,
                                     samebits_file_should_load_in_the_reference_reader)}
    if case not in cases:
        print(f"interop: unknown case {case}", file=sys.stderr)
        return 2
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cases[case](samebits, writer, work)
    shutil.rmtree(work, ignore_errors=True)
    print(f"ok - {case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""report_check.py — end-to-end tests of the reports samebits writes into a
results folder: junit.xml (validated by xmllint against tests/junit.xsd),
report.html (rendered by headless Chromium: charts and tables present after
rendering, nothing fetched from the network, a screenshot kept under the
build folder), report.md, and `samebits report` (regenerates byte-identical
files, refuses to overwrite, one-line errors).

Usage: report_check.py SAMEBITS SOURCE_DIR BUILD_DIR CASE
Each case is a function below; CTest registers each as its own test
(tests/report.cmake). A case fails by raising; the exit code is 1 then.
Only the standard library is used. xmllint and chromium must be installed
(tools/check installs them): a missing tool fails the test, never skips it.
Chromium's stderr is never asserted on (it warns about D-Bus and the like).
"""
import glob
import hashlib
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

SAMEBITS = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])
BUILD = os.path.abspath(sys.argv[3])
XSD = os.path.join(SRC, "tests", "junit.xsd")
REPORTS = ("junit.xml", "report.html", "report.md")


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


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


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


def write_suite(d, suite):
    path = os.path.join(d, suite["name"] + ".json")
    with open(path, "w") as f:
        json.dump(suite, f, indent=1)
    return path


def pitfalls(tmp):
    """Runs suites/pitfalls.json (exit 1: every case but the control drifts)."""
    out = os.path.join(tmp, "pitfalls")
    run("run", os.path.join(SRC, "suites/pitfalls.json"), "--out", out, "-j", "2", expect=1)
    return out


def xmllint(xml_path):
    exe = shutil.which("xmllint")
    check(exe, "xmllint not found: tools/check installs it (apt-get install libxml2-utils)")
    return subprocess.run([exe, "--noout", "--schema", XSD, xml_path], capture_output=True,
                          text=True, timeout=120)


def chromium(tmp, *args):
    exe = shutil.which("chromium")
    check(exe, "chromium not found: tools/check installs it (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-default-apps", "--disable-extensions",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    check(p.returncode == 0, f"chromium exit {p.returncode}: {p.stderr[-2000:]}")
    return p


class Dom(html.parser.HTMLParser):
    """Tags with their attributes and the text, from Chromium's --dump-dom."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.text, self.stack = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs), list(self.stack)))
        if tag not in ("br", "meta", "hr", "img", "input", "link", "circle", "line", "rect",
                       "polyline", "path"):
            self.stack.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.text.append(data)

    def count(self, tag, cls=None, inside=None):
        n = 0
        for t, a, stack in self.tags:
            if t != tag or (cls and cls not in a.get("class", "").split()):
                continue
            if inside and not any(s[0] == inside[0] and inside[1] in s[1].get("class", "").split()
                                  for s in stack):
                continue
            n += 1
        return n


def read_png(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG."""
    data = read(path, "rb")
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG")
    pos, idat = 8, []
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat.append(body)
    check(depth == 8 and ctype in (2, 6) and interlace == 0, f"{path}: unexpected PNG format")
    raw = zlib.decompress(b"".join(idat))
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    prev, rows = bytearray(stride), []
    for y in range(h):
        off = y * (stride + 1)
        f, row = raw[off], bytearray(raw[off + 1:off + 1 + stride])
        if f == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 255
        elif f == 2:
            row = bytearray((a + b) & 255 for a, b in zip(row, prev))
        elif f == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(row)
        prev = row
    return w, h, bpp, rows


def md_tables(text):
    """Each Markdown table as a list of rows, each a list of cells (\\| kept in cells)."""
    tables, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            cur.append([c.strip() for c in cells])
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return tables


def folder_digest(d):
    """SHA-256 of every file in d, by relative path."""
    out = {}
    for p in sorted(glob.glob(os.path.join(d, "**"), recursive=True)):
        if os.path.isfile(p):
            out[os.path.relpath(p, d)] = sha256(p)
    return out


# ---------------------------------------------------------------- cases

def junit_should_validate_against_the_schema_and_name_the_source_op(tmp):
    out = pitfalls(tmp)
    junit = os.path.join(out, "junit.xml")
    p = xmllint(junit)
    check(p.returncode == 0, f"junit.xml does not validate against tests/junit.xsd:\n{p.stderr}")
    s = json.load(open(os.path.join(out, "summary.json")))
    root = ET.parse(junit).getroot()
    check(root.tag == "testsuites", f"root {root.tag}")
    suites = root.findall("testsuite")
    check(len(suites) == 1 and suites[0].get("name") == "pitfalls", "one testsuite named pitfalls")
    ts = suites[0]
    cases = ts.findall("testcase")
    nfail = sum(1 for c in cases if c.find("failure") is not None)
    nerr = sum(1 for c in cases if c.find("error") is not None)
    check(int(ts.get("tests")) == len(cases), f"tests={ts.get('tests')} but {len(cases)} testcases")
    check(int(ts.get("failures")) == nfail and int(ts.get("errors")) == nerr
          and ts.get("skipped") == "0", f"counts {ts.attrib} vs {nfail} failures, {nerr} errors")
    check(abs(float(ts.get("time")) - s["seconds"]) < 1e-3, "suite time is the invocation's")
    ncmp = sum(len(c["comparisons"]) for c in s["checks"])
    check(len(cases) == len(s["runs"]) + len(s["checks"]) + ncmp,
          "one testcase per run, per check and per comparison")
    by = {(c.get("classname"), c.get("name")): c for c in cases}
    for chk in s["checks"]:
        tc = by.get(("pitfalls." + chk["name"], chk["name"]))
        check(tc is not None, f"no testcase for check {chk['name']}")
        check((tc.find("failure") is not None) == (chk["status"] == "fail"),
              f"{chk['name']}: failure element does not follow its status {chk['status']}")
        for x in chk["comparisons"]:
            tx = by.get(("pitfalls." + chk["name"], f"{x['a']} vs {x['b']}"))
            check(tx is not None, f"no testcase for comparison {x['a']} vs {x['b']}")
            f = tx.find("failure")
            check((f is not None) == (x["status"] == "fail"), f"{x['a']} vs {x['b']}: status")
            if f is None:
                continue
            msg = f.get("message")
            src = x["sources"][0]
            for want in (x["worst_tensor"], f"max ULP {x['max_ulp']}", "max abs", "max rel",
                         f"{src['op']} ({src['stage']})"):
                check(want in msg, f"failure message lacks {want!r}: {msg}")
            check(f"first divergence: step {x['first_divergence']['step']}" in f.text,
                  f"failure text lacks the first divergence: {f.text}")
    msg = by[("pitfalls.unseeded-shuffle/repeatable", "unseeded-shuffle/repeatable")] \
        .find("failure").get("message")
    check("data/shuffle (data.shuffle)" in msg, f"check failure should name the source op: {msg}")
    # the schema itself rejects what CI systems would choke on (the test can fail)
    bad = os.path.join(tmp, "bad.xml")
    with open(bad, "w") as f:
        f.write(read(junit).replace('skipped="0"', 'skipped="none"', 1))
    check(xmllint(bad).returncode != 0, "tests/junit.xsd accepted skipped=\"none\"")
    with open(bad, "w") as f:
        f.write(read(junit).replace("<testcase classname=", "<testcase nom=", 1))
    check(xmllint(bad).returncode != 0, "tests/junit.xsd accepted a testcase without a name")


def junit_should_carry_errors_for_timed_out_runs_and_unevaluable_checks(tmp):
    suite = tiny_suite("slow", timeout=0.001)
    suite["train"]["steps"] = 100000
    out = os.path.join(tmp, "res")
    run("run", write_suite(tmp, suite), "--out", out, expect=3)
    junit = os.path.join(out, "junit.xml")
    p = xmllint(junit)
    check(p.returncode == 0, f"junit.xml does not validate:\n{p.stderr}")
    ts = ET.parse(junit).getroot().find("testsuite")
    runs = [c for c in ts.findall("testcase") if c.get("classname") == "slow.runs"]
    check(len(runs) == 2, f"{len(runs)} run testcases, expected 2")
    for c in runs:
        e = c.find("error")
        check(e is not None and e.get("type") == "timeout" and "timeout" in e.get("message"),
              f"run {c.get('name')}: expected <error type=timeout>, got {ET.tostring(c)}")
    chk = [c for c in ts.findall("testcase") if c.get("name") == "repeats"][0]
    e = chk.find("error")
    check(e is not None and e.get("type") == "check-error", f"check: {ET.tostring(chk)}")
    n_err = sum(1 for c in ts.findall("testcase") if c.find("error") is not None)
    check(int(ts.get("errors")) == n_err and n_err >= 3, f"errors={ts.get('errors')}, counted {n_err}")


def html_should_render_in_headless_chromium_with_charts_and_tables(tmp):
    out = pitfalls(tmp)
    page = "file://" + os.path.join(out, "report.html")
    s = json.load(open(os.path.join(out, "summary.json")))
    dom = Dom(chromium(tmp, "--dump-dom", page).stdout)
    failing = [x for c in s["checks"] for x in c["comparisons"] if x["status"] == "fail"]
    # charts: a growth chart per detailed failing comparison, a ULP histogram per
    # failing check, a loss chart per cell
    n_cells = len({r["cell"] for r in s["runs"]})
    n_fail_checks = sum(1 for c in s["checks"] if c["status"] == "fail")
    check(dom.count("svg") >= len(failing) + n_fail_checks + n_cells,
          f"{dom.count('svg')} SVG charts, expected at least "
          f"{len(failing)} + {n_fail_checks} + {n_cells}")
    check(dom.count("polyline") >= len(failing) + len(s["runs"]), "too few curves drawn")
    check(dom.count("rect") > 50, "ULP histograms have no bars")
    matrix_rows = dom.count("tr", inside=("table", "matrix"))
    check(matrix_rows == n_cells + 2, f"matrix has {matrix_rows} rows, expected {n_cells} + 2")
    fails = dom.count("td", cls="fail", inside=("table", "matrix"))
    check(fails >= 2 * n_fail_checks, f"matrix shows {fails} failing squares")
    text = "".join(dom.text)
    for want in ("data/shuffle", "dropout1/fwd", s["suite_sha256"], "Loss curves",
                 "ULP distances per tensor", "Artifacts"):
        check(want in text, f"rendered page lacks {want!r}")
    for r in s["runs"]:
        check(r["sha256"] in text, f"artifact table lacks the checkpoint SHA-256 of {r['id']}")
    # the rendered page, as a person sees it (kept under the build folder)
    shot = os.path.join(BUILD, "report-screenshot.png")
    if os.path.exists(shot):
        os.unlink(shot)
    chromium(tmp, f"--screenshot={shot}", "--window-size=1200,2000", page)
    check(os.path.exists(shot), "chromium wrote no screenshot")
    w, h, bpp, rows = read_png(shot)
    check((w, h) == (1200, 2000), f"screenshot is {w}x{h}")
    colours = {}
    for row in rows[::2]:
        for i in range(0, len(row), bpp * 2):
            k = bytes(row[i:i + 3])
            colours[k] = colours.get(k, 0) + 1
    # the verdict matrix is on the first screen: its FAIL and pass squares are painted
    check(colours.get(bytes.fromhex("ffcdd2"), 0) > 200, "no FAIL-coloured squares rendered")
    check(colours.get(bytes.fromhex("c8e6c9"), 0) > 200, "no pass-coloured squares rendered")
    check(len(colours) > 50, "the screenshot is nearly blank")


def html_should_fetch_nothing_from_the_network(tmp):
    out = pitfalls(tmp)
    path = os.path.join(out, "report.html")
    text = read(path)
    # nothing in the file points anywhere but into the page itself
    for m in re.finditer(r"\b(src|href|xlink:href|action|poster|data)\s*=\s*\"([^\"]*)\"", text):
        check(m.group(2).startswith("#"), f"report.html refers to {m.group(0)}")
    for pat in (r"https?://", r"url\s*\(", r"@import", r"<script", r"<link", r"<img", r"<iframe",
                r"<object", r"<embed", r"//[a-z0-9.-]+\.[a-z]{2,}/"):
        check(not re.search(pat, text, re.I), f"report.html contains {pat}")

    def page_requests(html_path):
        netlog = os.path.join(tmp, os.path.basename(html_path) + ".netlog.json")
        dom = chromium(tmp, f"--log-net-log={netlog}", "--dump-dom", "file://" + html_path).stdout
        text = read(netlog)
        try:
            log = json.loads(text)
        except ValueError:  # a net log cut short lacks its closing "]}"
            log = json.loads(text.rstrip().rstrip(",") + "]}")
        check("events" in log, f"{netlog}: not a net log")
        # requests made on behalf of a file:// page carry the file:// origin in their
        # network isolation key (the browser's own background requests do not)
        reqs = []
        for e in log["events"]:
            params = e.get("params") or {}
            url = params.get("url")
            if (isinstance(url, str) and "file://" in str(params.get("network_isolation_key", ""))
                    and not url.startswith(("file:", "data:"))):
                reqs.append(url)
        return dom, reqs

    dom, reqs = page_requests(path)
    check(not reqs, f"report.html made network requests: {reqs}")
    check("Artifacts" in dom and "<svg" in dom and "</html>" in dom, "the page did not render fully")
    # the detector works: the same page with an external image (and without its
    # Content-Security-Policy) is caught fetching it
    probe = os.path.join(tmp, "probe.html")
    with open(probe, "w") as f:
        f.write(re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", text)
                .replace("<body>", '<body><img src="http://netcheck.invalid/probe.png">', 1))
    _, reqs = page_requests(probe)
    check(any("netcheck.invalid" in u for u in reqs),
          "the net-log check did not see a request the page certainly made: it cannot fail")


def md_should_hold_the_tables_of_the_html_report(tmp):
    out = pitfalls(tmp)
    text = read(os.path.join(out, "report.md"))
    s = json.load(open(os.path.join(out, "summary.json")))
    for h in ("# samebits report: pitfalls", "## Verdict matrix", "## Checks",
              "## Environment fingerprint", "## Drift attribution", "## ULP distances per tensor",
              "## Loss curves", "## Runs", "## Artifacts"):
        check(h in text, f"report.md lacks {h!r}")
    tables = md_tables(text)
    for t in tables:
        check(len(t) >= 2 and re.fullmatch(r"(:?-+:?)", t[1][0]),
              f"table without a separator row: {t[:2]}")
        for row in t:
            check(len(row) == len(t[0]), f"row with {len(row)} cells under a {len(t[0])}-cell "
                                         f"header: {row}")
    first_cols = [t[0][0] for t in tables]
    matrix = tables[first_cols.index("cell")]
    cells = {r["cell"] for r in s["runs"]}
    check(len(matrix) == 2 + len(cells), f"matrix has {len(matrix) - 2} rows for {len(cells)} cells")
    check(matrix[0][2:] == [c["name"] for c in s["checks"]], f"matrix header {matrix[0]}")
    checks = tables[first_cols.index("check")]
    check(len(checks) == 2 + len(s["checks"]), "one row per check")
    check(sum("source op" == c for c in first_cols) >= 6, "sources tables of the failing checks")
    check(sum("step" == c for c in first_cols) >= 6, "growth and loss tables")
    check(sum("tensor" == c for c in first_cols) >= 6, "ULP tables")
    check("data/shuffle" in text and "dropout1/fwd" in text, "attribution ops missing")
    arts = tables[first_cols.index("file")]
    for r in s["runs"]:
        check(any(r["sha256"] in row[3] for row in arts), f"no artifact row for {r['checkpoint']}")


def report_should_regenerate_identical_files_and_refuse_to_overwrite(tmp):
    out = pitfalls(tmp)
    before = folder_digest(out)
    for name in REPORTS:
        check(name in before, f"run wrote no {name}")
    p = run("report", out, expect=2)
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1 and "--force" in lines[0], f"refusal should be one line naming --force: {lines}")
    check(folder_digest(out) == before, "a refused report changed files")
    # regenerated from any spelling of the folder: byte-identical
    run("report", out + "/", "--force", expect=0)
    check(folder_digest(out) == before, "report --force did not regenerate identical files")
    parent, base = os.path.split(out)
    run("report", os.path.join(".", base), "--force", cwd=parent, expect=0)
    check(folder_digest(out) == before, "reports depend on how the folder was named")
    for name in REPORTS:
        os.unlink(os.path.join(out, name))
    run("report", out, expect=0)
    check(folder_digest(out) == before, "reports written afresh differ from what run wrote")
    check(not [n for n in os.listdir(out) if ".tmp" in n], "temporary files left behind")


def report_should_exit_2_with_one_line_on_a_missing_or_corrupt_summary(tmp):
    out = pitfalls(tmp)
    good = read(os.path.join(out, "summary.json"))
    s = json.loads(good)
    cases = {
        "truncated": (good[:len(good) // 2], "summary.json"),
        "empty": ("", "summary.json"),
        "not an object": ("[1, 2]", "summary.json"),
        "wrong schema": (json.dumps(dict(s, schema="other/9")), "schema"),
        "bad run id": (json.dumps(dict(s, runs=[dict(s["runs"][0], id=7)])), "runs[0].id"),
        "bad comparisons": (json.dumps(dict(s, checks=[dict(s["checks"][0], comparisons={})])),
                            "checks[0].comparisons"),
        "trailing garbage": (good + "}", "summary.json"),
    }
    for what, (text, where) in cases.items():
        d = os.path.join(tmp, what.replace(" ", "-"))
        os.makedirs(d)
        with open(os.path.join(d, "summary.json"), "w") as f:
            f.write(text)
        p = run("report", d, expect=2)
        lines = p.stderr.strip().splitlines()
        check(len(lines) == 1 and "summary.json" in lines[0] and where in lines[0],
              f"{what}: expected one line naming summary.json and {where!r}: {lines}")
        check(sorted(os.listdir(d)) == ["summary.json"], f"{what}: left files behind: {os.listdir(d)}")
    p = run("report", os.path.join(tmp, "nowhere"), expect=2)
    check(len(p.stderr.strip().splitlines()) == 1 and "summary.json" in p.stderr, p.stderr)
    p = run("report", expect=2)
    p = run("report", out, "--colour", expect=2)


def reports_should_escape_hostile_strings_in_every_format(tmp):
    suite = tiny_suite("hostile", perturb=True,
                       matrix={"seeds": [3], "backends": ["blas"], "modes": ["fast"], "threads": [2]})
    out = os.path.join(tmp, "res")
    run("run", write_suite(tmp, suite), "--out", out, expect=1)
    s = json.load(open(os.path.join(out, "summary.json")))
    evil = '<script>alert("x")</script> & \'q\' ]]> -- |pipe| `tick` *star* _u_ \u0001\u007f'
    s["checks"][0]["name"] = evil
    s["checks"][0]["comparisons"][0]["worst_tensor"] = evil
    s["environment"] = {"os": {"name": evil}, "list": [evil, 1, None], "empty": {}}
    raw = json.dumps(s, indent=1).encode()
    # raw bytes that are not UTF-8 inside a JSON string
    raw = raw.replace(b'"schema": "samebits.summary/1"',
                      b'"schema": "samebits.summary/1", "extra": "bad \xff\xfe bytes"', 1)
    s2 = raw.replace(b'"suite": "hostile"', b'"suite": "hostile \xc3\x28 <b>"', 1)
    os.unlink(os.path.join(out, "summary.json"))
    with open(os.path.join(out, "summary.json"), "wb") as f:
        f.write(s2)
    run("report", out, "--force", expect=0)
    p = xmllint(os.path.join(out, "junit.xml"))
    check(p.returncode == 0, f"junit.xml with hostile strings does not validate:\n{p.stderr}")
    for name in REPORTS:
        data = read(os.path.join(out, name), "rb")
        text = data.decode("utf-8")  # raises on invalid UTF-8
        check("\x01" not in text and "\x7f" not in text, f"{name}: control characters passed through")
        if name == "report.md":  # inside a code span markup is shown as text, never parsed
            text = re.sub(r"`[^`\n]*`", "", text)
        check("<script" not in text and "<b>" not in text, f"{name}: markup passed through unescaped")
    html_text = read(os.path.join(out, "report.html"))
    check("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;" in html_text,
          "report.html does not show the escaped name")
    md = read(os.path.join(out, "report.md"))
    check("\\|pipe\\|" in md and "&lt;script&gt;" in md, "report.md does not escape | and <")
    for t in md_tables(md):
        for row in t:
            check(len(row) == len(t[0]), f"a hostile string broke a Markdown table: {row}")
    dom = Dom(chromium(tmp, "--dump-dom", "file://" + os.path.join(out, "report.html")).stdout)
    check(dom.count("script") == 0 and dom.count("b") == 0, "hostile markup became elements")


def artifact_table_should_flag_a_checkpoint_that_changed_after_the_run(tmp):
    suite = tiny_suite("tamper")
    out = os.path.join(tmp, "res")
    run("run", write_suite(tmp, suite), "--out", out, expect=0)
    s = json.load(open(os.path.join(out, "summary.json")))
    html_text = read(os.path.join(out, "report.html"))
    check(html_text.count("matches summary.json") == len(s["runs"]) + 1,
          "every checkpoint and the suite should match summary.json")
    ck = os.path.join(out, s["runs"][1]["checkpoint"])
    with open(ck, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    run("report", out, "--force", expect=0)
    html_text = read(os.path.join(out, "report.html"))
    row = [l for l in html_text.splitlines() if s["runs"][1]["checkpoint"] in l and "checkpoint" in l]
    check(row and "DIFFERS from summary.json" in row[0] and sha256(ck) in row[0],
          f"a changed checkpoint should be flagged with its new SHA-256: {row}")
    md = read(os.path.join(out, "report.md"))
    check("DIFFERS from summary.json" in md, "report.md does not flag the changed checkpoint")


def run_should_keep_summary_and_exit_2_when_a_report_cannot_be_written(tmp):
    out = os.path.join(tmp, "res")
    os.makedirs(os.path.join(out, "report.html", "in-the-way"))
    p = run("run", write_suite(tmp, tiny_suite("blocked")), "--out", out, expect=2)
    check("report.html" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
          f"one line on stderr naming report.html: {p.stderr!r}")
    s = json.load(open(os.path.join(out, "summary.json")))
    check(s["exit_code"] == 0 and s["verdict"] == "pass", "summary.json must stay as evaluated")
    check("verdict: PASS" in p.stdout, "the verdict is still printed")
    check(os.path.isdir(os.path.join(out, "report.html")), "the folder in the way was touched")


def main():
    case = sys.argv[4]
    fn = globals().get(case)
    if fn is None:
        print(f"unknown case {case}", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sb_report_")
    try:
        fn(tmp)
    except AssertionError as e:
        print(f"FAIL - {case}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok - {case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

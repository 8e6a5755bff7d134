#!/usr/bin/python3
"""The profiler end to end: a real herald-controlplane, `heraldctl prof capture` at 10 ms,
then `prof report` and `prof csv` on the file it wrote, and a damaged copy reported as such.
With --cost, also prints the sampler's CPU cost per second of sampling at 10 ms and 100 ms
(the figure for docs/PERFORMANCE.md) from the node's own accounting (GET /v1/profiler).
With --dataplane HERALD_DATAPLANE, a real dataplane connects: it is sampled as proc.dataplane.*
and, where perf is installed, `prof capture --flame` returns its CPU profile.

Usage: profiler_capture.py HERALD_CONTROLPLANE HERALDCTL [--cost] [--dataplane HERALD_DATAPLANE]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(message):
    print("FAIL " + message)
    sys.exit(1)


def check_plot(run, tmp, hprof):
    """`prof plot` to .svg and .html: both parse (XML; HTML tags balanced and each inline SVG
    XML) and show the capture's groups and metadata."""
    import re
    import xml.etree.ElementTree as ET
    from html.parser import HTMLParser

    groups = ["os.cpu", "os.mem", "os.tcp", "proc.controlplane"]
    svg_path, html_path = os.path.join(tmp, "run.svg"), os.path.join(tmp, "run.html")
    run("prof", "plot", hprof, "-o", svg_path)
    root = ET.parse(svg_path).getroot()
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        fail(f"plot svg root {root.tag}")
    texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for part in groups:
        if part not in texts:
            fail(f"plot svg lacks the group {part!r}")
    if not any("interval 10 ms" in t for t in texts):
        fail("plot svg lacks the metadata")
    run("prof", "plot", hprof, "-o", html_path)
    html = open(html_path, encoding="utf-8").read()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.h2 = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "br", "hr", "img", "input", "link", "wbr"):
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if not self.stack or self.stack[-1] != tag:
                fail(f"plot html: mismatched </{tag}> at {self.getpos()}")
            self.stack.pop()

        def handle_data(self, data):
            if self.stack and self.stack[-1] == "h2":
                self.h2.append(data)

    tags = Tags()
    tags.feed(html)
    tags.close()
    if tags.stack:
        fail(f"plot html: unclosed {tags.stack}")
    svgs = re.findall(r"<svg\b.*?</svg>", html, re.S)
    for s in svgs:
        ET.fromstring(s)
    for part in groups + ["Contents", "CPU flame graph", "Summary table"]:
        if part not in tags.h2:
            fail(f"plot html lacks the section {part!r}: {tags.h2}")
    if "src=" in html:
        fail("plot html loads something")
    r = run("prof", "plot", hprof, "-o", os.path.join(tmp, "x.png"), check=False)
    if r.returncode != 2:
        fail(f"plot to .png: {r.returncode}")
    print(f"ok prof plot: svg {os.path.getsize(svg_path)} bytes, html "
          f"{os.path.getsize(html_path)} bytes, {len(svgs)} charts, groups {tags.h2[1:]}")


def measure_cost(run, hprof, label):
    for interval_ms in (10, 100):
        run("prof", "capture", "--interval", f"{interval_ms}ms", "--duration", "20s", "-o", hprof)
        status = json.loads(run("raw", "GET", "/v1/profiler").stdout)
        # The mean over this capture's samples only (the node's sample_cpu_us is over its whole
        # life, background samples included).
        per_sample_us = status["capture_sample_cpu_us"]
        print(f"sampler cost at {interval_ms} ms{label}: {per_sample_us:.1f} us CPU per sample = "
              f"{per_sample_us * 1000 / interval_ms / 1e6 * 100:.3f}% of one core "
              f"({status['series']} series)")


def check_dataplane(run, tmp, dataplane, config_path, data_dir, cost):
    """The dataplane's pid reaches the sampler (proc.dataplane.*) and a flame capture."""
    dp_log = open(os.path.join(tmp, "dataplane.log"), "w")
    dp = subprocess.Popen([dataplane, "--config", config_path, "--data-dir", data_dir],
                          stdout=dp_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while '"connected"' not in run("raw", "GET", "/v1/health", check=False).stdout:
            if time.monotonic() > deadline or dp.poll() is not None:
                fail("the dataplane did not connect")
            time.sleep(0.1)
        hprof = os.path.join(tmp, "dp.hprof")
        flame = shutil.which("perf") is not None
        args = ["prof", "capture", "--interval", "10ms", "--duration", "2s", "-o", hprof]
        r = run(*(args + (["--flame"] if flame else [])))
        print(r.stderr.strip())
        csv = run("prof", "csv", hprof).stdout.splitlines()
        header = csv[0].split(",")
        column = header.index("proc.dataplane.cpu_user") if "proc.dataplane.cpu_user" in header \
            else fail(f"no proc.dataplane series: {header[:8]}")
        if not any(line.split(",")[column] for line in csv[1:]):
            fail("proc.dataplane.cpu_user has no values")
        print(f"ok proc.dataplane.* sampled (pid {dp.pid})")
        if flame:
            if "flame graph: ok (" not in r.stderr:
                fail(f"flame capture: {r.stderr}")
            stacks = int(r.stderr.split("flame graph: ok (")[1].split(" ")[0])
            if stacks < 1:
                fail(f"flame capture without stacks: {r.stderr}")
            print(f"ok flame graph: {stacks} stacks")
        else:
            print("skip flame graph: perf is not installed")
        if cost:
            measure_cost(run, hprof, " with a dataplane (busy polling)")
    finally:
        dp.terminate()
        dp.wait(timeout=30)


def main():
    binary, heraldctl = sys.argv[1], sys.argv[2]
    cost = "--cost" in sys.argv[3:]
    dataplane = sys.argv[sys.argv.index("--dataplane") + 1] if "--dataplane" in sys.argv else None
    with tempfile.TemporaryDirectory() as tmp:
        admin_port = free_port()
        config = {"controlplane": {"admin_address": "127.0.0.1", "admin_port": admin_port,
                                   "public_address": "127.0.0.1", "public_port": free_port(),
                                   "ipc_socket_path": os.path.join(tmp, "ipc.sock")},
                  # Busy polling: the dataplane is on CPU, so a flame capture has samples.
                  "dataplane": {"listen_address": "127.0.0.1", "chat_port": free_port(),
                                "workers": 1, "poll_mode": "busy"}}
        config_path = os.path.join(tmp, "node.json")
        with open(config_path, "w") as f:
            json.dump(config, f)
        data_dir = os.path.join(tmp, "data")
        log = open(os.path.join(tmp, "cp.log"), "w")
        node = subprocess.Popen([binary, "--config", config_path, "--data-dir", data_dir],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(os.path.join(data_dir, "admin.key")):
                if time.monotonic() > deadline or node.poll() is not None:
                    fail("the node did not start")
                time.sleep(0.05)
            ctl = [heraldctl, "--url", f"http://127.0.0.1:{admin_port}", "--data-dir", data_dir]

            def run(*args, check=True):
                r = subprocess.run(ctl + list(args), capture_output=True, text=True, timeout=60)
                if check and r.returncode != 0:
                    fail(f"heraldctl {' '.join(args)}: {r.returncode} {r.stderr}")
                return r

            deadline = time.monotonic() + 30
            while run("prof", "capture", "--help", check=False).returncode != 0 or \
                    run("health", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    fail("the admin API did not answer")
                time.sleep(0.1)

            hprof = os.path.join(tmp, "run.hprof")
            r = run("prof", "capture", "--interval", "10ms", "--duration", "1s", "-o", hprof)
            print(r.stderr.strip())
            report = run("prof", "report", hprof).stdout
            for part in ["capture: node", "interval 10 ms", "series", "median", "p99",
                         "os.cpu.user", "proc.controlplane.rss", "top movers"]:
                if part not in report:
                    fail(f"report lacks {part!r}:\n{report}")
            samples = int(report.split(" samples over ")[0].rsplit(" ", 1)[1])
            if samples < 10:
                fail(f"{samples} samples in a 1 s capture at 10 ms")
            print("ok prof report:", report.splitlines()[0])

            csv = run("prof", "csv", "--rates", hprof).stdout.splitlines()
            header = csv[0].split(",")
            if header[0] != "t_ms" or "os.context_switches" not in header:
                fail(f"csv header {header[:5]}")
            if len(csv) != samples + 1 or any(len(l.split(",")) != len(header) for l in csv):
                fail("csv rows do not match the capture")
            print(f"ok prof csv: {len(csv) - 1} rows x {len(header)} columns")
            check_plot(run, tmp, hprof)

            data = open(hprof, "rb").read()
            with open(os.path.join(tmp, "cut.hprof"), "wb") as f:
                f.write(data[: len(data) // 2])
            r = run("prof", "report", os.path.join(tmp, "cut.hprof"), check=False)
            if r.returncode != 1 or "truncated" not in r.stderr:
                fail(f"truncated capture: {r.returncode} {r.stderr}")
            print("ok truncated capture:", r.stderr.strip())

            if dataplane:
                check_dataplane(run, tmp, dataplane, config_path, data_dir, cost)

            if cost:
                measure_cost(run, hprof, "")
        finally:
            node.terminate()
            node.wait(timeout=30)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()

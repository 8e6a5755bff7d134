#!/usr/bin/python3
"""The profiler end to end: a real herald-controlplane, `heraldctl prof capture` at 10 ms,
then `prof report` and `prof csv` on the file it wrote, and a damaged copy reported as such.
With --cost, also prints the sampler's CPU cost per second of sampling at 10 ms and 100 ms
(the figure for docs/PERFORMANCE.md) from the node's own accounting (GET /v1/profiler).

Usage: profiler_capture.py HERALD_CONTROLPLANE HERALDCTL [--cost]
"""
import json
import os
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


def main():
    binary, heraldctl = sys.argv[1], sys.argv[2]
    cost = "--cost" in sys.argv[3:]
    with tempfile.TemporaryDirectory() as tmp:
        admin_port = free_port()
        config = {"controlplane": {"admin_address": "127.0.0.1", "admin_port": admin_port,
                                   "public_address": "127.0.0.1", "public_port": free_port(),
                                   "ipc_socket_path": os.path.join(tmp, "ipc.sock")}}
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

            data = open(hprof, "rb").read()
            with open(os.path.join(tmp, "cut.hprof"), "wb") as f:
                f.write(data[: len(data) // 2])
            r = run("prof", "report", os.path.join(tmp, "cut.hprof"), check=False)
            if r.returncode != 1 or "truncated" not in r.stderr:
                fail(f"truncated capture: {r.returncode} {r.stderr}")
            print("ok truncated capture:", r.stderr.strip())

            if cost:
                for interval_ms in (10, 100):
                    run("prof", "capture", "--interval", f"{interval_ms}ms", "--duration", "20s",
                        "-o", hprof)
                    status = json.loads(run("raw", "GET", "/v1/profiler").stdout)
                    per_sample_us = status["sample_cpu_us"]
                    print(f"sampler cost at {interval_ms} ms: {per_sample_us:.1f} us CPU per "
                          f"sample = {per_sample_us * 1000 / interval_ms / 1e6 * 100:.3f}% of one "
                          f"core ({status['series']} series)")
        finally:
            node.terminate()
            node.wait(timeout=30)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Complete registrations per second against a running herald-controlplane: each one is
POST /v1/accounts/code, the code read back from the log gateway's sms.log, then
POST /v1/accounts/verify, over keep-alive HTTPS connections from several processes.

Usage: registration_load.py --port 8443 --data-dir DIR [--processes 4] [--seconds 10]

The node must allow the load through its per-address limits (all requests come from one
address): start it with a config raising registration.address_* (see docs/PERFORMANCE.md).
Prints registrations/s and latency percentiles of a whole registration (code + verify).
"""
import argparse
import http.client
import json
import multiprocessing
import os
import ssl
import time


def tail_codes(path, offset, codes):
    with open(path) as f:
        f.seek(offset)
        data = f.read()
    consumed = data.rfind("\n") + 1
    for line in data[:consumed].splitlines():
        entry = json.loads(line)
        codes[entry["phone"]] = entry["code"]
    return offset + len(data[:consumed].encode())


def worker(index, args, results):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=context, timeout=10)
    sms_log = os.path.join(args.data_dir, "sms.log")
    offset = os.path.getsize(sms_log) if os.path.exists(sms_log) else 0
    codes = {}
    latencies = []
    failures = 0
    deadline = time.monotonic() + args.seconds
    n = 0
    base = int(time.time()) % 100000
    while time.monotonic() < deadline:
        n += 1
        phone = f"+1{index + 2}{base:05d}{n:06d}"[:16]
        start = time.monotonic()
        conn.request("POST", "/v1/accounts/code", json.dumps({"phone": phone, "method": "sms"}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            failures += 1
            continue
        while phone not in codes:
            offset = tail_codes(sms_log, offset, codes)
        conn.request("POST", "/v1/accounts/verify",
                     json.dumps({"phone": phone, "code": codes.pop(phone), "device_name": "b"}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            failures += 1
            continue
        latencies.append(time.monotonic() - start)
    results.put((latencies, failures))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(i, args, results))
             for i in range(args.processes)]
    for p in procs:
        p.start()
    latencies, failures = [], 0
    for _ in procs:
        lat, fail = results.get()
        latencies += lat
        failures += fail
    for p in procs:
        p.join()
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"registrations: {len(latencies)} in {args.seconds:.0f} s = "
          f"{len(latencies) / args.seconds:.0f}/s, failures {failures}, "
          f"latency ms p50 {pct(0.5):.2f} p99 {pct(0.99):.2f} max {latencies[-1] * 1000:.2f}")


if __name__ == "__main__":
    main()

"""Test helper: a herald-controlplane process on a private data dir and free ports, and small
HTTP(S) clients for its admin and public APIs. Debian's /usr/bin/python3, standard library only.
"""
import http.client
import json
import re
import os
import signal
import socket
import ssl
import subprocess
import time

START_DEADLINE_S = 30


def free_port():
    """A port nothing listens on right now (the kernel's pick; a race with other tests is
    possible but unlikely, and shows as a bind error at start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, binary, tmp, name="node", extra_config=None):
        self.binary = binary
        self.data_dir = os.path.join(tmp, f"data-{name}")
        self.admin_port = free_port()
        self.public_port = free_port()
        config = {
            "controlplane": {
                "ipc_socket_path": os.path.join(tmp, f"{name}.sock"),
                "admin_port": self.admin_port,
                "public_address": "127.0.0.1",
                "public_port": self.public_port,
            }
        }
        for section, values in (extra_config or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path = os.path.join(tmp, f"{name}.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.proc = None
        self.log_path = os.path.join(tmp, f"{name}.log")

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [self.binary, "--config", self.config_path, "--data-dir", self.data_dir],
            stdout=log, stderr=log)
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.admin_port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"node did not listen within {START_DEADLINE_S} s:\n{self.log()}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()[-8000:]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def admin_key(self):
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            return f.read().strip()

    def admin(self, method, path, body=None, key=None, timeout=10):
        """(status, headers dict lowercased, parsed JSON or text) from the admin API."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        return _exchange(conn, method, path, body, key)

    def public(self, method, path, body=None, timeout=10):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.public_port, timeout=timeout,
                                           context=context)
        return _exchange(conn, method, path, body, None)

    def sms_codes(self):
        """phone -> the last code the log gateway wrote for it."""
        codes = {}
        path = os.path.join(self.data_dir, "sms.log")
        if not os.path.exists(path):
            return codes
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill -9
                codes[entry["phone"]] = entry["code"]
        return codes


def _exchange(conn, method, path, body, key):
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    payload = None
    if body is not None:
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        hdrs = {k.lower(): v for k, v in response.getheaders()}
        text = raw.decode("utf-8", "replace")
        if hdrs.get("content-type", "").startswith("application/json") and text:
            return response.status, hdrs, json.loads(text)
        return response.status, hdrs, text
    finally:
        conn.close()


def wait_for(what, predicate, timeout_s=30, poll_s=0.05):
    """The predicate's first truthy value; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def metrics(node):
    """name -> value from GET /metrics (Prometheus text; names as the segment has them)."""
    status, _, text = node.admin("GET", "/metrics", key=node.admin_key())
    assert status == 200, (status, text)
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def metric(values, name, kind="counter"):
    """A dotted segment name's value from metrics() (0 when absent)."""
    prom = "herald_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    if kind == "counter" and not prom.endswith("_total"):
        prom += "_total"
    return values.get(prom, 0)


def stop_on_sigterm(proc, timeout_s=20):
    """SIGTERM, then the exit status (the process is killed and "hung on SIGTERM" returned if it
    does not exit in time)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "hung on SIGTERM"


def assert_no_sanitizer_reports(paths):
    """Sanitizer builds report into the processes' logs: none may hold a report."""
    for path in paths:
        with open(path) as f:
            text = f.read()
        for marker in ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"):
            assert marker not in text, f"{path}: {marker}"

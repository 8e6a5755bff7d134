"""Test helper: a herald-controlplane process on a private data dir and free ports, and small
HTTP(S) clients for its admin and public APIs. Debian's /usr/bin/python3, standard library only.
"""
import http.client
import json
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

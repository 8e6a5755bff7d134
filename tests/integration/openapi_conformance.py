#!/usr/bin/python3
"""docs/openapi.yaml against a running herald-controlplane, both ways.

1. The spec is well-formed (every $ref resolves, every operation has responses with schemas,
   operationIds are unique, path parameters are declared) and each schema that mirrors a
   FlatBuffers table (x-fbs-table) has exactly that table's fields, with matching JSON types.
2. Every route the server answers is in the spec: on each spec path a method no route takes
   must get 405 with an Allow header listing exactly the spec's methods; on paths the spec does
   not have (every prefix of a spec path, every spec path one segment longer, and a list of
   plausible others) it must get 404.
3. Every operation gets at least one request that succeeds, and the error cases it can produce
   cheaply (401 without a key or with a bad one, 403 with a read key, 404 unknown ids, 400 bad
   JSON): each answer's status must be documented for the operation, its content type and body
   must match the documented response, and 401 must carry WWW-Authenticate: Bearer.

Usage: openapi_conformance.py PATH_TO_herald-controlplane [--spec docs/openapi.yaml]
                              [--allow-unwired]
--allow-unwired reports operations the server does not serve yet without failing on them.
Exits 1 on any mismatch, with one line per mismatch.
"""
import argparse
import glob
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_lib as lib  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEADLINE_S = 30
MAX_GROUP_MEMBERS = 2  # the config's minimum: makes group_full cheap to reach

# Paths a server might plausibly route that the spec does not have: a route on any of them
# must be documented. {x} stands for a parameter.
UNDOCUMENTED_CANDIDATES = {
    "admin": [
        "/", "/v1", "/healthz", "/v1/status", "/v1/version", "/v1/metrics", "/v1/groups",
        "/v1/accounts/{x}/enable", "/v1/accounts/{x}/devices/{x}/revoke", "/v1/devices",
        "/v1/devices/{x}", "/v1/api-keys/{x}/revoke", "/v1/sessions", "/v1/accounts/code",
        "/v1/config/{x}", "/v1/config/rollback", "/v1/config/{x}/rollback",
        "/v1/config/{x}/revert", "/v1/config/pending", "/v1/config/candidate",
        "/v1/config/revisions/{x}/commit", "/v1/groups/{x}/members/{x}/x", "/v1/registration",
    ],
    "public": [
        "/", "/v1", "/v1/health", "/metrics", "/v1/accounts", "/v1/accounts/{x}",
        "/v1/accounts/{x}/devices", "/v1/sessions/{x}", "/v1/media", "/v1/api-keys",
        "/v1/config", "/v1/node", "/v1/accounts/code/{x}",
    ],
}

UNKNOWN_UUID = "00000000-0000-4000-8000-00000000dead"
UNKNOWN_HEX_ID = "00000000000000ff"


class Skip(Exception):
    """A scenario cannot go on (an operation it needs is not served, or an earlier step
    failed, which is already recorded)."""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.json = None
        self.json_error = None
        try:
            self.json = json.loads(body) if body else None
        except ValueError as e:
            self.json_error = str(e)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """herald-controlplane on a temp data dir and ephemeral ports."""

    def __init__(self, binary, tmp):
        self.tmp = tmp
        self.data_dir = os.path.join(tmp, "data")
        self.admin_port = free_port()
        self.public_port = free_port()
        config = {
            "controlplane": {
                "admin_address": "127.0.0.1",
                "admin_port": self.admin_port,
                "public_address": "127.0.0.1",
                "public_port": self.public_port,
                "ipc_socket_path": os.path.join(tmp, "ipc.sock"),
            },
            "limits": {"max_group_members": MAX_GROUP_MEMBERS},
            # The scenarios count on these (they are the defaults today): codes in
            # <data-dir>/sms.log, and one code a minute per phone number.
            "code_gateway": {"kind": "log"},
            "registration": {"phone_short_interval_ms": 60000, "phone_short_burst": 1},
        }
        self.config_path = os.path.join(tmp, "node.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.log_path = os.path.join(tmp, "controlplane.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--config", self.config_path, "--data-dir", self.data_dir],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ssl.check_hostname = False
        self.ssl.verify_mode = ssl.CERT_NONE  # the node's self-signed first-start certificate

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_started(self):
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"herald-controlplane exited {self.proc.returncode}:\n"
                                     f"{self.log_text()}")
            if "controlplane.started" in self.log_text():
                return
            time.sleep(0.05)
        raise AssertionError(f"herald-controlplane did not start:\n{self.log_text()}")

    def port_open(self, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def admin_key(self):
        path = os.path.join(self.data_dir, "admin.key")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read().strip()

    def sms_codes(self):
        """The `log` gateway's lines (controlplane/registration/code_gateway.cc)."""
        path = os.path.join(self.data_dir, "sms.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def request(self, listener, method, path, body=None, headers=None):
        port = self.admin_port if listener == "admin" else self.public_port
        if listener == "admin":
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=DEADLINE_S,
                                               context=self.ssl)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data)
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Conformance:
    def __init__(self, spec, node, allow_unwired):
        self.spec = spec
        self.ops = lib.operations(spec)
        self.node = node
        self.allow_unwired = allow_unwired
        self.failures = []
        self.notes = []
        self.seen = {op.id: set() for op in self.ops}  # operationId -> statuses seen
        self.served = {}  # operationId -> bool, from the route probe
        self.checked_requests = 0
        self.keys = {}

    # --- recording ------------------------------------------------------------------------------

    def fail(self, message):
        self.failures.append(message)
        print(f"  MISMATCH {message}")

    def note(self, message):
        self.notes.append(message)
        print(f"  note: {message}")

    # --- one request, checked against the spec ----------------------------------------------------

    def call(self, method, path, body=None, key="admin", expect=None, listener=None, raw=None,
             what=""):
        """Sends a request and checks the answer against the operation the spec has for it.
        `expect`: a status or set of statuses this case must produce. `key`: "admin", "read",
        None (no Authorization) or a literal key. Raises Skip when the operation is not
        served."""
        if listener is None:
            listener = "admin"
            if any(op.listener == "public" and op.method == method and op.matches(path)
                   for op in self.ops):
                listener = "public"
        op = lib.find_operation(self.ops, listener, method, path)
        if op is None:
            self.fail(f"the spec has no operation for {method} {path} on the {listener} listener")
            raise Skip(f"no operation for {method} {path}")
        if not self.served.get(op.id, True):
            raise Skip(f"{op.id} is not served")
        headers = {}
        if key is not None and listener == "admin":
            headers["Authorization"] = "Bearer " + self.keys.get(key, key)
        data = raw
        if body is not None:
            data = json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
            data = data.encode()
        label = f"{op.id}: {method} {path}" + (f" [{what}]" if what else "")
        try:
            r = self.node.request(listener, method, path, body=data, headers=headers)
        except (OSError, http.client.HTTPException) as e:
            self.fail(f"{label}: request failed: {e!r}")
            raise Skip(f"{op.id} did not answer")
        self.checked_requests += 1
        self.seen[op.id].add(r.status)
        problems = self.check_response(op, r)
        if expect is not None:
            wanted = {expect} if isinstance(expect, int) else set(expect)
            if r.status not in wanted:
                problems.append(f"expected {sorted(wanted)}, got {r.status} {lib.short(r.json)}")
        if problems:
            for p in problems:
                self.fail(f"{label}: {p}")
        else:
            print(f"  ok {r.status} {label}")
        return r

    def check_response(self, op, r):
        problems = []
        response = op.response_for(r.status)
        if response is None:
            return [f"status {r.status} is not documented (body {lib.short(r.body)})"]
        content = response.get("content", {})
        ctype = (r.header("Content-Type") or "").replace(" ", "").lower()
        media = None
        for m in content:
            norm = m.replace(" ", "").lower()
            if ctype == norm or (";" not in norm and ctype.split(";")[0] == norm):
                media = m
        if media is None:
            return [f"{r.status}: content type {ctype!r} is not one of {sorted(content)}"]
        schema = content[media].get("schema", {})
        if media.startswith("application/json"):
            if r.json_error is not None:
                return [f"{r.status}: body is not JSON ({r.json_error}): {lib.short(r.body)}"]
            errors = lib.validate(self.spec, schema, r.json)
            problems += [f"{r.status} body: {e}" for e in errors]
        elif media.startswith("text/plain"):
            try:
                r.body.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{r.status}: text body is not UTF-8")
        for name, header in (response.get("headers") or {}).items():
            header = lib.resolve(self.spec, header)
            value = r.header(name)
            if value is None:
                problems.append(f"{r.status}: documented header {name} is missing")
                continue
            hs = header.get("schema", {})
            if hs.get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    problems.append(f"{r.status}: header {name}={value!r} is not an integer")
                    continue
            problems += [f"{r.status} header {name}: {e}"
                         for e in lib.validate(self.spec, hs, value)]
        return problems

    # --- 2. routes the server answers ---------------------------------------------------------

    def probe_routes(self):
        print("routes: a method no route takes, on every spec path and some others")
        by_path = {}
        for op in self.ops:
            by_path.setdefault((op.listener, op.template), []).append(op)
        for (listener, template), ops in sorted(by_path.items()):
            path = self.instantiate(template)
            expected = lib.allowed_methods(self.ops, listener, path)
            method = next(m for m in ("PATCH", "PUT", "OPTIONS") if m not in expected)
            r = self.probe(listener, method, path)
            if r is None:
                for op in ops:
                    self.served[op.id] = False
                continue
            if r.status == 404:
                for op in ops:
                    self.served[op.id] = False
                continue
            if r.status != 405:
                self.fail(f"{method} {path} on {listener}: expected 405, got {r.status}")
                continue
            allow = {m.strip().upper() for m in (r.header("Allow") or "").split(",") if m.strip()}
            for op in ops:
                self.served[op.id] = op.method in allow
            extra = allow - expected
            # Methods of spec paths that the server lacks are reported as not served below.
            if extra:
                self.fail(f"{template} on {listener}: the server routes {sorted(extra)}, "
                          f"which the spec does not document")
            else:
                print(f"  ok {listener} {template}: Allow {sorted(allow)}")
            problems = self.check_error_body(r)
            if problems:
                self.fail(f"{method} {path}: 405 body: {problems}")
        for listener, template in self.undocumented_candidates():
            if True:
                path = template.replace("{x}", "x1")
                if lib.allowed_methods(self.ops, listener, path):
                    continue  # a spec template matches: covered above
                r = self.probe(listener, "PATCH", path)
                if r is None:
                    continue
                if r.status != 404:
                    self.fail(f"{listener} {path}: the server routes it ({r.status}, Allow "
                              f"{r.header('Allow')}) but the spec has no such path")
                elif problems := self.check_error_body(r):
                    self.fail(f"PATCH {path} on {listener}: 404 body: {problems}")
        unserved = [op for op in self.ops if not self.served.get(op.id, False)]
        if unserved:
            message = "not served by the server: " + ", ".join(
                f"{op.id} ({op.method} {op.template})" for op in unserved)
            if self.allow_unwired:
                self.note(message)
            else:
                self.fail(message)

    def undocumented_candidates(self):
        """UNDOCUMENTED_CANDIDATES, plus every prefix of a spec path and every spec path with
        one more segment: where an undocumented route would most likely be."""
        out = set()
        for listener, templates in UNDOCUMENTED_CANDIDATES.items():
            out.update((listener, t) for t in templates)
        for op in self.ops:
            segments = ["{x}" if s.startswith("{") else s for s in op.segments]
            for n in range(1, len(segments)):
                out.add((op.listener, "/" + "/".join(segments[:n])))
            out.add((op.listener, "/" + "/".join(segments + ["{x}"])))
        return sorted(out)

    def probe(self, listener, method, path):
        headers = {"Authorization": "Bearer " + self.keys["admin"]} if listener == "admin" else {}
        try:
            return self.node.request(listener, method, path, headers=headers)
        except (OSError, http.client.HTTPException) as e:
            self.fail(f"{method} {path} on {listener}: {e!r}")
            return None

    def check_error_body(self, r):
        if not (r.header("Content-Type") or "").startswith("application/json"):
            return [f"content type {r.header('Content-Type')!r}"]
        if r.json_error:
            return [r.json_error]
        return lib.validate(self.spec, {"$ref": "#/components/schemas/Error"}, r.json)

    def instantiate(self, template):
        """A concrete path: each {param} replaced by a syntactically valid id nobody has."""
        out = []
        item = self.spec["paths"][template]
        params = {}
        for p in item.get("parameters", []):
            p = lib.resolve(self.spec, p)
            params[p["name"]] = lib.resolve(self.spec, p.get("schema", {}))
        for seg in template.strip("/").split("/"):
            if seg.startswith("{"):
                schema = params.get(seg[1:-1], {})
                if schema.get("format") == "uuid":
                    out.append(UNKNOWN_UUID)
                elif schema.get("type") == "integer":
                    out.append("4000000000")
                else:
                    out.append(UNKNOWN_HEX_ID)
            else:
                out.append(seg)
        return "/" + "/".join(out)

    # --- 3a. authentication, for every admin operation ----------------------------------------

    def check_auth(self):
        """401 without a key and with a bad one; 403 with a read key on admin scope."""
        if "read" not in self.keys:
            self.note("no read key (createApiKey failed): the 403 checks cannot run")
        for op in self.ops:
            if op.listener != "admin" or not self.served.get(op.id):
                continue
            path = self.instantiate(op.template)
            # The spec's 401 documents WWW-Authenticate: call() checks it is there.
            self.call(op.method, path, key=None, expect=401, what="no key")
            self.call(op.method, path, key="hk_0000000000000000_" + "A" * 43, expect=401,
                      what="unknown key")
            self.call(op.method, path, key="not-a-key", expect=401, what="malformed key")
            if op.scope == "admin" and "read" in self.keys:
                self.call(op.method, path, key="read", expect=403, what="read key")

    # --- 3b. the scenarios ------------------------------------------------------------------------

    def run(self, name, fn):
        print(f"{name}:" + (f" {fn.__doc__.strip()}" if fn.__doc__ else ""))
        try:
            fn()
        except Skip as e:
            self.note(f"{name}: stopped early: {e}")

    def need(self, r, status, what):
        if r.status != status:
            raise Skip(f"{what} answered {r.status}, the rest of this scenario needs {status}")
        return r.json

    def scenario_system(self):
        # A GET operation answers HEAD too: the same status and head, no body.
        head = self.node.request("admin", "HEAD", "/v1/node",
                                 headers={"Authorization": "Bearer " + self.keys["admin"]})
        if head.status != 200 or not (head.header("Content-Type") or "").startswith(
                "application/json") or head.body:
            self.fail(f"HEAD /v1/node: {head.status} {head.header('Content-Type')} "
                      f"{lib.short(head.body)}: expected GET's 200 application/json, no body")
        else:
            print("  ok 200 HEAD /v1/node")
        self.call("GET", "/v1/health", key="read", expect={200, 503})
        self.call("GET", "/v1/node", key="read", expect=200)
        r = self.call("GET", "/metrics", key="read", expect={200, 503})
        if r.status == 200 and not any(
                line.startswith("#") or line[:1].isalpha()
                for line in r.body.decode("utf-8", "replace").splitlines()):
            self.fail("getMetrics: 200 body is not Prometheus text")
        self.call("GET", "/v1/stats", key="read", expect={200, 503})

    def scenario_profiler(self):
        self.call("GET", "/v1/profiler", key="read", expect=200)
        self.call("GET", "/v1/profiler/capture", key="read", expect={404, 200})
        self.call("POST", "/v1/profiler/capture/stop", expect=409, what="nothing runs")
        self.call("POST", "/v1/profiler/capture?interval_ms=5&duration_ms=100", expect=400,
                  what="interval below the minimum")
        self.call("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=100", key="read",
                  expect=403)
        self.call("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=20000", expect=202)
        self.call("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=100", expect=409,
                  what="already running")
        self.call("GET", "/v1/profiler/capture", key="read", expect=409, what="running")
        self.call("POST", "/v1/profiler/capture/stop", expect=200)
        self.call("GET", "/v1/profiler/capture", key="read", expect=200)

    def scenario_api_keys(self):
        created = self.need(
            self.call("POST", "/v1/api-keys", {"name": "conformance-read", "scope": "read"},
                      expect=201), 201, "createApiKey")
        self.keys["read"] = created["key"]
        self.call("POST", "/v1/api-keys", raw='{"name": ', expect=400, what="bad JSON")
        self.call("POST", "/v1/api-keys", {"name": "x", "scope": "root"}, expect=400,
                  what="bad scope")
        self.call("POST", "/v1/api-keys", {"name": "x", "scope": "read", "extra": 1},
                  expect=400, what="unknown field")
        listed = self.call("GET", "/v1/api-keys", key="read", expect=200)
        if listed.status == 200 and created["id"] not in [k.get("id") for k in
                                                          listed.json.get("keys", [])]:
            self.fail("listApiKeys: the key just created is not listed")
        second = self.need(
            self.call("POST", "/v1/api-keys", {"name": "conformance-admin", "scope": "admin"},
                      expect=201), 201, "createApiKey")
        self.call("DELETE", f"/v1/api-keys/{second['id']}", expect=200)
        self.keys["revoked"] = second["key"]
        self.call("GET", "/v1/api-keys", key="revoked", expect=401, what="revoked key")
        self.call("DELETE", f"/v1/api-keys/{second['id']}", expect=200, what="again: idempotent")
        self.call("DELETE", f"/v1/api-keys/{UNKNOWN_HEX_ID}", expect=404, what="unknown id")
        self.call("DELETE", "/v1/api-keys/NOT-HEX", expect=400, what="bad id")
        bootstrap = self.keys["admin"].split("_")[1]
        self.call("DELETE", f"/v1/api-keys/{bootstrap}", expect=409, what="last admin key")

    def register(self, phone, device_name):
        """Code, verify, session on the public API; returns the verify answer."""
        self.need(self.call("POST", "/v1/accounts/code", {"phone": phone, "method": "sms"},
                            key=None, expect=200), 200, "requestCode")
        codes = [c for c in self.node.sms_codes() if c.get("phone") == phone]
        if not codes or "code" not in codes[-1]:
            self.fail(f"requestCode: no code for {phone} in <data-dir>/sms.log "
                      f"(lines: {self.node.sms_codes()})")
            raise Skip("no code to verify")
        code = codes[-1]["code"]
        wrong = "000000" if code != "000000" else "111111"
        self.call("POST", "/v1/accounts/verify",
                  {"phone": phone, "code": wrong, "device_name": device_name}, key=None,
                  expect=403, what="wrong code")
        return self.need(
            self.call("POST", "/v1/accounts/verify",
                      {"phone": phone, "code": code, "device_name": device_name}, key=None,
                      expect=200), 200, "verifyCode")

    def scenario_registration(self):
        self.call("POST", "/v1/accounts/code", raw='{"phone": ', key=None, expect=400,
                  what="bad JSON")
        self.call("POST", "/v1/accounts/code", {"phone": "+15550100009", "method": "fax"},
                  key=None, expect=400, what="bad method")
        self.call("POST", "/v1/accounts/code", {"phone": "12", "method": "sms"}, key=None,
                  expect=400, what="bad phone")
        self.call("POST", "/v1/accounts/code", {"phone": "+15550100001", "method": "sms",
                                                "x": 1}, key=None, expect=400,
                  what="unknown field")
        self.call("POST", "/v1/accounts/verify", raw="[]", key=None, expect=400, what="bad JSON")
        self.call("POST", "/v1/accounts/verify",
                  {"phone": "+15550100008", "code": "123456", "device_name": "phone"}, key=None,
                  expect=400, what="no code pending")
        self.call("POST", "/v1/sessions", raw="{", key=None, expect=400, what="bad JSON")
        self.call("POST", "/v1/sessions", {"credential": "A" * 43}, key=None, expect=401,
                  what="unknown credential")

        self.accounts = []
        first = self.register("+15550100001", "conformance-phone")
        self.accounts.append(first)
        self.phone = "+15550100001"
        # The phone's limit is one code a minute: a second request now is refused.
        self.call("POST", "/v1/accounts/code", {"phone": "+15550100001", "method": "voice"},
                  key=None, expect=429, what="rate limited")
        self.call("POST", "/v1/sessions", {"credential": first["credential"]}, key=None,
                  expect=200)
        push = {"credential": first["credential"], "platform": "apns", "token": "a" * 64}
        self.call("PUT", "/v1/devices/push-token", raw="{", key=None, expect=400,
                  what="bad JSON")
        self.call("PUT", "/v1/devices/push-token", dict(push, credential="A" * 43), key=None,
                  expect=401, what="unknown credential")
        self.call("PUT", "/v1/devices/push-token", dict(push, platform="sms"), key=None,
                  expect=400, what="bad platform")
        self.call("PUT", "/v1/devices/push-token", dict(push, token="a b c d e"), key=None,
                  expect=400, what="bad token")
        self.call("PUT", "/v1/devices/push-token", push, key=None, expect=200)
        self.accounts.append(self.register("+15550100002", "second"))
        self.accounts.append(self.register("+15550100003", "third"))

    def scenario_accounts(self):
        if not getattr(self, "accounts", None):
            raise Skip("registration made no accounts")
        account = self.accounts[0]["account_id"]
        device = self.accounts[0]["device_id"]
        found = self.call("GET", "/v1/accounts?phone=" + urllib.parse.quote(self.phone),
                          key="read", expect=200)
        if found.status == 200 and found.json.get("account_id") != account:
            self.fail("listAccounts: ?phone= answered another account")
        self.call("GET", "/v1/accounts?phone=%2B15550199999", key="read", expect=404,
                  what="unknown phone")
        self.call("GET", "/v1/accounts?phone=%2B15550100001&limit=1", key="read", expect=400,
                  what="phone with limit")
        self.scenario_account_pages()
        self.call("GET", f"/v1/accounts/{account}", key="read", expect=200)
        self.call("GET", f"/v1/accounts/{UNKNOWN_UUID}", key="read", expect=404,
                  what="unknown id")
        self.call("GET", "/v1/accounts/not-a-uuid", key="read", expect=400, what="bad id")
        devices = self.call("GET", f"/v1/accounts/{account}/devices", key="read", expect=200)
        if devices.status == 200 and device not in [d.get("device_id")
                                                    for d in devices.json.get("devices", [])]:
            self.fail("listDevices: the registered device is not listed")
        self.call("GET", f"/v1/accounts/{UNKNOWN_UUID}/devices", key="read", expect=404,
                  what="unknown account")
        self.call("DELETE", f"/v1/accounts/{account}/devices/4000000000", expect=404,
                  what="unknown device")
        self.call("DELETE", f"/v1/accounts/{account}/devices/0", expect=400, what="bad device")
        self.call("DELETE", f"/v1/accounts/{UNKNOWN_UUID}/devices/1", expect=404,
                  what="unknown account")
        self.call("POST", f"/v1/accounts/{UNKNOWN_UUID}/disable", expect=404, what="unknown id")
        self.call("POST", "/v1/accounts/nope/disable", expect=400, what="bad id")
        # The third account is the one that gets revoked and disabled; groups use the others.
        third = self.accounts[2]
        self.call("DELETE", f"/v1/accounts/{third['account_id']}/devices/{third['device_id']}",
                  expect=200)
        self.call("POST", f"/v1/accounts/{third['account_id']}/disable", expect=200)
        self.call("POST", "/v1/sessions", {"credential": third["credential"]}, key=None,
                  expect={401, 403}, what="revoked device, disabled account")

    def scenario_provision_and_link(self):
        """provisionAccounts, then a device linked to the first provisioned account."""
        self.call("POST", "/v1/accounts/provision", raw="{", expect=400, what="bad JSON")
        self.call("POST", "/v1/accounts/provision", {"phones": [], "device_name": "lg"},
                  expect=400, what="no phones")
        self.call("POST", "/v1/accounts/provision",
                  {"phones": ["+15550200001", "12"], "device_name": "lg"}, expect=400,
                  what="bad phone")
        r = self.need(self.call("POST", "/v1/accounts/provision",
                                {"phones": ["+15550200001", "+15550200002"],
                                 "device_name": "loadgen"}, expect=200), 200,
                      "provisionAccounts")
        primary = r["accounts"][0]
        self.call("POST", "/v1/sessions", {"credential": primary["credential"]}, key=None,
                  expect=200, what="provisioned credential")
        self.call("POST", "/v1/devices/link-code", raw="{", key=None, expect=400,
                  what="bad JSON")
        self.call("POST", "/v1/devices/link-code", {"credential": "A" * 43}, key=None,
                  expect=401, what="unknown credential")
        code = self.need(self.call("POST", "/v1/devices/link-code",
                                   {"credential": primary["credential"]}, key=None, expect=200),
                         200, "requestLinkCode")["link_code"]
        self.call("POST", "/v1/devices/link", {"link_code": "A" * 22, "device_name": "x"},
                  key=None, expect=404, what="unknown code")
        self.call("POST", "/v1/devices/link", {"link_code": code, "device_name": ""},
                  key=None, expect=400, what="bad device name")
        linked = self.need(self.call("POST", "/v1/devices/link",
                                     {"link_code": code, "device_name": "laptop"}, key=None,
                                     expect=200), 200, "linkDevice")
        self.call("POST", "/v1/devices/link", {"link_code": code, "device_name": "laptop"},
                  key=None, expect=409, what="used code")
        self.call("POST", "/v1/devices/link-code", {"credential": linked["credential"]},
                  key=None, expect=403, what="not the primary")
        self.call("POST", "/v1/sessions", {"credential": linked["credential"]}, key=None,
                  expect=200, what="linked device")

    def scenario_account_pages(self):
        """GET /v1/accounts without phone: pages of one follow `next` through every account."""
        ids = sorted(a["account_id"] for a in self.accounts)
        whole = self.call("GET", "/v1/accounts", key="read", expect=200, what="first page")
        if whole.status == 200:
            listed = [a.get("account_id") for a in whole.json.get("accounts", [])]
            if listed != ids or "next" in whole.json:
                self.fail(f"listAccounts: one page of {listed} (next {whole.json.get('next')}), "
                          f"expected {ids} and no next")
        seen, after = [], None
        for _ in range(len(ids) + 1):
            path = "/v1/accounts?limit=1" + (f"&after={after}" if after else "")
            page = self.call("GET", path, key="read", expect=200, what="limit=1")
            if page.status != 200:
                break
            seen += [a.get("account_id") for a in page.json.get("accounts", [])]
            after = page.json.get("next")
            if after is None:
                break
        if seen != ids:
            self.fail(f"listAccounts: pages of one listed {seen}, expected {ids}")
        past = self.call("GET", "/v1/accounts?after=ffffffff-ffff-ffff-ffff-ffffffffffff",
                         key="read", expect=200, what="after the last id")
        if past.status == 200 and (past.json.get("accounts") or "next" in past.json):
            self.fail(f"listAccounts: a page after the last id is not empty: {past.json}")
        self.call("GET", "/v1/accounts?limit=1000", key="read", expect=200, what="max limit")
        self.call("GET", "/v1/accounts?limit=0", key="read", expect=400, what="limit 0")
        self.call("GET", "/v1/accounts?limit=1001", key="read", expect=400, what="limit 1001")
        self.call("GET", "/v1/accounts?after=nope", key="read", expect=400, what="bad cursor")

    def scenario_groups(self):
        if len(getattr(self, "accounts", [])) < 3:
            raise Skip("registration made too few accounts")
        a, b, c = (x["account_id"] for x in self.accounts[:3])
        self.call("POST", "/v1/groups", raw="{", expect=400, what="bad JSON")
        self.call("POST", "/v1/groups", {"members": [a]}, expect=400, what="no name")
        self.call("POST", "/v1/groups", {"name": "g", "members": [UNKNOWN_UUID]}, expect=400,
                  what="unknown account")
        self.call("POST", "/v1/groups", {"name": "full", "members": [a, b, c]}, expect=409,
                  what=f"over max_group_members={MAX_GROUP_MEMBERS}")
        group = self.need(self.call("POST", "/v1/groups", {"name": "conformance", "members": [a]},
                                    expect=201), 201, "createGroup")["group_id"]
        self.call("GET", f"/v1/groups/{group}", key="read", expect=200)
        listed = self.call("GET", "/v1/groups", key="read", expect=200)
        if listed.status == 200 and group not in [g.get("group_id")
                                                  for g in listed.json.get("groups", [])]:
            self.fail(f"listGroups: the new group {group} is not listed: {listed.json}")
        self.call("GET", "/v1/groups?limit=1", key="read", expect=200, what="limit=1")
        self.call("GET", f"/v1/groups?after={group}", key="read", expect=200, what="after")
        self.call("GET", "/v1/groups?limit=0", key="read", expect=400, what="limit 0")
        self.call("GET", "/v1/groups?limit=1001", key="read", expect=400, what="limit 1001")
        self.call("GET", "/v1/groups?after=xyz", key="read", expect=400, what="bad cursor")
        self.call("GET", f"/v1/groups/{UNKNOWN_HEX_ID}", key="read", expect=404,
                  what="unknown id")
        self.call("GET", "/v1/groups/xyz", key="read", expect=400, what="bad id")
        self.call("POST", f"/v1/groups/{group}/members", raw="{", expect=400, what="bad JSON")
        self.call("POST", f"/v1/groups/{group}/members", {"accounts": [b]}, expect=200)
        self.call("POST", f"/v1/groups/{group}/members", {"accounts": [c]}, expect=409,
                  what="group full")
        self.call("POST", f"/v1/groups/{UNKNOWN_HEX_ID}/members", {"accounts": [b]},
                  expect=404, what="unknown group")
        self.call("DELETE", f"/v1/groups/{group}/members/{b}", expect=200)
        self.call("DELETE", f"/v1/groups/{group}/members/{b}", expect=404, what="not a member")
        self.call("DELETE", f"/v1/groups/{group}/members/bad", expect=400, what="bad account")
        self.call("DELETE", f"/v1/groups/{group}", expect=200)
        self.call("DELETE", f"/v1/groups/{group}", expect=404, what="deleted")
        self.call("GET", f"/v1/groups/{group}", key="read", expect=404, what="deleted")

    def scenario_config(self):
        active = self.need(self.call("GET", "/v1/config", key="read", expect=200), 200,
                           "getConfig")
        first = active["revision"]
        revs = self.call("GET", "/v1/config/revisions", key="read", expect=200)
        if revs.status == 200 and not revs.json.get("revisions"):
            self.fail("listConfigRevisions: a running node has at least its first revision")
        self.call("GET", "/v1/config/revisions?limit=0", key="read", expect=400,
                  what="limit out of range")
        self.call("GET", f"/v1/config/revisions/{first}", key="read", expect=200)
        self.call("GET", "/v1/config/revisions/4000000000", key="read", expect=404,
                  what="unknown revision")
        self.call("GET", "/v1/config/revisions/abc", key="read", expect=400, what="bad revision")

        self.call("POST", "/v1/config", raw='{"node": ', expect=400, what="bad JSON")
        self.call("POST", "/v1/config", {"limits": {"max_frame_bytez": 1}}, expect=400,
                  what="unknown field")
        config = active["config"]
        config.setdefault("node", {})["name"] = "conformance"
        candidate = self.need(
            self.call("POST", "/v1/config?comment=openapi%20conformance", config, expect=201),
            201, "createConfigCandidate")["revision"]
        paged = self.call("GET", "/v1/config/revisions?limit=1", key="read", expect=200)
        if paged.status == 200 and "next_before" not in paged.json:
            self.fail("listConfigRevisions: two revisions, limit=1, and no next_before")

        self.call("POST", f"/v1/config/{candidate}/commit", raw="{", expect=400, what="bad JSON")
        self.call("POST", f"/v1/config/{candidate}/commit", {"confirm_timeout_s": 0},
                  expect=400, what="timeout out of range")
        self.call("POST", "/v1/config/4000000000/commit", expect=404, what="unknown revision")
        committed = self.call("POST", f"/v1/config/{candidate}/commit",
                              {"confirm_timeout_s": 600}, expect=200, what="with a confirm")
        if committed.status == 200 and "confirm_deadline_unix_ms" not in committed.json:
            self.fail("commitConfig: a commit with confirm_timeout_s has no deadline")
        pending = self.call("GET", "/v1/config", key="read", expect=200, what="pending confirm")
        if pending.status == 200 and "pending_confirm" not in pending.json:
            self.fail("getConfig: a commit waits for its confirm, and pending_confirm is absent")
        self.call("POST", f"/v1/config/{first}/confirm", expect=409, what="not the pending one")
        self.call("POST", "/v1/config/4000000000/confirm", expect=404, what="unknown revision")
        self.call("POST", f"/v1/config/{candidate}/confirm", expect=200)
        self.call("POST", f"/v1/config/{candidate}/confirm", expect=409, what="confirmed already")
        self.call("POST", f"/v1/config/{first}/commit", expect=200, what="rollback, no body")

    # --- the summary ----------------------------------------------------------------------------

    def check_coverage(self):
        print("coverage (operation: statuses seen):")
        for op in self.ops:
            seen = sorted(self.seen[op.id])
            print(f"  {op.id:24} {op.method:6} {op.template:40} {seen or '-'}")
            if not self.served.get(op.id):
                continue  # reported by the route probe
            if not any(200 <= s < 300 for s in seen):
                self.fail(f"{op.id}: no request succeeded (statuses {seen})")


def static_checks(spec):
    problems = lib.check_well_formed(spec)
    fbs = sorted(glob.glob(os.path.join(REPO, "schemas", "*.fbs")))
    texts = []
    for path in fbs:
        with open(path) as f:
            texts.append(f.read())
    tables, enums = lib.parse_fbs(texts)
    problems += lib.check_fbs(spec, tables, enums)
    return problems


def run_against(node, c):
    node.wait_started()
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and not (node.admin_key() and
                                               node.port_open(node.admin_port)):
        if node.proc.poll() is not None:
            break
        time.sleep(0.05)
    key = node.admin_key()
    if key is None or not node.port_open(node.admin_port):
        raise AssertionError(f"no admin listener on port {node.admin_port} or no "
                             f"<data-dir>/admin.key {DEADLINE_S} s after the start: the node "
                             f"serves no admin API yet")
    c.keys["admin"] = key
    if not node.port_open(node.public_port):
        c.fail(f"no public listener on port {node.public_port}")
    c.probe_routes()
    c.run("api keys", c.scenario_api_keys)
    c.run("auth", c.check_auth)
    c.run("system", c.scenario_system)
    c.run("profiler", c.scenario_profiler)
    c.run("registration", c.scenario_registration)
    c.run("accounts", c.scenario_accounts)
    c.run("provisioning and linking", c.scenario_provision_and_link)
    c.run("groups", c.scenario_groups)
    c.run("config", c.scenario_config)
    c.check_coverage()
    if node.proc.poll() is not None:
        c.fail(f"herald-controlplane exited {node.proc.returncode} during the test")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary", nargs="?", help="herald-controlplane; omit for the static "
                        "checks only")
    parser.add_argument("--spec", default=os.path.join(REPO, "docs", "openapi.yaml"))
    parser.add_argument("--allow-unwired", action="store_true")
    args = parser.parse_args()

    spec = lib.load_spec(args.spec)
    ops = lib.operations(spec)
    print(f"spec: {args.spec}: {len(ops)} operations, "
          f"{len(spec.get('components', {}).get('schemas', {}))} schemas")
    problems = static_checks(spec)
    for p in problems:
        print(f"  SPEC {p}")
    if not problems:
        print("  ok: well-formed; x-fbs-table schemas match schemas/*.fbs")
    if args.binary is None:
        return 1 if problems else 0

    with tempfile.TemporaryDirectory() as tmp:
        node = Node(args.binary, tmp)
        c = Conformance(spec, node, args.allow_unwired)
        try:
            run_against(node, c)
        except AssertionError as e:
            c.fail(str(e))
        finally:
            node.stop()
            log = node.log_text()
        if node.proc.returncode != 0:
            c.fail(f"herald-controlplane stopped with {node.proc.returncode} (SIGTERM must stop "
                   f"it cleanly)")
    failures = problems + c.failures
    print(f"{c.checked_requests} requests checked against {len(ops)} operations; "
          f"{len(failures)} mismatches")
    if c.notes:
        print("notes:")
        for n in c.notes:
            print(f"  {n}")
    if failures:
        print("FAIL:")
        for f in failures:
            print(f"  {f}")
        print("--- herald-controlplane log (last 3000 chars) ---")
        print(log[-3000:])
        return 1
    print("openapi conformance: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Committed config revisions reach the control plane's own services without a restart: the
per-phone rate limit, the group size limit and the code gateway change at commit, at rollback
and at a confirm-timeout revert; a restart field is reported and leaves the running service
as it was. Counters config.applied / config.apply_failures count the applies.

Usage: config_hot_apply.py PATH_TO_herald-controlplane   (PYTHONPATH: tests/integration)
"""
import http.server
import json
import sys
import tempfile
import threading
import time

from herald_node import Node

BINARY = sys.argv[1]
APPLY_DEADLINE_S = 10


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Admin:
    def __init__(self, node):
        self.node = node
        self.key = node.admin_key()

    def call(self, method, path, body=None, expect=None):
        status, _, payload = self.node.admin(method, path, body, key=self.key)
        if expect is not None:
            check(status in expect, f"{method} {path}: {status} {payload}\n{self.node.log()}")
        return status, payload

    def stats(self):
        return self.call("GET", "/v1/stats", expect={200})[1]

    def counter(self, name):
        return self.stats()["counters"][name]

    def config(self):
        return self.call("GET", "/v1/config", expect={200})[1]["config"]

    def add_revision(self, config):
        _, body = self.call("POST", "/v1/config", config, expect={201})
        return body["revision"]

    def commit(self, revision, confirm_timeout_s=None):
        body = {} if confirm_timeout_s is None else {"confirm_timeout_s": confirm_timeout_s}
        _, answer = self.call("POST", f"/v1/config/{revision}/commit", body, expect={200})
        return answer

    def wait_applied(self, count):
        """Applies run after the commit is durable; wait for the counter, not for time."""
        deadline = time.monotonic() + APPLY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.counter("config.applied") >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"config.applied never reached {count}:\n{self.node.log()}")


def register(node, phone):
    status, _, body = node.public("POST", "/v1/accounts/code", {"phone": phone, "method": "sms"})
    check(status == 200, f"code for {phone}: {status} {body}")
    status, _, body = node.public("POST", "/v1/accounts/verify",
                                  {"phone": phone, "code": node.sms_codes()[phone],
                                   "device_name": "t"})
    check(status == 200, f"verify {phone}: {status} {body}")
    return body["account_id"]


def request_code(node, phone):
    status, _, body = node.public("POST", "/v1/accounts/code", {"phone": phone, "method": "sms"})
    check(status in (200, 429), f"code for {phone}: {status} {body}")
    return status


def create_group(admin, members):
    status, body = admin.call("POST", "/v1/groups", {"name": "g", "members": members},
                              expect={201, 409})
    if status == 409:
        check(body["error"] == "group_full", f"409 without group_full: {body}")
    return status


class Webhook(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        Webhook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # Every request comes from 127.0.0.1: the per-address limits must not be the ones hit.
        node = Node(BINARY, tmp, extra_config={
            "registration": {"address_short_burst": 1000, "address_day_burst": 10000},
            "limits": {"max_group_members": 3},
        }).start()
        try:
            admin = Admin(node)
            accounts = [register(node, f"+1555010{i:04d}") for i in range(5)]
            applied = admin.counter("config.applied")
            original = admin.config()
            original_revision = admin.call("GET", "/v1/config", expect={200})[1]["revision"]

            # Before: one code per phone per minute, groups of at most 3.
            phone = "+15550109999"
            check(request_code(node, phone) == 200, "first code refused")
            check(request_code(node, phone) == 429, "second code within a minute allowed")
            check(create_group(admin, accounts[:4]) == 409, "a group of 4 was allowed")

            # Commit: a burst of 3 codes per phone, groups of 4; and a restart field
            # (admin_http.max_body_bytes) that must be reported and must not change the
            # running listener.
            relaxed = json.loads(json.dumps(original))
            relaxed["registration"]["phone_short_burst"] = 3
            relaxed["limits"]["max_group_members"] = 4
            relaxed["admin_http"]["max_body_bytes"] = 1024
            relaxed_revision = admin.add_revision(relaxed)
            answer = admin.commit(relaxed_revision)
            check("admin_http.max_body_bytes" in answer["restart_required"],
                  f"restart field not reported: {answer}")
            check("limits.max_group_members" not in answer["restart_required"],
                  f"hot field reported as restart: {answer}")
            admin.wait_applied(applied + 1)
            check(request_code(node, phone) == 200, "burst 3 did not apply at commit")
            check(create_group(admin, accounts[:4]) == 201, "max_group_members 4 not applied")
            check(create_group(admin, accounts[:5]) == 409, "a group of 5 was allowed")
            # The running admin listener still takes bodies over 1024 bytes (a whole config).
            big = json.dumps(relaxed)
            check(len(big) > 1024, "the config JSON is too small for this check")
            admin.call("POST", "/v1/config", relaxed, expect={201})
            # One log line per apply, naming the revision and the changed fields.
            lines = [line for line in node.log().splitlines()
                     if "config.applied" in line and f"revision={relaxed_revision} " in line]
            check(len(lines) == 1, f"apply log lines: {lines}")
            for field in ("limits.max_group_members", "registration.phone_short_burst",
                          "admin_http.max_body_bytes"):
                check(field in lines[0], f"{field} missing from {lines[0]}")

            # Rollback to the original revision: groups of 3 again.
            admin.commit(original_revision)
            admin.wait_applied(applied + 2)
            check(create_group(admin, accounts[:4]) == 409, "rollback did not restore the limit")

            # Commit with a confirm timeout and let it lapse: the revert applies too.
            reverts = admin.counter("config.reverts")
            admin.commit(relaxed_revision, confirm_timeout_s=1)
            admin.wait_applied(applied + 3)
            check(create_group(admin, accounts[:4]) == 201, "confirmed-commit not applied")
            admin.wait_applied(applied + 4)  # the revert, from the 1 s tick
            check(admin.counter("config.reverts") == reverts + 1, "no revert counted")
            check(create_group(admin, accounts[:4]) == 409, "revert did not restore the limit")

            # The code gateway: log -> webhook at commit, codes go to the new URL.
            server = http.server.HTTPServer(("127.0.0.1", 0), Webhook)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                hooked = json.loads(json.dumps(original))
                hooked["code_gateway"]["kind"] = "webhook"
                hooked["code_gateway"]["webhook_url"] = \
                    f"http://127.0.0.1:{server.server_address[1]}/sms"
                admin.commit(admin.add_revision(hooked))
                admin.wait_applied(applied + 5)
                webhook_phone = "+15550108888"
                check(request_code(node, webhook_phone) == 200, "code via webhook refused")
                deadline = time.monotonic() + APPLY_DEADLINE_S
                while time.monotonic() < deadline and not Webhook.received:
                    time.sleep(0.05)
                check([r["phone"] for r in Webhook.received] == [webhook_phone],
                      f"webhook got {Webhook.received}")
                check(webhook_phone not in node.sms_codes(), "the log gateway still got a code")
                check(admin.counter("config.apply_failures") == 0, "an apply failed")

                # A gateway that cannot be built (its CA file is missing) is an apply failure:
                # counted and logged, and the running gateway stays in place.
                broken = json.loads(json.dumps(hooked))
                broken["code_gateway"]["webhook_url"] = "https://127.0.0.1:1/sms"
                broken["code_gateway"]["webhook_ca_path"] = "/nonexistent/herald-ca.pem"
                admin.commit(admin.add_revision(broken))
                admin.wait_applied(applied + 6)
                check(admin.counter("config.apply_failures") == 1, "the failure was not counted")
                check("config.apply_failed" in node.log(), "the failure was not logged")
                still_phone = "+15550107777"
                check(request_code(node, still_phone) == 200, "code refused after a failed apply")
                deadline = time.monotonic() + APPLY_DEADLINE_S
                while time.monotonic() < deadline and len(Webhook.received) < 2:
                    time.sleep(0.05)
                check([r["phone"] for r in Webhook.received] == [webhook_phone, still_phone],
                      f"the previous webhook did not keep the codes: {Webhook.received}")

                # Back to the log gateway (the failed build is retried, then replaced): the
                # idle webhook goes at once, codes land in sms.log again.
                admin.commit(original_revision)
                admin.wait_applied(applied + 7)
                back_phone = "+15550106666"
                check(request_code(node, back_phone) == 200, "code refused after going back")
                check(back_phone in node.sms_codes(), "the log gateway did not get the code")
                check(len(Webhook.received) == 2, f"the webhook still got codes: {Webhook.received}")
                check(admin.stats()["gauges"]["webhook.gateways_retiring"] == 0,
                      "an idle webhook was kept")
            finally:
                server.shutdown()

            check(admin.counter("config.applied") == applied + 7, "applies miscounted")
            check(admin.counter("config.apply_failures") == 1, "apply failures miscounted")
            # A clean stop (under the sanitizers: no report, no leak).
            check(node.stop() == 0, f"unclean stop:\n{node.log()}")
        finally:
            node.stop()
    print("config_hot_apply: ok")


if __name__ == "__main__":
    main()

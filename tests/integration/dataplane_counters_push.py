#!/usr/bin/python3
"""Both planes as processes, a person chatting with herald-chat, and a local push gateway:

1. The dataplane's counters reach the control plane's GET /metrics (dp.* from the stats mirror)
   and move with a chat exchange; after a control-plane restart the dataplane re-registers them
   in the new counters segment.
2. Push: a device registers its push token (PUT /v1/devices/push-token, every refusal with its
   stable code), a message for it while it is offline makes the control plane POST a batch to
   the push webhook (a 503 first: retried), and the push.* counters say so.

Usage: dataplane_counters_push.py <herald-controlplane> <herald-dataplane> <herald-chat>
"""
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import herald_node
from herald_node import assert_no_sanitizer_reports, metric, metrics, stop_on_sigterm

DEADLINE_S = 20
wait_for = functools.partial(herald_node.wait_for, timeout_s=DEADLINE_S, poll_s=0.05)


class PushGateway(http.server.ThreadingHTTPServer):
    """Records every POSTed body; answers 503 to the first one, then 200."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), PushGatewayHandler)
        self.bodies = []
        self.lock = threading.Lock()


class PushGatewayHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.bodies.append(body.decode())
            first = len(self.server.bodies) == 1
        self.send_response(503 if first else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def register(node, phone, device_name="phone"):
    status, _, body = node.public("POST", "/v1/accounts/code", {"phone": phone, "method": "sms"})
    assert status == 200, (status, body)
    code = wait_for("sms code", lambda: node.sms_codes().get(phone))
    status, _, body = node.public("POST", "/v1/accounts/verify",
                                  {"phone": phone, "code": code, "device_name": device_name})
    assert status == 200, (status, body)
    return body


def check_push_token_api(node, credential):
    def put(body):
        return node.public("PUT", "/v1/devices/push-token", body)

    token = "a" * 64
    status, _, body = put({"credential": credential, "platform": "apns", "token": token})
    assert status == 200, (status, body)
    assert body["platform"] == "apns" and body["device_id"] >= 1, body
    cases = [
        ({"credential": credential, "platform": "sms", "token": token}, 400, "invalid_platform"),
        ({"credential": credential, "platform": "fcm", "token": "short"}, 400,
         "invalid_push_token"),
        ({"credential": credential, "platform": "fcm", "token": "x" * 513}, 400,
         "invalid_push_token"),
        ({"credential": credential, "platform": "fcm", "token": "bad token with spaces"}, 400,
         "invalid_push_token"),
        ({"credential": "A" * 43, "platform": "fcm", "token": token}, 401, "invalid_credential"),
        ({"credential": credential, "platform": "fcm"}, 400, "invalid_push_token"),
        ({"credential": credential, "platform": "fcm", "token": token, "x": 1}, 400,
         "bad_request"),
    ]
    for request, want_status, want_error in cases:
        status, _, body = put(request)
        assert status == want_status and body.get("error") == want_error, (request, status, body)
    status, _, body = node.public("PUT", "/v1/devices/push-token", "{")
    assert status == 400 and body["error"] == "bad_request", (status, body)
    # The last good PUT wins: an FCM token at the length limit.
    status, _, body = put({"credential": credential, "platform": "fcm", "token": "f" * 512})
    assert status == 200, (status, body)
    return "f" * 512


def run(controlplane, dataplane, herald_chat, tmp):
    gateway = PushGateway()
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    chat_port = herald_node.free_port()
    node = herald_node.Node(controlplane, tmp, extra_config={
        "dataplane": {"listen_address": "127.0.0.1", "chat_port": chat_port, "workers": 2,
                      "poll_mode": "blocking"},
        "push": {"webhook_url": f"http://127.0.0.1:{gateway.server_address[1]}/push",
                 "interval_ms": 100, "initial_backoff_ms": 50, "max_attempts": 4},
    })
    node.start()
    dp_log = open(os.path.join(tmp, "dataplane.log"), "a")
    dp = subprocess.Popen([dataplane, "--config", node.config_path, "--data-dir", node.data_dir],
                          stdout=dp_log, stderr=dp_log)
    try:
        wait_for("the chat port", lambda: port_open(chat_port))
        # Both workers mirror once the link is up.
        wait_for("dp.* in /metrics",
                 lambda: metric(metrics(node), "dp.worker.loop_turns") > 0)
        before = metrics(node)

        bob = register(node, "+15550000052", "bob-phone")
        bob_token = check_push_token_api(node, bob["credential"])

        common = [herald_chat, "--public", f"127.0.0.1:{node.public_port}",
                  "--chat", f"127.0.0.1:{chat_port}", "--data-dir", node.data_dir,
                  "--profiles", os.path.join(tmp, "profiles")]
        out = subprocess.run(common + ["register", "--phone", "+15550000051", "--sms-log",
                                       os.path.join(node.data_dir, "sms.log")],
                             capture_output=True, text=True, timeout=60)
        assert "registered +15550000051" in out.stdout + out.stderr, out
        # Alice writes to Bob, who is offline: stored, so a push hint goes to the gateway.
        # stdin stays open until the ack had time to come (EOF ends herald-chat).
        chat = subprocess.Popen(common + ["chat", "--phone", "+15550000051", "--to",
                                          bob["account_id"]],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        chat.stdin.write("hello offline bob\n")
        chat.stdin.flush()
        time.sleep(3)
        out, _ = chat.communicate("/quit\n", timeout=30)
        assert "(sent #" in out, out

        def pushed():
            with gateway.lock:
                for body in gateway.bodies[1:]:  # the first got a 503
                    for hint in json.loads(body)["hints"]:
                        if hint["account"] == bob["account_id"]:
                            return hint
            return None
        hint = wait_for("a push batch for bob", pushed)
        assert hint == {"account": bob["account_id"], "device": bob["device_id"],
                        "platform": "fcm", "token": bob_token, "count": hint["count"]}, hint
        assert hint["count"] >= 1, hint
        with gateway.lock:
            assert gateway.bodies[0] == gateway.bodies[1], gateway.bodies[:2]  # the same batch

        # The counters moved: dataplane (mirrored) and push.
        after = wait_for("push.sent", lambda: (lambda m: m if metric(m, "push.sent") >= 1
                                               else None)(metrics(node)))
        for name in ["dp.tls.handshake_ok", "dp.session.auth_ok", "dp.session.messages",
                     "dp.router.messages", "dp.router.appends", "dp.store.appends",
                     "dp.transport.accepts", "dp.transport.bytes_in", "dp.transport.bytes_out",
                     "dp.message_ids.minted", "dp.directory.logins"]:
            assert metric(after, name) > metric(before, name), (name, metric(before, name),
                                                                metric(after, name))
        assert metric(after, "dp.router.push_hints") >= 1
        assert metric(after, "push.hints") >= 1
        assert metric(after, "push.failed") >= 1 and metric(after, "push.retries") >= 1
        assert metric(after, "push.tokens_stored") == 2
        assert metric(after, "push.api.invalid_token") == 4
        assert metric(after, "push.api.invalid_platform") == 1
        assert metric(after, "push.api.invalid_credential") == 1
        assert metric(after, "push.tokens", "gauge") == 1
        # Store latency as a histogram: its count is the number of outcomes measured.
        assert after.get("herald_dp_store_append_latency_ns_count", 0) >= 1, \
            [k for k in after if "latency" in k]

        # A control-plane restart: a new counters segment, the dp.* names registered again.
        node.stop()
        node.start()
        wait_for("dp.* in the new segment",
                 lambda: metric(metrics(node), "dp.worker.loop_turns") > 0)
        restarted = metrics(node)
        assert metric(restarted, "dp.store.controlplane_restarts") >= 1, \
            metric(restarted, "dp.store.controlplane_restarts")
        # The new segment has only what happened since the last publish into the old one.
        assert metric(restarted, "dp.session.messages") < metric(after, "dp.session.messages")
        print("ok: dp.* counters in /metrics, re-registered after a restart; push batch "
              f"delivered after a retry: {hint}")
    finally:
        dp_status = stop_on_sigterm(dp, 20)
        node.stop()
        gateway.shutdown()
    # SIGTERM is the orderly stop: every connection closed, every operation reaped, exit 0.
    assert dp_status == 0, f"herald-dataplane on SIGTERM: {dp_status}"
    assert_no_sanitizer_reports([os.path.join(tmp, log) for log in ("node.log", "dataplane.log")])


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run(sys.argv[1], sys.argv[2], sys.argv[3], tmp)
        except AssertionError:
            for log in ("node.log", "dataplane.log"):
                path = os.path.join(tmp, log)
                if os.path.exists(path):
                    with open(path) as f:
                        print(f"--- {log} (last 4000 bytes)\n{f.read()[-4000:]}")
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

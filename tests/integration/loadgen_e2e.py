#!/usr/bin/python3
"""herald-loadgen against real herald-controlplane + herald-dataplane processes on loopback:
one-to-one from two worker processes (every acked message delivered exactly once, from the
--json verdict), group fan-out, offline-then-drain in order, a reconnect storm, accounts from
the public registration flow, the exit statuses for bad flags (64) and an unreachable target
(3), and --protocol mqtt against a Mosquitto broker with TLS (when mosquitto is installed).

Usage: loadgen_e2e.py herald-controlplane herald-dataplane herald-loadgen
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from herald_node import Node, free_port

CONTROLPLANE, DATAPLANE, LOADGEN = sys.argv[1], sys.argv[2], sys.argv[3]
START_BROKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                            "mosquitto", "start-broker")


def mqtt_run(tmp):
    """The one-to-one scenario over MQTT 3.1.1 QoS 1 through Mosquitto with TLS."""
    if shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        print("loadgen_e2e: mosquitto not installed, mqtt case skipped")
        return
    port = free_port()
    broker_dir = os.path.join(tmp, "mosquitto")
    broker = subprocess.Popen([START_BROKER, "--port", str(port), "--dir", broker_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=die_with_parent)
    try:
        ready = broker.stdout.readline()
        assert "ready" in ready, (ready, broker.stderr.read() if broker.poll() is not None else "")
        run = subprocess.run([LOADGEN, "--protocol", "mqtt", "--target", f"127.0.0.1:{port}",
                              "--chat-cert", os.path.join(broker_dir, "cert.pem"),
                              "--connections", "100", "--processes", "2", "--rate", "200",
                              "--duration", "2", "--quiet", "--json"],
                             capture_output=True, text=True, timeout=120)
        r = verdict(run, "mqtt")
        assert r["delivered"] == r["acked"], r
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=20)


def die_with_parent():
    # PR_SET_PDEATHSIG (1): the dataplane dies with this test, whatever kills it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def wait_port(port, proc, log_path):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dataplane exited {proc.returncode}:\n{open(log_path).read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("dataplane did not listen")


def loadgen(node, chat_port, *args, timeout=120):
    cmd = [LOADGEN, "--target", f"127.0.0.1:{chat_port}", "--admin",
           f"127.0.0.1:{node.admin_port}", "--public", f"127.0.0.1:{node.public_port}",
           "--data-dir", node.data_dir, "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def verdict(run, what):
    assert run.returncode == 0, f"{what}: exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    result = json.loads(run.stdout)
    for key in ("sent", "acked", "delivered", "lost", "duplicates", "redeliveries", "msgs_per_s",
                "connects", "connect_per_s", "handshakes_per_s", "errors"):
        assert key in result, (what, key, result)
    for key in ("p50", "p99", "p999"):
        assert key in result["latency_us"], (what, result)
    assert result["acked"] > 0, (what, result)
    assert result["lost"] == 0 and result["duplicates"] == 0, (what, result)
    assert result["delivered"] == result["expected"], (what, result)
    return result


def main():
    with tempfile.TemporaryDirectory() as tmp:
        chat_port = free_port()
        node = Node(CONTROLPLANE, tmp, "lg", extra_config={
            "dataplane": {"listen_address": "127.0.0.1", "chat_port": chat_port, "workers": 1,
                          "poll_mode": "blocking"}}).start()
        dp_log = os.path.join(tmp, "dataplane.log")
        dataplane = subprocess.Popen(
            [DATAPLANE, "--config", node.config_path, "--data-dir", node.data_dir],
            stdout=open(dp_log, "a"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        try:
            wait_port(chat_port, dataplane, dp_log)

            # 1:1, two processes, ~200 connections: every acked message arrives once.
            r = verdict(loadgen(node, chat_port, "--scenario", "one-to-one", "--connections", "200",
                                "--processes", "2", "--rate", "400", "--duration", "3",
                                "--settle-timeout", "30", "--json"), "one-to-one")
            assert r["processes"] == 2 and r["connects"] >= 200, r
            assert r["delivered"] == r["acked"], r
            assert r["sent"] >= r["acked"], r

            # Group fan-out: every other member of the sender's group receives.
            r = verdict(loadgen(node, chat_port, "--scenario", "group", "--connections", "60",
                                "--group-size", "6", "--rate", "100", "--duration", "2",
                                "--json"), "group")
            assert r["expected"] == 5 * r["acked"], r

            # Offline, then drain: recipients log in to queues, in order per sender.
            r = verdict(loadgen(node, chat_port, "--scenario", "offline-drain", "--connections",
                                "100", "--messages", "10", "--json"), "offline-drain")
            assert r["acked"] == 50 * 10 and r["order_violations"] == 0, r
            assert "drain_s" in r, r

            # Everyone drops at once and logs in again.
            r = verdict(loadgen(node, chat_port, "--scenario", "reconnect-storm", "--connections",
                                "100", "--rate", "100", "--storm-after", "1", "--duration", "3",
                                "--json"), "reconnect-storm")
            assert r["reconnect_s"] > 0 and r["logins"] >= 200, r

            # Accounts through the public registration flow (code from sms.log).
            r = verdict(loadgen(node, chat_port, "--provision", "public", "--phone-prefix",
                                "+1666", "--connections", "10", "--rate", "50", "--duration", "1",
                                "--json"), "public provisioning")

            # Exit statuses: bad flags 64, an unreachable target 3.
            bad = loadgen(node, chat_port, "--scenario", "nonsense")
            assert bad.returncode == 64 and "--scenario" in bad.stderr, bad
            bad = loadgen(node, chat_port, "--connections", "40000", "--processes", "1")
            assert bad.returncode == 64 and "--processes" in bad.stderr, bad
            down = loadgen(node, free_port(), "--connections", "10")
            assert down.returncode == 3 and "cannot reach" in down.stderr, down

            mqtt_run(tmp)
        except BaseException:
            print(node.log(), file=sys.stderr)
            print(open(dp_log).read()[-8000:], file=sys.stderr)
            raise
        finally:
            dataplane.send_signal(signal.SIGTERM)
            try:
                dataplane.wait(timeout=20)
            except subprocess.TimeoutExpired:
                dataplane.kill()
                dataplane.wait()
            node.stop()
    print("loadgen_e2e: ok")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# Clients reconnect after a dataplane restart: N idle authenticated TLS sessions from
# herald-loadgen's DPDK client mode over net_memif to one dataplane worker; once all are logged
# in, the dataplane is killed (SIGKILL, as a crash) and started again on the same config. The
# loadgen keeps its EAL and port, sees the memif link go down, drops every connection, and
# reconnects everyone with backoff when the link is back. Prints the loadgen's figures
# (restart_relogin_s: the link up again -> every session logged in again; link_outage_s),
# the dataplane's restart time (kill -> its worker started), and each side's CPU and the
# dataplane's RSS around the restart. A benchmark, not a test (root: two EALs).
#
# Usage (repository root):
#   tests/bench/dataplane/memif_restart.py CP DP LOADGEN CONNECTIONS
# Env: HERALD_BENCH_ADDRESSES=N (the loadgen's stack opens from N addresses; default one per
#      25,000 connections), HERALD_BENCH_KILL_AFTER_S (hold before the kill, default 10),
#      HERALD_BENCH_LOADGEN_ARGS (more loadgen flags).
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration"))
import herald_node  # noqa: E402
from bench_util import cpu_s  # noqa: E402

cp, dpb, lg, connections = sys.argv[1:5]
n = int(connections)
addresses = int(os.environ.get("HERALD_BENCH_ADDRESSES", str(max(1, -(-n // 25_000)))))
kill_after_s = float(os.environ.get("HERALD_BENCH_KILL_AFTER_S", "10"))
STACK_IP, LOADGEN_IP = "10.79.0.1", "10.79.0.2"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_dataplane(node, log_path):
    log = open(log_path, "a")
    started = open(log_path).read().count("dataplane.worker.started")
    t0 = time.monotonic()
    dp = subprocess.Popen([dpb, "--config", node.config_path, "--data-dir", node.data_dir],
                          stdout=log, stderr=log)
    herald_node.wait_for("the worker", lambda: dp.poll() is None and open(log_path).read().count(
        "dataplane.worker.started") > started, timeout_s=120, poll_s=0.05)
    return dp, time.monotonic() - t0


with tempfile.TemporaryDirectory() as tmp:
    chat_port = herald_node.free_port()
    sock = os.path.join(tmp, "memif.sock")
    prefix = f"hmr{os.getpid()}"
    dpcfg = {"backend": "dpdk", "listen_address": "0.0.0.0", "chat_port": chat_port,
             "workers": 1, "poll_mode": "adaptive", "adaptive_idle_polls": 200,
             "dpdk": {"ports": [f"net_memif0,role=server,socket={sock}"],
                      "file_prefix": prefix, "address": STACK_IP, "rx_descriptors": 1024,
                      "tx_descriptors": 1024, "mbufs_per_connection": 0}}
    node = herald_node.Node(cp, tmp, extra_config={
        "limits": {"max_connections": n + 1000}, "dataplane": dpcfg})
    node.start()
    log_path = os.path.join(tmp, "dp.log")
    dp, first_start_s = start_dataplane(node, log_path)
    args = [lg, "--target", f"{STACK_IP}:{chat_port}", "--admin", f"127.0.0.1:{node.admin_port}",
            "--public", f"127.0.0.1:{node.public_port}", "--data-dir", node.data_dir,
            "--json", "--scenario", "idle", "--connections", connections,
            "--connect-timeout", "900", "--processes", "1",
            # The hold outlasts the kill and the restart; then the coordinator waits for
            # everyone to log in again (up to --connect-timeout).
            "--duration", str(kill_after_s + 5),
            "--dpdk-port", f"net_memif0,role=client,socket={sock}",
            "--dpdk-address", f"{LOADGEN_IP}/24", "--dpdk-addresses", str(addresses)]
    args += os.environ.get("HERALD_BENCH_LOADGEN_ARGS", "").split()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    connected = threading.Event()
    relogged_at = []

    def read_stderr():
        for line in proc.stderr:
            lines.append(line.rstrip())
            if "connect phase:" in line:
                connected.set()
            if "logged in again" in line:
                relogged_at.append(time.monotonic())
            if any(w in line for w in ("link", "connect phase", "dpdk stack", "runtime error",
                                       "Sanitizer")):
                print("loadgen:", line.rstrip(), flush=True)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    figures = {}
    try:
        while not connected.wait(1):
            if proc.poll() is not None:
                raise SystemExit("the loadgen exited before its connect phase ended")
        time.sleep(kill_after_s)
        figures["rss_before_kill_kb"] = rss_kb(dp.pid)
        figures["dataplane_cpu_before_kill_s"] = round(cpu_s(dp.pid), 2)
        killed = time.monotonic()
        dp.send_signal(signal.SIGKILL)
        dp.wait()
        dp, restart_s = start_dataplane(node, log_path)
        figures["dataplane_restart_s"] = round(time.monotonic() - killed, 3)
        dp_cpu_start = cpu_s(dp.pid)
        rss_peak = 0
        while proc.poll() is None:
            rss_peak = max(rss_peak, rss_kb(dp.pid))
            time.sleep(0.5)
        figures["rss_after_relogin_peak_kb"] = rss_peak
        figures["new_dataplane_cpu_s"] = round(cpu_s(dp.pid) - dp_cpu_start, 2)
        figures["first_start_s"] = round(first_start_s, 3)
        # The whole figure: SIGKILL -> every client logged in again (the dataplane's restart,
        # the loadgen dropping its dead connections, and the reconnect storm).
        if relogged_at:
            figures["kill_to_all_logged_in_s"] = round(relogged_at[0] - killed, 3)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        proc.wait()
        reader.join()
        children = os.times()
        figures["loadgen_cpu_s"] = round(children.children_user + children.children_system, 2)
        try:
            res = json.loads(out)
            print("result", json.dumps({k: res.get(k) for k in (
                "connections", "logins", "connect_s", "handshakes_per_s", "link_downs",
                "link_dropped", "link_outage_s", "restart_relogin_s", "sessions_held", "lost",
                "duplicates", "login_us", "errors")}))
        except json.JSONDecodeError:
            print("loadgen failed", proc.returncode, out[-2000:], "\n".join(lines[-30:]))
        print("figures", json.dumps(figures))
        time.sleep(1)  # the worker publishes its counters every ~100 ms
        m = herald_node.metrics(node)
        # Both dataplane processes' counters (the segment outlives the killed one).
        print("dataplane counters", {k: v for k, v in m.items() if v and re.search(
            "accepted|retransmit|rto_fired|slots_exhausted|drops|alloc_fail|reset|close_|"
            "sessions", k)})
        dp.send_signal(signal.SIGTERM)
        try:
            dp.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dp.kill()
        node.stop()
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{prefix}"])

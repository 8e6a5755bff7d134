#!/usr/bin/python3
# One-to-one messages through one dataplane worker, two ways in the same run:
#   memif:  backend dpdk on a net_memif server port; herald-loadgen in its DPDK client mode on
#           the memif client end (Herald's TCP/IP stack at both ends, no kernel socket);
#   kernel: backend kernel on loopback; herald-loadgen on kernel sockets.
# Prints the loadgen's verdict and latencies, and the CPU each process used per delivered
# message (user + system, every thread, whole run) with cycles at the TSC's nominal rate.
# A benchmark, not a test (root: two EALs with huge pages).
#
# Usage (repository root):
#   tests/bench/dataplane/memif_vs_kernel.py CP DP LOADGEN SECS RATE CONNECTIONS memif,kernel
# Env: HERALD_BENCH_POLL=busy|adaptive (the dataplane's worker; adaptive by default),
#      HERALD_BENCH_PERF=1 (perf record of the dataplane to /tmp/herald-bench-<mode>.perf),
#      HERALD_BENCH_PIN=1 (the deployment's layout on this 2-CPU machine: the dataplane's
#      worker pinned to CPU 1, the loadgen and the control plane to CPU 0, so the worker never
#      waits for the CPU behind another process),
#      HERALD_BENCH_SCENARIO=idle (hold the sessions SECS; prints the dataplane's RSS and
#      heap per session: peak while held less the baseline before the loadgen started),
#      HERALD_BENCH_ADDRESSES=N (the loadgen's stack opens from N addresses: ~28,000
#      connections each), HERALD_BENCH_MBUFS_PER_CONNECTION (the dataplane's, default 2),
#      HERALD_BENCH_LOADGEN_ARGS (more loadgen flags, e.g. "--storm-after 30" with
#      HERALD_BENCH_SCENARIO=reconnect-storm).
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration"))
import herald_node  # noqa: E402
from bench_util import cpu_s, tsc_hz  # noqa: E402

cp, dpb, lg, secs, rate, connections = sys.argv[1:7]
modes = sys.argv[7].split(",") if len(sys.argv) > 7 else ["memif", "kernel"]
poll = os.environ.get("HERALD_BENCH_POLL", "adaptive")
pin = os.environ.get("HERALD_BENCH_PIN") == "1"
scenario = os.environ.get("HERALD_BENCH_SCENARIO", "one-to-one")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
STACK_IP, LOADGEN_IP = "10.79.0.1", "10.79.0.2"


def children_cpu_s():
    """CPU of this process's waited-for children (the loadgen and its worker)."""
    t = os.times()
    return t.children_user + t.children_system


for mode in modes:
    with tempfile.TemporaryDirectory() as tmp:
        chat_port = herald_node.free_port()
        sock = os.path.join(tmp, "memif.sock")
        prefix = f"hmb{os.getpid()}"
        dpcfg = {"backend": "kernel", "listen_address": "127.0.0.1", "chat_port": chat_port,
                 "workers": 1, "poll_mode": poll, "adaptive_idle_polls": 200}
        if pin:
            dpcfg["cores"] = [1]
        if mode == "memif":
            dpcfg.update({"backend": "dpdk", "listen_address": "0.0.0.0"})
            dpcfg["dpdk"] = {"ports": [f"net_memif0,role=server,socket={sock}"],
                             "file_prefix": prefix, "address": STACK_IP,
                             "rx_descriptors": 1024, "tx_descriptors": 1024,
                             "mbufs_per_connection": int(os.environ.get(
                                 "HERALD_BENCH_MBUFS_PER_CONNECTION", "2"))}
        node = herald_node.Node(cp, tmp, extra_config={
            "limits": {"max_connections": int(connections) + 1000}, "dataplane": dpcfg})
        node.start()
        if pin:  # every thread of the control plane
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(node.proc.pid)], check=True,
                           capture_output=True)
        log = open(os.path.join(tmp, "dp.log"), "a")
        dp = subprocess.Popen([dpb, "--config", node.config_path, "--data-dir", node.data_dir],
                              stdout=log, stderr=log)
        herald_node.wait_for("the worker", lambda: "dataplane.worker.started" in
                             open(os.path.join(tmp, "dp.log")).read(), timeout_s=30, poll_s=0.1)
        target = f"{STACK_IP if mode == 'memif' else '127.0.0.1'}:{chat_port}"
        args = (["taskset", "-c", "0"] if pin else []) + [lg, "--target", target, "--admin", f"127.0.0.1:{node.admin_port}",
                "--public", f"127.0.0.1:{node.public_port}", "--data-dir", node.data_dir,
                "--quiet", "--json", "--scenario", scenario, "--connections", connections,
                "--connect-timeout", "600",
                "--processes", "1", "--rate", rate, "--duration", secs,
                "--settle-timeout", "30"]
        args += os.environ.get("HERALD_BENCH_LOADGEN_ARGS", "").split()
        if mode == "memif":
            args += ["--dpdk-port", f"net_memif0,role=client,socket={sock}",
                     "--dpdk-address", f"{LOADGEN_IP}/24",
                     "--dpdk-addresses", os.environ.get("HERALD_BENCH_ADDRESSES", "1")]
        perf = None
        if os.environ.get("HERALD_BENCH_PERF"):
            perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g",
                                     "-p", str(dp.pid), "-o", f"/tmp/herald-bench-{mode}.perf"])
        dp_before, lg_before = cpu_s(dp.pid), children_cpu_s()
        rss_before = rss_kb(dp.pid)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rss_peak = rss_before
        loadgen_rss_peak = 0
        while proc.poll() is None:
            rss_peak = max(rss_peak, rss_kb(dp.pid))
            # The loadgen's worker processes (its children) hold the client sessions.
            try:
                with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
                loadgen_rss_peak = max(loadgen_rss_peak, sum(rss_kb(k) for k in kids))
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        out, err = proc.communicate()
        r = subprocess.CompletedProcess(args, proc.returncode, out, err)
        if scenario == "idle":
            print(mode, json.dumps({"loadgen_worker_rss_peak_kb": loadgen_rss_peak,
                                    "rss_before_kb": rss_before, "rss_peak_kb": rss_peak,
                                    "rss_bytes_per_session": round(
                                        (rss_peak - rss_before) * 1024 / int(connections))}))
        dp_cpu, lg_cpu = cpu_s(dp.pid) - dp_before, children_cpu_s() - lg_before
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        try:
            res = json.loads(r.stdout)
            delivered = max(1, res.get("delivered") or 0)
            print(mode, json.dumps({k: res.get(k) for k in (
                "sent", "acked", "delivered", "lost", "duplicates", "msgs_per_s", "latency_us",
                "logins", "connect_s", "handshakes_per_s", "sessions_held", "reconnect_s",
                "errors")}))
            print(mode, json.dumps({
                "dataplane_cpu_s": round(dp_cpu, 2),
                "dataplane_us_per_msg": round(dp_cpu * 1e6 / delivered, 2),
                "dataplane_cycles_per_msg": round(dp_cpu * tsc_hz() / delivered),
                "loadgen_cpu_s": round(lg_cpu, 2),
                "loadgen_us_per_msg": round(lg_cpu * 1e6 / delivered, 2)}))
        except Exception:
            print(mode, "loadgen failed", r.returncode, r.stdout[-2000:], r.stderr[-3000:])
        for line in r.stderr.splitlines():
            if "dpdk stack" in line:
                print(mode, line)
        time.sleep(0.3)
        m = herald_node.metrics(node)
        print(mode, {k: v for k, v in m.items() if v and any(x in k for x in (
            "retransmit", "rto_fired", "slots_exhausted", "batch_refused", "drop_",
            "alloc_refused", "drops", "tx_retries", "alloc_fail", "dp_dpdk_sleeps"))})
        dp.send_signal(signal.SIGTERM)
        dp.wait(timeout=30)
        node.stop()
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{prefix}"])

#!/usr/bin/python3
# herald-loadgen one-to-one from a network namespace against backend dpdk (net_af_packet) and the
# kernel backend on the same veth, one after the other. A benchmark, not a test (root).
# Usage (repository root): tests/bench/dataplane/dpdk_vs_kernel.py CP DP LOADGEN SECS RATE dpdk,kernel
import json, os, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "integration"))
import herald_node
import dataplane_dpdk_interop as t
from bench_util import cpu_s, tsc_hz

cp, dpb, lg, secs, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

t.make_namespace()
try:
    for backend in sys.argv[6].split(","):
        with tempfile.TemporaryDirectory() as tmp:
            chat_port = herald_node.free_port()
            dpcfg = {"backend": backend, "listen_address": "0.0.0.0", "chat_port": chat_port,
                     "workers": 1, "poll_mode": "adaptive", "adaptive_idle_polls": 200}
            if backend == "dpdk":
                t.sh(f"ip addr flush dev {t.DATA_HOST_IF}")
                dpcfg["dpdk"] = {"ports": [f"net_af_packet0,iface={t.DATA_HOST_IF}" + os.environ.get("HERALD_BENCH_PORT_ARGS", "")],
                                 "huge_pages": False, "memory_mb": 512,
                                 "file_prefix": f"hdpb{t.PID}", "address": t.STACK_IP,
                                 "rx_descriptors": 1024, "tx_descriptors": 1024}
            else:
                t.sh(f"ip addr add {t.STACK_IP}/24 dev {t.DATA_HOST_IF}")
            node = herald_node.Node(cp, tmp, extra_config={
                "controlplane": {"public_address": "0.0.0.0", "admin_address": "0.0.0.0"},
                "limits": {"max_connections": 4000}, "dataplane": dpcfg})
            node.start()
            log = open(os.path.join(tmp, "dp.log"), "a")
            dp = subprocess.Popen([dpb, "--config", node.config_path, "--data-dir", node.data_dir],
                                  stdout=log, stderr=log)
            t.wait_for("port", lambda: t.tcp_connects_from_ns(chat_port))
            perf = None
            if os.environ.get("HERALD_BENCH_PERF"):
                # A CPU profile of the dataplane under load (cpu-clock: hardware events are not
                # available on every host): perf report -i /tmp/herald-bench-<backend>.perf
                perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g",
                                         "-p", str(dp.pid), "-o", f"/tmp/herald-bench-{backend}.perf"])
            cpu_before = cpu_s(dp.pid)
            r = subprocess.run(["ip", "netns", "exec", t.NS, lg, "--target", f"{t.STACK_IP}:{chat_port}",
                                "--admin", f"{t.HOST_CTL_IP}:{node.admin_port}",
                                "--public", f"{t.HOST_CTL_IP}:{node.public_port}",
                                "--data-dir", node.data_dir, "--quiet", "--scenario", "one-to-one",
                                "--connections", "100", "--processes", "1", "--rate", rate,
                                "--duration", secs, "--settle-timeout", "30", "--json"],
                               capture_output=True, text=True, timeout=300)
            used_s = cpu_s(dp.pid) - cpu_before
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=60)
            try:
                res = json.loads(r.stdout)
                print(backend, json.dumps({k: res.get(k) for k in ("sent", "acked", "delivered", "lost", "duplicates", "msgs_per_s", "latency_us")}))
                # CPU per message: every thread of the dataplane (worker, IPC, main), user and
                # system, over the whole run (connects, settle included), per delivered message;
                # cycles at the TSC's nominal rate.
                delivered = max(1, res.get("delivered") or 0)
                print(backend, json.dumps({"dataplane_cpu_s": round(used_s, 2),
                                           "cpu_us_per_msg": round(used_s * 1e6 / delivered, 2),
                                           "cycles_per_msg": round(used_s * tsc_hz() / delivered)}))
            except Exception:
                print(backend, "loadgen failed", r.returncode, r.stdout[-2000:], r.stderr[-2000:])
            time.sleep(0.5)
            m = t.metrics(node)
            print(backend, {k: v for k, v in m.items() if v and any(x in k for x in (
                "rto_fired", "retransmit", "ring_full", "slots_exhausted", "batch_refused",
                "drop_", "net_drop", "alloc_fail", "dp_dpdk_sleeps", "fast_retrans") + tuple(os.environ.get("HERALD_BENCH_METRICS", "").split(",")))})
            dp.send_signal(signal.SIGTERM)
            print(backend, "dataplane exit", dp.wait(timeout=30))
            node.stop()
finally:
    t.delete_namespace()

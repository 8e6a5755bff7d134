#!/usr/bin/python3
"""herald-loadgen's DPDK client mode against herald-dataplane's DPDK backend, joined by
net_memif: both ends run Herald's own TCP/IP stack (the loadgen's active opens, the dataplane's
passive ones), no kernel socket carries a chat byte. The loadgen's exactly-once checker is the
verdict:

- one-to-one: 300 accounts from three addresses of the loadgen's stack, Poisson arrivals at
  3,000 msg/s for 3 s: every acknowledged message delivered once (lost 0, duplicates 0), every
  connection logged in.
- group: groups of 8: every member delivery arrives once.
- reconnect-storm: every connection dropped at once mid-run and reconnected over memif:
  nothing lost.

Then both stacks' view: the dataplane's transport accepted every connection over memif
(dp.dpdk.transport.accepted), and no sanitizer report in the logs.

Root only (huge pages or --no-huge memory for two EALs, a unix socket for memif): exits 77
(skipped) otherwise.
Usage: dataplane_dpdk_memif.py <herald-controlplane> <herald-dataplane> <herald-loadgen>
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import herald_node
from herald_node import assert_no_sanitizer_reports, stop_on_sigterm

CONNECTIONS = 300
STACK_IP = "10.78.0.1"
LOADGEN_IP = "10.78.0.2"


class MemifNode:
    """herald-controlplane and herald-dataplane (backend dpdk, one memif server port)."""

    def __init__(self, controlplane, dataplane, tmp):
        self.tmp = tmp
        self.dataplane = dataplane
        self.socket = os.path.join(tmp, "memif.sock")
        self.prefix = f"hmemif{os.getpid()}"
        self.chat_port = herald_node.free_port()
        config = {
            "limits": {"max_connections": 2000},
            "dataplane": {
                "backend": "dpdk", "listen_address": "0.0.0.0", "chat_port": self.chat_port,
                "workers": 1, "poll_mode": "adaptive", "adaptive_idle_polls": 200,
                "dpdk": {"ports": [f"net_memif0,role=server,socket={self.socket}"],
                         "huge_pages": False, "memory_mb": 256, "file_prefix": self.prefix,
                         "address": STACK_IP, "prefix_length": 24, "rx_descriptors": 1024,
                         "tx_descriptors": 1024, "mempool_cache_size": 32},
            },
        }
        self.node = herald_node.Node(controlplane, tmp, extra_config=config)
        self.dp = None
        self.dp_log_path = os.path.join(tmp, "dataplane.log")

    def __enter__(self):
        self.node.start()
        dp_log = open(self.dp_log_path, "a")
        self.dp = subprocess.Popen(
            [self.dataplane, "--config", self.node.config_path, "--data-dir", self.node.data_dir],
            stdout=dp_log, stderr=dp_log)
        try:
            herald_node.wait_for("the dataplane's worker",
                                 lambda: self.alive() and "dataplane.worker.started" in self.log(),
                                 timeout_s=30, poll_s=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        return False

    def stop(self):
        status = None
        if self.dp is not None and self.dp.poll() is None:
            status = stop_on_sigterm(self.dp, 30)
        elif self.dp is not None:
            status = self.dp.returncode
        self.node.stop()
        return status

    def log(self):
        with open(self.dp_log_path) as f:
            return f.read()

    def alive(self):
        if self.dp.poll() is not None:
            raise AssertionError(f"herald-dataplane exited {self.dp.returncode}:\n"
                                 f"{self.log()[-6000:]}")
        return True

    def counter(self, name):
        return herald_node.metric(herald_node.metrics(self.node), name)


def run_loadgen(loadgen, node, scenario, *extra):
    args = [loadgen, "--target", f"{STACK_IP}:{node.chat_port}",
            "--dpdk-port", f"net_memif0,role=client,socket={node.socket}",
            "--dpdk-address", f"{LOADGEN_IP}/24", "--dpdk-memory-mb", "256",
            "--admin", f"127.0.0.1:{node.node.admin_port}",
            "--public", f"127.0.0.1:{node.node.public_port}",
            "--data-dir", node.node.data_dir, "--quiet", "--json", "--scenario", scenario,
            "--connections", str(CONNECTIONS), "--settle-timeout", "30", *extra]
    r = subprocess.run(args, capture_output=True, text=True, timeout=150)
    try:
        result = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"{scenario}: loadgen exited {r.returncode}, no JSON:\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    summary = {k: result.get(k) for k in ("sent", "acked", "delivered", "expected", "lost",
                                          "duplicates", "logins", "msgs_per_s", "latency_us",
                                          "errors")}
    print(f"{scenario}: exit {r.returncode} {json.dumps(summary)}")
    if r.returncode != 0:
        raise AssertionError(f"{scenario}: loadgen exited {r.returncode}: {r.stderr[-3000:]}")
    if result["lost"] != 0 or result["duplicates"] != 0:
        raise AssertionError(f"{scenario}: lost {result['lost']}, "
                             f"duplicates {result['duplicates']}")
    if result["acked"] == 0 or result["delivered"] < result["acked"]:
        raise AssertionError(f"{scenario}: acked {result['acked']}, "
                             f"delivered {result['delivered']}")
    if result["logins"] < CONNECTIONS:
        raise AssertionError(f"{scenario}: {result['logins']} of {CONNECTIONS} logged in")
    return result


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("skipped: needs root (two DPDK EALs and a memif socket)")
        return 77
    controlplane, dataplane, loadgen = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        with MemifNode(controlplane, dataplane, tmp) as node:
            try:
                # From three addresses of the loadgen's stack (connections in turn): the
                # dataplane learns them by ARP and answers each from its own.
                run_loadgen(loadgen, node, "one-to-one", "--rate", "3000", "--duration", "3",
                            "--dpdk-addresses", "3")
                run_loadgen(loadgen, node, "group", "--group-size", "8", "--rate", "500",
                            "--duration", "3")
                storm = run_loadgen(loadgen, node, "reconnect-storm", "--rate", "1000",
                                    "--duration", "4", "--storm-after", "1.5")
                if storm.get("reconnect_s") is None:
                    raise AssertionError("reconnect-storm reported no reconnect_s")
                accepted = node.counter("dp.dpdk.transport.accepted")
                # Three runs and the storm's reconnects, every one over memif.
                if accepted < 4 * CONNECTIONS:
                    raise AssertionError(f"dp.dpdk.transport.accepted {accepted}")
                print(f"ok: the dataplane's stack accepted {accepted:.0f} connections over "
                      f"memif, storm reconnected in {storm['reconnect_s']} s")
            except BaseException:
                print(node.log()[-4000:])
                raise
            status = node.stop()
            if status != 0:
                raise AssertionError(f"herald-dataplane exited {status} on SIGTERM")
            assert_no_sanitizer_reports([node.node.log_path, node.dp_log_path])
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

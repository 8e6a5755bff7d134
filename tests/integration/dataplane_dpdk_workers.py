#!/usr/bin/python3
"""Two dataplane workers on one DPDK port (net_af_packet with two queue pairs over a veth into a
namespace, see dataplane_dpdk_netns.py), herald-loadgen from Linux as the verdict:

The kernel's af_packet fanout spreads frames over the two queues by its own hash, not ours, so
most flows arrive at least partly on the wrong worker's queue: the port loops hand them over
(flow_steering.h), ARP is copied to both workers, and each connection is served by one worker.

- one-to-one, group and a reconnect storm, 300 sessions: lost 0, duplicates 0, every
  connection logged in; messages cross between the two workers (their mesh).
- both workers accepted connections, frames went through the hand-off rings in both directions,
  every hand-off arrived (steered_in = steered_out), no hand-off ring overflowed, ARP copies were
  learned (dp.net.arp_replicas).
- a clean stop (exit 0), no sanitizer report.
- then over net_memif: two workers, herald-loadgen's DPDK client with two queue pairs (its
  stack sends everything on queue 0, the dataplane hands half the flows to worker 1, whose
  answers come back on queue pair 1): one-to-one and a reconnect storm, lost 0, duplicates 0,
  frames handed over, every hand-off arrived.

Root only (namespace, veth, af_packet): exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_workers.py <herald-controlplane> <herald-dataplane> <herald-loadgen>
"""
import os
import re
import sys
import tempfile

import dataplane_dpdk_memif
from dataplane_dpdk_netns import DpdkNode, Link, MemifNode, run_linux_loadgen, skip_reason

CONNECTIONS = 300
WORKERS = 2


def worker_summaries(log):
    """worker index -> {field: int} from each worker's dataplane.worker.dpdk_stopped line."""
    out = {}
    for line in log.splitlines():
        if "dataplane.worker.dpdk_stopped" not in line:
            continue
        event = line[line.index("dataplane.worker.dpdk_stopped"):]
        fields = dict(re.findall(r"\b([a-z_]+)=(\d+)\b", event))
        out[int(fields["worker"])] = {k: int(v) for k, v in fields.items()}
    return out


def memif_workers(controlplane, dataplane, loadgen, tmp):
    tmp = os.path.join(tmp, "memif")  # a node of its own: fresh accounts and store
    os.makedirs(tmp)
    with MemifNode(controlplane, dataplane, tmp, "workers", dataplane_dpdk_memif.STACK_IP,
                   workers=WORKERS) as node:
        try:
            dataplane_dpdk_memif.run_loadgen(loadgen, node, "one-to-one", "--rate", "2000",
                                             "--duration", "3")
            dataplane_dpdk_memif.run_loadgen(loadgen, node, "reconnect-storm", "--rate", "1000",
                                             "--duration", "4", "--storm-after", "1.5")
        except BaseException:
            node.dump_logs()
            raise
        node.finish()
    workers = worker_summaries(node.dp_log())
    print(f"memif workers: {workers}")
    if sorted(workers) != list(range(WORKERS)):
        raise AssertionError(f"expected a summary from each of {WORKERS} workers")
    for index, w in workers.items():
        if w["accepted"] < dataplane_dpdk_memif.CONNECTIONS // 4:
            raise AssertionError(f"memif: worker {index} accepted only {w['accepted']}")
    if workers[0]["steered_out"] == 0 or workers[1]["steered_in"] != workers[0]["steered_out"]:
        raise AssertionError(f"memif: hand-offs {workers}")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 77
    controlplane, dataplane, loadgen = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        with Link("w", 211) as link:
            node = DpdkNode(controlplane, dataplane, tmp, link, extra={
                "dataplane": {"workers": WORKERS}}, dpdk_extra={
                "ports": [f"net_af_packet0,iface={link.dp_if},qpairs={WORKERS}"],
                "rx_queues": WORKERS, "tx_queues": WORKERS})
            with node:
                try:
                    run_linux_loadgen(loadgen, node, link, "one-to-one", CONNECTIONS,
                                      "--rate", "2000", "--duration", "3")
                    run_linux_loadgen(loadgen, node, link, "group", CONNECTIONS,
                                      "--group-size", "8", "--rate", "500", "--duration", "3")
                    run_linux_loadgen(loadgen, node, link, "reconnect-storm", CONNECTIONS,
                                      "--rate", "1000", "--duration", "4",
                                      "--storm-after", "1.5")
                    counters = {name: node.counter(f"dp.dpdk.{name}") for name in (
                        "steered_out", "steered_in", "steered_copies", "steer_ring_full_drops")}
                    replicas = node.counter("dp.net.arp_replicas")
                    print(f"counters: {counters} arp_replicas {replicas:.0f}")
                    node.finish()
                except BaseException:
                    node.dump_logs()
                    raise
            workers = worker_summaries(node.dp_log())
            print(f"workers: {workers}")
            if sorted(workers) != list(range(WORKERS)):
                raise AssertionError(f"expected a summary from each of {WORKERS} workers")
            for index, w in workers.items():
                # Both carried sessions: the flows spread over the lcores.
                if w["accepted"] < CONNECTIONS // 4:
                    raise AssertionError(f"worker {index} accepted only {w['accepted']}")
                if w["steered_out"] == 0 or w["steered_in"] == 0:
                    raise AssertionError(f"worker {index} handed nothing over: {w}")
                if w["steer_ring_full_drops"] != 0:
                    raise AssertionError(f"worker {index} overflowed a hand-off ring: {w}")
            out = sum(w["steered_out"] for w in workers.values())
            into = sum(w["steered_in"] for w in workers.values())
            if out != into:
                raise AssertionError(f"{out} frames handed over, {into} taken")
            if counters["steered_copies"] == 0 or replicas == 0:
                raise AssertionError("no ARP frame was copied to the other worker")
        memif_workers(controlplane, dataplane, loadgen, tmp)
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

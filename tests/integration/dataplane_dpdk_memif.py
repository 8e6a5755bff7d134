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
import os
import sys
import tempfile

from dataplane_dpdk_netns import MemifNode, loadgen_verdict

CONNECTIONS = 300
STACK_IP = "10.78.0.1"
LOADGEN_IP = "10.78.0.2"


def run_loadgen(loadgen, node, scenario, *extra):
    args = [*node.loadgen_memif_args(loadgen, LOADGEN_IP), "--scenario", scenario,
            "--connections", str(CONNECTIONS), "--settle-timeout", "30", *extra]
    return loadgen_verdict(args, scenario, CONNECTIONS)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("skipped: needs root (two DPDK EALs and a memif socket)")
        return 77
    controlplane, dataplane, loadgen = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        with MemifNode(controlplane, dataplane, tmp, "memif", STACK_IP) as node:
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
                node.dump_logs()
                raise
            node.finish()
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""herald-loadgen from Linux against herald-dataplane's DPDK stack (net_af_packet over a veth
into a namespace, see dataplane_dpdk_netns.py), its exactly-once checker as the verdict:

- one-to-one: 200 accounts, Poisson arrivals at 2,000 msg/s for 3 s: every acknowledged
  message delivered once (lost 0, duplicates 0), every connection logged in.
- group: groups of 8, each message to its group: every member delivery arrives once.
- reconnect-storm: every connection dropped at once mid-run and reconnected over the stack's
  TCP (TIME-WAIT reuse, SYN bursts), traffic throughout: nothing lost.

Then the stack's counters: the sessions really went through the DPDK transport
(dp.dpdk.transport.accepted), and no sanitizer report in the logs.

Root only (namespace, veth, af_packet): exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_loadgen.py <herald-controlplane> <herald-dataplane> <herald-loadgen>
"""
import sys
import tempfile

from dataplane_dpdk_netns import DpdkNode, Link, run_linux_loadgen, skip_reason

CONNECTIONS = 200


def run_loadgen(loadgen, node, link, scenario, *extra):
    return run_linux_loadgen(loadgen, node, link, scenario, CONNECTIONS, *extra)


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
        with Link("l", 208) as link, DpdkNode(controlplane, dataplane, tmp, link) as node:
            run_loadgen(loadgen, node, link, "one-to-one", "--rate", "2000", "--duration", "3")
            run_loadgen(loadgen, node, link, "group", "--group-size", "8", "--rate", "500",
                        "--duration", "3")
            storm = run_loadgen(loadgen, node, link, "reconnect-storm", "--rate", "1000",
                                "--duration", "4", "--storm-after", "1.5")
            if storm.get("reconnect_s") is None:
                raise AssertionError("reconnect-storm reported no reconnect_s")
            accepted = node.counter("dp.dpdk.transport.accepted")
            # Every loadgen connection (3 runs and the storm's reconnects) went through the
            # stack, plus the readiness probes.
            if accepted < 4 * CONNECTIONS:
                raise AssertionError(f"dp.dpdk.transport.accepted {accepted}")
            print(f"ok: the stack accepted {accepted:.0f} connections, storm reconnected in "
                  f"{storm['reconnect_s']} s")
            node.finish()
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""The dataplane issue's end-to-end scenarios (dataplane_e2e_test, unchanged) against
`backend: dpdk`: makes a namespace and a veth pair (dataplane_dpdk_netns.Link), then runs the
gtest binary with `dpdk:<netns>:<iface>:<address>`, so each test's herald-dataplane starts in
the namespace on net_af_packet with Herald's own TCP/IP stack, and the test's clients (ChatClient,
herald-chat) reach it over the veth from Linux; the namespace goes away whatever happens.

Root only: exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_e2e.py <dataplane_e2e_test> <herald-controlplane> <herald-dataplane>
       <herald-chat> [gtest flags...]
"""
import subprocess
import sys

from dataplane_dpdk_netns import Link, skip_reason


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 77
    test, controlplane, dataplane, chat = sys.argv[1:5]
    with Link("e", 207) as link:
        return subprocess.run([test, controlplane, dataplane, chat,
                               f"dpdk:{link.ns}:{link.dp_if}:{link.stack_ip}", *sys.argv[5:]]
                              ).returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""The Linux side of dp_dpdk_tap_test, run inside the test's network namespace.

Binds UDP on LOCAL_IP:PORT, prints "ready", sends COUNT datagrams ("HERALD-LNX <seq>") to
REMOTE_IP:PORT (the DPDK port, reached through a static neighbour entry), then waits for WANT
datagrams from the port loop ("HERALD-UDP <seq>"; the kernel delivers them only if their IPv4 and
UDP checksums are right) and prints one JSON line.
"""
import json
import select
import socket
import sys
import time


def main():
    local_ip, remote_ip, port, count, want, timeout_s = (
        sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
        float(sys.argv[6]))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((local_ip, port))
    print("ready", flush=True)
    for seq in range(count):
        udp.sendto(b"HERALD-LNX %d" % seq, (remote_ip, port))
    got = set()
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([udp], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            data, _ = udp.recvfrom(2048)
            if data.startswith(b"HERALD-UDP "):
                got.add(int(data[11:]))
    print(json.dumps({"udp": sorted(got)}), flush=True)


if __name__ == "__main__":
    main()

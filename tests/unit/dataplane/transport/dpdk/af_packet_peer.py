#!/usr/bin/python3
"""The Linux side of dp_dpdk_af_packet_test, run inside the test's network namespace.

Prints "ready <own MAC>", sends COUNT raw Ethernet frames (EtherType 0x88b5, payload
"HERALD-RX <seq>") to the DPDK port's MAC, then waits for the frames the DPDK port loop sends
back (payload "HERALD-TX <seq>") on the raw socket and for UDP datagrams on UDP_PORT (which the
kernel delivers only when the IPv4 and UDP checksums the port loop computed are right). Prints
one JSON line with what it got and exits. Plain sockets only (no scapy needed).
"""
import json
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5


def main():
    iface, dst_mac, count, udp_port, timeout_s = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                                  int(sys.argv[4]), float(sys.argv[5]))
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    raw.bind((iface, 0))
    own_mac = raw.getsockname()[4]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", udp_port))
    print("ready", own_mac.hex(":"), flush=True)

    dst = bytes.fromhex(dst_mac.replace(":", ""))
    for seq in range(count):
        payload = b"HERALD-RX %d" % seq
        frame = dst + own_mac + ETHERTYPE.to_bytes(2, "big") + payload
        raw.send(frame.ljust(60, b"\0"))

    # Wait for the port loop's frames and datagrams; stop reading once the expected numbers are
    # in (sys.argv[6], sys.argv[7]) or at the timeout.
    want_raw, want_udp = int(sys.argv[6]), int(sys.argv[7])
    got_raw, got_udp, udp_payloads = set(), 0, []
    deadline = time.monotonic() + timeout_s
    while (len(got_raw) < want_raw or got_udp < want_udp) and time.monotonic() < deadline:
        ready, _, _ = select.select([raw, udp], [], [], max(0.0, deadline - time.monotonic()))
        for sock in ready:
            if sock is raw:
                frame, addr = raw.recvfrom(2048)
                if addr[2] == socket.PACKET_OUTGOING:
                    continue  # our own sends, looped back to the socket
                body = frame[14:]
                if body.startswith(b"HERALD-TX "):
                    got_raw.add(int(body[10:].split(b"\0")[0]))
            else:
                data, _ = udp.recvfrom(2048)
                if data.startswith(b"HERALD-UDP"):
                    got_udp += 1
                    udp_payloads.append(data.decode())
    print(json.dumps({"raw": sorted(got_raw), "udp": got_udp, "udp_payloads": udp_payloads[:3]}),
          flush=True)


if __name__ == "__main__":
    main()

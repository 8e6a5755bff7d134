#!/usr/bin/env python3
# Writes the seed corpus of net_frame_fuzz (tests/fuzz/corpus/net_frame/): one input per kind of
# frame the stack handles, in the target's format [control][seed] then per frame
# [length][time step][bytes] (see net_frame_fuzz.cc).
#   python3 tests/fuzz/make_net_frame_seeds.py tests/fuzz/corpus/net_frame
import os
import struct
import sys

OUR_MAC = bytes([2, 0, 0, 0, 0, 1])
PEER_MAC = bytes([2, 0, 0, 0, 0, 2])
BCAST = b'\xff' * 6
OUR_IP = bytes([10, 0, 0, 1])
PEER_IP = bytes([10, 0, 0, 2])


def csum(b, start=0):
    if len(b) % 2:
        b += b'\0'
    s = start + sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def eth(dst, src, etype, payload):
    return dst + src + struct.pack('!H', etype) + payload


def arp(op, sha, spa, tha, tpa):
    return struct.pack('!HHBBH', 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa


def ipv4(src, dst, proto, payload, flags=0x4000, ttl=64):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, flags, ttl, proto, 0, src, dst)
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload


def pseudo(src, dst, proto, n):
    return sum(struct.unpack('!HHHH', src + dst)) + proto + n


def icmp(t, code, data):
    m = struct.pack('!BBHHH', t, code, 0, 7, 1) + data
    return m[:2] + struct.pack('!H', csum(m)) + m[4:]


def udp(data):
    u = struct.pack('!HHHH', 5000, 53, 8 + len(data), 0) + data
    return u[:6] + struct.pack('!H', csum(u, pseudo(PEER_IP, OUR_IP, 17, len(u)))) + u[8:]


def tcp(flags, data=b''):
    t = struct.pack('!HHIIBBHHH', 40000, 443, 1000, 0, 5 << 4, flags, 65535, 0, 0) + data
    return t[:16] + struct.pack('!H', csum(t, pseudo(PEER_IP, OUR_IP, 6, len(t)))) + t[18:]


def frame_record(f, step=1):
    assert len(f) < 128
    return bytes([len(f), step]) + f


ARP_REQ = eth(BCAST, PEER_MAC, 0x0806, arp(1, PEER_MAC, PEER_IP, b'\0' * 6, OUR_IP))
ARP_REPLY = eth(OUR_MAC, PEER_MAC, 0x0806, arp(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP))
ECHO = eth(OUR_MAC, PEER_MAC, 0x0800, ipv4(PEER_IP, OUR_IP, 1, icmp(8, 0, b'ping')))
UDP = eth(OUR_MAC, PEER_MAC, 0x0800, ipv4(PEER_IP, OUR_IP, 17, udp(b'abc')))
SYN = eth(OUR_MAC, PEER_MAC, 0x0800, ipv4(PEER_IP, OUR_IP, 6, tcp(0x02)))
DATA = eth(OUR_MAC, PEER_MAC, 0x0800, ipv4(PEER_IP, OUR_IP, 6, tcp(0x18, b'hello')))
FRAG = eth(OUR_MAC, PEER_MAC, 0x0800, ipv4(PEER_IP, OUR_IP, 1, icmp(8, 0, b'x'), flags=0x2000))
VLAN = eth(OUR_MAC, PEER_MAC, 0x8100, b'\0\x05\x08\0' + ipv4(PEER_IP, OUR_IP, 1, icmp(8, 0, b'')))
GRE = eth(OUR_MAC, PEER_MAC, 0x0800, ipv4(PEER_IP, OUR_IP, 47, b'\0' * 8))

SEEDS = {
    'arp_then_echo': bytes([0, 0]) + frame_record(ARP_REQ) + frame_record(ECHO),
    'echo_unresolved': bytes([0, 0]) + frame_record(ECHO, 0) + frame_record(ARP_REPLY, 0),
    'udp_no_listener': bytes([0, 0]) + frame_record(ARP_REQ) + frame_record(UDP),
    'tcp_echo': bytes([0x10, 0]) + frame_record(SYN) + frame_record(ARP_REPLY) + frame_record(DATA),
    'tcp_offload_hints': bytes([0x10 | 0x20 | 1 | (1 << 2), 0]) + frame_record(ARP_REQ) +
                         frame_record(DATA),
    'tcp_no_receiver': bytes([0, 0]) + frame_record(ARP_REQ) + frame_record(SYN),
    'fragment_vlan_gre': bytes([0, 0]) + frame_record(FRAG) + frame_record(VLAN) +
                         frame_record(GRE),
    'impaired_storm': bytes([0x90, 7]) + b''.join(frame_record(ECHO, 0) for _ in range(12)),
    'arp_timeouts': bytes([0x10, 3]) + frame_record(SYN, 0) + frame_record(SYN, 255) +
                    frame_record(ARP_REPLY, 255) + frame_record(DATA, 255),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()

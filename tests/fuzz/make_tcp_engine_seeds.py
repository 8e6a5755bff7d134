#!/usr/bin/env python3
# Writes the seed corpus of tcp_engine_fuzz (tests/fuzz/tcp_engine_fuzz.cc): a few scripts in
# its op language (data both ways, SACKed holes, RSTs and SYNs in window, time passing, closes).
import os
import struct
import sys


def seg(which, flags, dseq, dack, window=4000, opts=0b011, extra=b"", length=0):
    # op 2: which, flags, dseq, dack, window, opts, [ts_ecr], [sack blocks], length
    body = bytes([2, which, flags]) + struct.pack(">hhH", dseq, dack, window) + bytes([opts])
    if opts & 1:
        body += struct.pack(">I", 0)  # ts_ecr (ts_val comes from the counter: opts & 2)
    return body + extra + struct.pack(">H", length)


def sack(opts_blocks, blocks):
    extra = b"".join(struct.pack(">hH", left, size) for left, size in blocks)
    return (opts_blocks << 5) | 0b011, extra


def time(ms):
    return bytes([0]) + struct.pack(">H", ms)


def app(what, extra=b""):
    return bytes([4, what]) + extra


ACK, PSH, FIN, SYN, RST = 0x10, 0x08, 0x01, 0x02, 0x04
seeds = {
    "data_in_order": b"\x01\x01" + seg(0, ACK | PSH, 0, 0, length=500) + seg(0, ACK, 500, 0, length=500),
    "data_out_of_order": b"\x01\x01" + seg(0, ACK, 600, 0, length=300) + seg(0, ACK, 0, 0, length=600),
    "send_and_sack": b"\x01\x01" + app(0x00, struct.pack(">H", 2500))
    + seg(1, ACK, 0, 0, opts=sack(2, [(536, 536), (1608, 536)])[0],
          extra=sack(2, [(536, 536), (1608, 536)])[1])
    + seg(1, ACK, 0, 0, opts=sack(3, [(536, 536), (1608, 536), (-100, 50)])[0],
          extra=sack(3, [(536, 536), (1608, 536), (-100, 50)])[1])
    + time(300) + seg(1, ACK, 0, 2500),
    "rst_and_syn_in_window": b"\x00\x00" + seg(0, RST, 10, 0) + seg(0, SYN, 5, 0, opts=0) + seg(0, RST, 0, 0),
    "close_and_time": b"\x01\x00" + app(0x10) + time(100) + seg(0, ACK, 0, 1) + time(4000) + seg(1, FIN | ACK, 0, 0) + time(3000),
    "syn_flood_cookies": b"\x01\x01" + b"".join(seg(2, SYN, 0, 0, opts=0b10101, extra=struct.pack(">HB", 1460, 7)) + bytes([i]) for i in range(4)) + time(10),
    "raw_garbage": b"\x00\x01" + bytes([1, 24]) + bytes(range(24)) + bytes([0x81, 40]) + bytes(296),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

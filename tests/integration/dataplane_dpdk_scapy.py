#!/usr/bin/python3
"""Adversarial frames (scapy) against herald-dataplane's DPDK stack (net_af_packet over a veth
into a namespace, see dataplane_dpdk_netns.py). Each case sends crafted frames, checks the
stack's answer by sniffing (RST, ACK, challenge ACK, echo reply, SYN-ACK, or nothing), the named
counter that must move, and at the end of every case that a real Linux TLS client is still
served; no sanitizer report in the logs at the end. Cases (counter names are dp.net.drop.* /
dp.tcp.*):

- closed_port: SYN to a port nobody listens on -> RST,ACK (rst_closed_port).
- bad_checksums: the good SYN is answered; bad IPv4 / TCP checksum -> nothing
  (ipv4_bad_checksum, l4_bad_checksum).
- bad_data_offsets: 4 (< 5) and 15 (past the segment) -> nothing (drop_bad_data_offset).
- option_overflows: MSS length 0, timestamps length 1, window scale running past the header
  -> nothing (drop_bad_options).
- syn_fin: SYN+FIN -> nothing (drop_bad_flags).
- ipv4_garbage: version 5, IHL 4, total length 10, total length past the frame -> nothing
  (ipv4_bad_version, ipv4_bad_ihl, ipv4_bad_total_length, ipv4_truncated).
- fragments: over net_af_packet the kernel reassembles before the port (see the case).
- arp_garbage: truncated, hardware type 6, request for another address, opcode 9 -> no reply
  (arp_truncated, arp_unsupported, arp_not_for_us, arp_bad_opcode).
- icmp: truncated, bad checksum -> nothing (icmp_truncated, icmp_bad_checksum); echo request
  -> reply with the same id, seq and payload, valid checksum, TTL 64; TTL 0 answered too (a
  host does not drop for TTL, RFC 1122 3.2.1.7).
- reassembly: a ClientHello in out-of-order, overlapping and duplicate pieces -> the TLS
  handshake completes (ooo_segments); out-of-window data -> ACK at RCV.NXT
  (drop_out_of_window); in-window RST and SYN -> challenge ACKs (challenge_acks, RFC 5961);
  RST far outside -> nothing (drop_rst_out_of_window); the exact RST ends it (rst_received).
- tiny_mss: MSS 1 and 64 -> clamped to 64, segments never above it, handshake + Ping exact.
- window_scale: no WScale in the SYN-ACK to a SYN without one; a shift of 15 taken as 14.
- zero_window: our window 0 -> no data, probes at SND.UNA - 1 (window_probes) while it stays
  0, the whole flight once it opens.
- simultaneous_close: the stack's FIN crosses ours -> CLOSING -> TIME-WAIT (time_wait_entered).

scapy speaks as a host Linux does not know: a made-up MAC and IPv4 address on the veth's
subnet. Frames the stack sends there are not for Linux's MAC (the kernel drops them as
PACKET_OTHERHOST), so Linux never answers our hand-made connections with RSTs, and no
firewall rule is needed. The sniffer answers the stack's ARP requests for that address.

Root only: exits 77 (skipped) otherwise, or without scapy.
Usage: dataplane_dpdk_scapy.py <herald-controlplane> <herald-dataplane>
"""
import itertools
import os
import random
import ssl
import struct
import sys
import tempfile
import time

from dataplane_dpdk_netns import DpdkNode, FrameCapture, Link, skip_reason, wait_for
from dataplane_dpdk_sockets import Case as SocketCase
from dataplane_dpdk_sockets import ping_frame, tls_context
from herald_node import metric

try:
    import logging
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.all import ARP, ICMP, IP, TCP, AsyncSniffer, Ether, Raw, conf, fragment
except ImportError:
    conf = None

FAKE_MAC = "02:48:52:4c:44:09"  # locally administered, not any interface's
ANSWER_S = 5        # how long an expected answer may take
SILENCE_S = 0.3     # how long "no answer" is watched after the counter moved


class Wire(FrameCapture):
    """The sniffer (every frame from the stack's MAC, in order) and a raw L2 socket; answers the
    stack's ARP requests for the made-up host."""

    def __init__(self, link):
        super().__init__(link, FAKE_MAC, answer_s=ANSWER_S, silence_s=SILENCE_S)
        self.sock = conf.L2socket(iface=link.host_if)
        self.sniffer = AsyncSniffer(iface=link.host_if, store=False, prn=self._on_frame,
                                    lfilter=lambda f: Ether in f and f[Ether].src == self.stack_mac)
        self.sniffer.start()
        time.sleep(0.5)  # the capture socket is open before the first frame goes out

    def close(self):
        self.sniffer.stop()
        self.sock.close()

    def _on_frame(self, frame):
        if ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == self.fake_ip:
            self.send(Ether(dst=frame[ARP].hwsrc) / ARP(
                op=2, hwsrc=FAKE_MAC, psrc=self.fake_ip, hwdst=frame[ARP].hwsrc,
                pdst=frame[ARP].psrc))
        self.keep(frame)

    def send(self, frame):
        if frame[Ether].src in (None, "00:00:00:00:00:00") or not frame[Ether].fields.get("src"):
            frame[Ether].src = FAKE_MAC
        self.sock.send(frame)


def raw_syn(wire, tcp, options):
    """A SYN whose TCP header is built byte by byte (options exactly as given, data offset
    covering them), with correct IPv4 and TCP checksums."""
    header = struct.pack("!HHIIBBHHH", tcp.sport, tcp.port, tcp.isn, 0,
                         ((20 + len(options)) // 4) << 4, 0x02, 65535, 0, 0) + options
    pseudo = (bytes(IP(src=wire.fake_ip, dst=wire.link.stack_ip))[12:20] +
              struct.pack("!BBH", 0, 6, len(header)))
    total = sum(struct.unpack(f"!{(len(pseudo) + len(header)) // 2}H", pseudo + header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header = header[:16] + struct.pack("!H", ~total & 0xFFFF) + header[18:]
    return wire.ip(proto=6) / Raw(header)


def tcp_payload(frame):
    """A TCP segment's data, without the Ethernet padding scapy leaves under it."""
    ip, tcp = frame[IP], frame[TCP]
    return bytes(tcp.payload)[:ip.len - ip.ihl * 4 - tcp.dataofs * 4]


def tcp_from(sport):
    return lambda f: IP in f and TCP in f and f[TCP].dport == sport


def pure_ack_to(sport):
    """An ACK without data or other flags (a retransmission of data is not an answer)."""
    return lambda f: tcp_from(sport)(f) and f[TCP].flags == "A" and not tcp_payload(f)


def control_to(sport):
    """A segment to `sport` without data: an answer (ACK, RST, ...), not a retransmission."""
    return lambda f: tcp_from(sport)(f) and not tcp_payload(f)


class ScapyTcp:
    """A hand-made TCP client on the wire: handshake, segments where and when the test wants,
    in-order reassembly of what the stack sends (every data segment is ACKed at once)."""

    ports = itertools.count(random.randint(20000, 50000))

    def __init__(self, wire, port, mss=1460, options=None):
        self.wire = wire
        self.port = port
        self.sport = next(ScapyTcp.ports)  # unique: no frame of an earlier case matches
        self.mss = mss
        self.options = options
        self.isn = random.randint(0, 2**32 - 1)
        self.snd_nxt = self.isn
        self.rcv_nxt = None
        self.received = b""
        self.seen = 0            # frames of ours consumed from the wire
        self.mark = wire.mark()
        self.largest_segment = 0
        self.fin = False
        self.rst = False

    def seg(self, flags="A", seq=None, ack=None, payload=b"", **fields):
        fields.setdefault("window", 65535)
        frame = self.wire.ip() / TCP(sport=self.sport, dport=self.port, flags=flags,
                                     seq=self.snd_nxt if seq is None else seq,
                                     ack=(self.rcv_nxt or 0) if ack is None else ack, **fields)
        return frame / Raw(payload) if payload else frame

    def send(self, frame):
        self.wire.send(frame)

    def ours(self):
        return [f for f in self.wire.since(self.mark, tcp_from(self.sport))]

    def connect(self):
        options = self.options if self.options is not None else [("MSS", self.mss)]
        self.send(self.seg("S", ack=0, options=options))
        synack = self.wire.expect(self.mark, lambda f: tcp_from(self.sport)(f) and
                                  f[TCP].flags & 0x12 == 0x12, "SYN-ACK")
        assert synack[TCP].ack == (self.isn + 1) % 2**32, synack.summary()
        self.snd_nxt = (self.isn + 1) % 2**32
        self.rcv_nxt = (synack[TCP].seq + 1) % 2**32
        self.send(self.seg("A"))
        self.seen = len(self.ours())
        return synack

    def write(self, data, chunk=1000):
        for at in range(0, len(data), chunk):
            self.send(self.seg("PA", payload=data[at:at + chunk]))
            self.snd_nxt = (self.snd_nxt + len(data[at:at + chunk])) % 2**32

    def pump(self):
        """Takes new segments in order (reordered or duplicate ones are resent by the stack
        after our ACKs; a veth does not reorder) and ACKs data and FIN."""
        frames = self.ours()
        new, self.seen = frames[self.seen:], len(frames)
        owe_ack = False
        for f in new:
            t = f[TCP]
            if t.flags & 0x04:
                self.rst = True
                continue
            data = tcp_payload(f)
            self.largest_segment = max(self.largest_segment, len(data))
            offset = (t.seq - self.rcv_nxt) % 2**32
            if data and offset < 2**31:  # at or right of rcv_nxt
                if offset == 0:
                    self.received += data
                    self.rcv_nxt = (self.rcv_nxt + len(data)) % 2**32
                owe_ack = True
            elif data:  # starts left of rcv_nxt: take what is new
                back = (self.rcv_nxt - t.seq) % 2**32
                if back < len(data):
                    self.received += data[back:]
                    self.rcv_nxt = (self.rcv_nxt + len(data) - back) % 2**32
                owe_ack = True
            if t.flags & 0x01 and (t.seq + len(data)) % 2**32 == self.rcv_nxt:
                self.rcv_nxt = (self.rcv_nxt + 1) % 2**32
                self.fin = True
                owe_ack = True
        if owe_ack:
            self.send(self.seg("A"))

    def wait(self, predicate, what, timeout_s=ANSWER_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what} (got {len(self.received)} bytes)")


class TlsOverScapy:
    """Python's TLS client (memory BIOs) over a ScapyTcp: the chat port's handshake and a
    Ping -> Pong prove the stack delivered our bytes and we got its bytes, exactly."""

    def __init__(self, tcp):
        self.tcp = tcp
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = tls_context().wrap_bio(self.incoming, self.outgoing)
        self.used = 0

    def client_hello(self):
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def feed(self):
        self.incoming.write(self.tcp.received[self.used:])
        self.used = len(self.tcp.received)

    def finish_handshake(self):
        def done():
            self.feed()
            try:
                self.tls.do_handshake()
                return True
            except ssl.SSLWantReadError:
                return False
        self.tcp.wait(done, "the server's handshake flight")
        self.tcp.write(self.outgoing.read())

    def ping(self, nonce):
        self.tls.write(ping_frame(nonce))
        self.tcp.write(self.outgoing.read())
        got = b""

        def pong():
            nonlocal got
            self.feed()
            try:
                got += self.tls.read(65536)
            except ssl.SSLWantReadError:
                pass
            return struct.pack("<Q", nonce) in got
        self.tcp.wait(pong, f"the Pong to {nonce:#x}")


class Cases:
    def __init__(self, dp, link, wire):
        self.dp = dp
        self.link = link
        self.wire = wire
        self.port = dp.chat_port
        self.linux = SocketCase(dp, link)

    # Each case returns (counter names that must have grown, note).
    def counted(self, names, action):
        snapshot = self.dp.counters()
        before = {n: metric(snapshot, n) for n in names}
        note = action()
        try:
            for n in names:
                self.dp.wait_counter(n, before[n] + 1)
        except AssertionError:
            after = self.dp.counters()
            moved = {k: after[k] - snapshot.get(k, 0) for k in after
                     if "_dp_" in k and after[k] != snapshot.get(k, 0)}
            print(f"counters that moved: {moved}")
            raise
        return note

    def closed_port(self):
        def act():
            tcp = ScapyTcp(self.wire, self.port + 1 if self.port < 65535 else 1)
            tcp.send(tcp.seg("S", ack=0))
            rst = self.wire.expect(tcp.mark, lambda f: tcp_from(tcp.sport)(f) and
                                   f[TCP].flags & 0x04, "RST for a closed port")
            assert rst[TCP].ack == (tcp.isn + 1) % 2**32, rst.summary()
        return self.counted(["dp.tcp.rst_closed_port"], act)

    def drop_silently(self, frame, counters, sport=None):
        mark = self.wire.mark()
        self.counted(counters, lambda: self.wire.send(frame))
        if sport is not None:
            self.wire.silent(mark, control_to(sport), "answer to a dropped segment")

    def bad_checksums(self):
        good = ScapyTcp(self.wire, self.port)
        good.send(good.seg("S", ack=0))  # the same SYN with good sums is answered
        self.wire.expect(good.mark, tcp_from(good.sport), "SYN-ACK to a good SYN")
        good.send(good.seg("R", seq=(good.isn + 1) % 2**32, ack=0))
        bad_ip = ScapyTcp(self.wire, self.port)
        frame = bad_ip.seg("S", ack=0)
        frame[IP].chksum = 0xdead
        self.drop_silently(frame, ["dp.net.drop.ipv4_bad_checksum"], bad_ip.sport)
        bad_tcp = ScapyTcp(self.wire, self.port)
        frame = bad_tcp.seg("S", ack=0)
        frame[TCP].chksum = 0xdead
        self.drop_silently(frame, ["dp.net.drop.l4_bad_checksum"], bad_tcp.sport)

    def bad_data_offsets(self):
        low = ScapyTcp(self.wire, self.port)
        self.drop_silently(low.seg("S", ack=0, dataofs=4), ["dp.tcp.drop_bad_data_offset"],
                           low.sport)
        past = ScapyTcp(self.wire, self.port)
        self.drop_silently(past.seg("S", ack=0, dataofs=15), ["dp.tcp.drop_bad_data_offset"],
                           past.sport)

    def option_overflows(self):
        # Raw option bytes (scapy would fix lengths up), checksums right: MSS with length 0,
        # timestamps with length 1, and NOP NOP window-scale claiming 7 bytes (3 past the
        # header's end).
        for options in (b"\x02\x00\x05\xb4", b"\x08\x01\x00\x00", b"\x01\x01\x03\x07"):
            tcp = ScapyTcp(self.wire, self.port)
            self.drop_silently(raw_syn(self.wire, tcp, options), ["dp.tcp.drop_bad_options"],
                               tcp.sport)

    def syn_fin(self):
        tcp = ScapyTcp(self.wire, self.port)
        self.drop_silently(tcp.seg("SF", ack=0), ["dp.tcp.drop_bad_flags"], tcp.sport)

    def reassembly(self):
        """The ClientHello in overlapping, out-of-order and duplicate pieces, then an
        out-of-window segment, an in-window RST and a SYN (challenge ACKs), an RST outside
        the window (ignored): the handshake and a Ping still complete byte-exact."""
        tcp = ScapyTcp(self.wire, self.port)
        tcp.connect()
        tls = TlsOverScapy(tcp)
        hello = tls.client_hello()
        assert len(hello) > 300, len(hello)
        base = tcp.snd_nxt

        def piece(lo, hi):
            return tcp.seg("PA", seq=(base + lo) % 2**32, payload=hello[lo:hi])
        n = len(hello)
        old = lambda: (self.dp.counter("dp.tcp.data_duplicate") +  # noqa: E731
                       self.dp.counter("dp.tcp.drop_out_of_window"))
        ooo_before, old_before = self.dp.counter("dp.tcp.ooo_segments"), old()
        tcp.send(piece(200, 320))       # out of order
        tcp.send(piece(250, n))         # out of order, overlapping the first
        tcp.send(piece(0, 150))         # in order
        tcp.send(piece(100, 260))       # overlaps both sides: fills the hole
        tcp.send(piece(0, 100))         # a duplicate
        tcp.snd_nxt = (base + n) % 2**32
        tls.finish_handshake()
        self.dp.wait_counter("dp.tcp.ooo_segments", ooo_before + 2)
        # The duplicate (left of RCV.NXT by then): not acceptable, ACKed and dropped.
        wait_for("the duplicate counted", lambda: old() > old_before)

        # Out of window: far right of RCV.NXT -> an ACK (RCV.NXT), data not taken.
        mark = self.wire.mark()
        oow_before = self.dp.counter("dp.tcp.drop_out_of_window")
        tcp.send(tcp.seg("PA", seq=(tcp.snd_nxt + 3_000_000) % 2**32, payload=b"junk"))
        ack = self.wire.expect(mark, pure_ack_to(tcp.sport), "ACK to an out-of-window segment")
        assert ack[TCP].ack == tcp.snd_nxt, ack.summary()
        self.dp.wait_counter("dp.tcp.drop_out_of_window", oow_before + 1)

        # RFC 5961: RST in the window but not at RCV.NXT -> challenge ACK, connection kept.
        for flags, name in (("R", "RST"), ("S", "SYN")):
            mark = self.wire.mark()
            challenges = self.dp.counter("dp.tcp.challenge_acks")
            tcp.send(tcp.seg(flags, seq=(tcp.snd_nxt + 100) % 2**32))
            ack = self.wire.expect(mark, pure_ack_to(tcp.sport),
                                   f"challenge ACK to an in-window {name}")
            assert ack[TCP].ack == tcp.snd_nxt, ack.summary()
            self.dp.wait_counter("dp.tcp.challenge_acks", challenges + 1)
        # RST far outside the window: dropped silently.
        mark = self.wire.mark()
        self.drop_silently(tcp.seg("R", seq=(tcp.snd_nxt + 2**30) % 2**32),
                           ["dp.tcp.drop_rst_out_of_window"], tcp.sport)
        # Still the same connection, still byte-exact.
        tls.ping(0xC0FFEE)
        # Then the right RST ends it.
        self.counted(["dp.tcp.rst_received"], lambda: tcp.send(tcp.seg("R")))
        return f"ClientHello {n} bytes in 5 overlapping pieces"

    def tiny_mss(self):
        notes = []
        for mss in (1, 64):
            tcp = ScapyTcp(self.wire, self.port, mss=mss)
            synack = tcp.connect()
            tls = TlsOverScapy(tcp)
            tcp.write(tls.client_hello(), chunk=mss if mss >= 64 else 64)
            tls.finish_handshake()
            tls.ping(0x4D5300 + mss)
            # The stack clamps a peer's MSS to at least 64 bytes (Linux: 48): tiny segments,
            # never larger than the floor, and every byte arrives.
            assert 0 < tcp.largest_segment <= 64, (mss, tcp.largest_segment)
            mark = self.wire.mark()
            tcp.send(tcp.seg("R"))
            self.wire.silent(mark, tcp_from(tcp.sport), "answer to our RST")
            notes.append(f"MSS {mss}: SYN-ACK MSS {dict(synack[TCP].options).get('MSS')}, "
                         f"segments <= {tcp.largest_segment} B, {len(tcp.received)} B in")
        return "; ".join(notes)

    def window_scale(self):
        """RFC 7323: no window-scale option in the SYN-ACK to a SYN without one; a shift of 15
        is taken as 14 (our window field of 1 then means 16 KiB: the server's flight arrives
        in full-sized segments, not one byte at a time)."""
        plain = ScapyTcp(self.wire, self.port, options=[("MSS", 1460)])
        synack = plain.connect()
        assert "WScale" not in dict(synack[TCP].options), synack[TCP].options
        plain.send(plain.seg("R"))
        tcp = ScapyTcp(self.wire, self.port, options=[("MSS", 1460), ("WScale", 15)])
        synack = tcp.connect()
        assert "WScale" in dict(synack[TCP].options), synack[TCP].options
        tls = TlsOverScapy(tcp)
        hello = tls.client_hello()
        mark = self.wire.mark()
        tcp.send(tcp.seg("PA", payload=hello, window=1))
        tcp.snd_nxt = (tcp.snd_nxt + len(hello)) % 2**32
        # The first data the stack sends, before any of our ACKs opens the window wider.
        first = self.wire.expect(mark, lambda f: tcp_from(tcp.sport)(f) and tcp_payload(f),
                                 "the server's first data segment")
        assert len(tcp_payload(first)) > 1, "window field 1 taken as 1 byte: scale ignored"
        tls.finish_handshake()
        tls.ping(0x5CA1E)
        tcp.send(tcp.seg("R"))
        return (f"SYN-ACK scale {dict(synack[TCP].options)['WScale']}, first segment "
                f"{len(tcp_payload(first))} B into a window field of 1")

    def zero_window(self):
        """Our ClientHello with a window of 0: the stack sends no data, probes the window with
        SEQ = SND.UNA - 1 and no data (window_probes), keeps probing while we answer with 0,
        and sends its whole flight once the window opens."""
        tcp = ScapyTcp(self.wire, self.port)
        tcp.connect()
        tls = TlsOverScapy(tcp)
        hello = tls.client_hello()
        probes_before = self.dp.counter("dp.tcp.window_probes")
        mark = self.wire.mark()
        tcp.send(tcp.seg("PA", payload=hello, window=0))
        tcp.snd_nxt = (tcp.snd_nxt + len(hello)) % 2**32
        probe_seq = (tcp.rcv_nxt - 1) % 2**32
        is_probe = lambda f: (control_to(tcp.sport)(f)  # noqa: E731
                              and f[TCP].seq == probe_seq)
        self.wire.expect(mark, is_probe, "a zero-window probe", timeout_s=15)
        mark = self.wire.mark()
        tcp.send(tcp.seg("A", window=0))  # still closed
        self.wire.expect(mark, is_probe, "a second zero-window probe", timeout_s=15)
        data = self.wire.since(tcp.mark, lambda f: tcp_from(tcp.sport)(f) and tcp_payload(f))
        assert not data, f"data into a zero window: {data[0].summary()}"
        self.dp.wait_counter("dp.tcp.window_probes", probes_before + 2)
        tcp.send(tcp.seg("A"))  # open
        tls.finish_handshake()
        tls.ping(0x2E80)
        tcp.send(tcp.seg("R"))

    def simultaneous_close(self):
        """The stack closes (a fatal protocol error) while our FIN is already on its way and
        does not acknowledge its FIN: FIN-WAIT-1 -> CLOSING -> TIME-WAIT on the stack."""
        tcp = ScapyTcp(self.wire, self.port)
        tcp.connect()
        tls = TlsOverScapy(tcp)
        tcp.write(tls.client_hello())
        tls.finish_handshake()
        tls.tls.write(struct.pack("<I", 1 << 30) + b"xxxx")  # over max_frame_bytes: fatal
        record = tls.outgoing.read()
        before = self.dp.counter("dp.tcp.time_wait_entered")
        mark = self.wire.mark()
        tcp.send(tcp.seg("PA", payload=record))
        tcp.snd_nxt = (tcp.snd_nxt + len(record)) % 2**32
        fin = self.wire.expect(mark, lambda f: tcp_from(tcp.sport)(f) and f[TCP].flags & 0x01,
                               "the stack's FIN")
        # Our FIN, acknowledging everything before the stack's FIN but not the FIN itself.
        tcp.send(tcp.seg("FA", ack=fin[TCP].seq + len(tcp_payload(fin))))
        ack = self.wire.expect(mark, lambda f: pure_ack_to(tcp.sport)(f)
                               and f[TCP].ack == (tcp.snd_nxt + 1) % 2**32,
                               "the ACK of our FIN")
        del ack
        tcp.snd_nxt = (tcp.snd_nxt + 1) % 2**32
        tcp.send(tcp.seg("A", ack=(fin[TCP].seq + len(tcp_payload(fin)) + 1) % 2**32))
        self.dp.wait_counter("dp.tcp.time_wait_entered", before + 1)

    def arp_garbage(self):
        bcast = "ff:ff:ff:ff:ff:ff"
        stack_ip = self.link.stack_ip
        is_reply = lambda f: ARP in f and f[ARP].op == 2  # noqa: E731
        cases = [
            (Ether(src=FAKE_MAC, dst=bcast, type=0x0806) / Raw(b"\x00\x01\x08\x00\x06"),
             "dp.net.drop.arp_truncated"),
            (Ether(src=FAKE_MAC, dst=bcast) / ARP(hwtype=6, op=1, hwsrc=FAKE_MAC,
                                                 psrc=self.wire.fake_ip, pdst=stack_ip),
             "dp.net.drop.arp_unsupported"),
            (Ether(src=FAKE_MAC, dst=bcast) / ARP(op=1, hwsrc=FAKE_MAC, psrc=self.wire.fake_ip,
                                                 pdst=f"{self.link.prefix}.77"),
             "dp.net.drop.arp_not_for_us"),
            (Ether(src=FAKE_MAC, dst=bcast) / ARP(op=9, hwsrc=FAKE_MAC, psrc=self.wire.fake_ip,
                                                 pdst=stack_ip),
             "dp.net.drop.arp_bad_opcode"),
        ]
        for frame, counter in cases:
            mark = self.wire.mark()
            self.counted([counter], lambda: self.wire.send(frame))
            self.wire.silent(mark, is_reply, f"ARP reply ({counter})")

    def icmp(self):
        w = self.wire
        is_icmp = lambda f: IP in f and ICMP in f  # noqa: E731
        short = w.ip(proto=1) / Raw(b"\x08\x00")
        bad = w.ip() / ICMP(type=8, id=7, seq=1, chksum=0xbeef) / Raw(b"bad checksum")
        for frame, counter in ((short, "dp.net.drop.icmp_truncated"),
                               (bad, "dp.net.drop.icmp_bad_checksum")):
            mark = w.mark()
            self.counted([counter], lambda: w.send(frame))
            w.silent(mark, is_icmp, f"ICMP answer ({counter})")
        payload = os.urandom(200)
        for ttl in (64, 0):  # a host does not drop for TTL (RFC 1122 3.2.1.7): TTL 0 answered
            mark = w.mark()
            replies = self.dp.counter("dp.net.icmp_echo_replies")
            w.send(w.ip(ttl=ttl) / ICMP(type=8, id=0x4852, seq=ttl) / Raw(payload))
            reply = w.expect(mark, lambda f: is_icmp(f) and f[ICMP].type == 0 and
                             f[ICMP].seq == ttl, f"echo reply (request TTL {ttl})")
            assert reply[ICMP].id == 0x4852 and bytes(reply[ICMP].payload) == payload
            assert reply[IP].ttl == 64, reply[IP].ttl
            check = reply[ICMP].chksum
            reply[ICMP].chksum = None
            assert ICMP(bytes(reply[ICMP]))[ICMP].chksum == check, "echo reply checksum"
            self.dp.wait_counter("dp.net.icmp_echo_replies", replies + 1)
        return f"echo reply: same id/seq and {len(payload)}-byte payload, TTL 0 answered"

    def fragments(self):
        """DPDK 22.11's net_af_packet joins a PACKET_FANOUT group with
        PACKET_FANOUT_FLAG_DEFRAG (not configurable): the kernel under the PMD reassembles
        IPv4 fragments before the port sees them. So over this port a lone fragment never
        reaches the stack (held, then expired by the kernel) and a complete set arrives whole;
        the stack's own fragment drop (dp.net.drop.ipv4_fragment) is covered by the table
        tests (tests/unit/dataplane/net/stack_test.cc). Checked here: no answer, no crash, and
        what the kernel reassembled is answered."""
        w = self.wire
        is_icmp = lambda f: IP in f and ICMP in f  # noqa: E731
        payload = os.urandom(1200)
        whole = w.ip(id=0x4242) / ICMP(type=8, id=0x4653, seq=1) / Raw(payload)
        pieces = fragment(whole[IP], fragsize=600)
        assert len(pieces) >= 2, len(pieces)
        mark = w.mark()
        w.send(Ether(src=FAKE_MAC, dst=w.stack_mac) / pieces[0])  # alone: never completed
        lone = w.ip(id=0x4343, flags="MF") / ICMP(type=8, id=0x4653, seq=2) / Raw(b"y" * 64)
        w.send(lone)
        w.silent(mark, is_icmp, "answer to a lone fragment")
        mark = w.mark()
        for piece in fragment(w.ip(id=0x4444)[IP] / ICMP(type=8, id=0x4653, seq=3) /
                              Raw(payload), fragsize=600):
            w.send(Ether(src=FAKE_MAC, dst=w.stack_mac) / piece)
        reply = w.expect(mark, lambda f: is_icmp(f) and f[ICMP].type == 0 and f[ICMP].seq == 3,
                         "echo reply to a datagram the kernel reassembled")
        assert bytes(reply[ICMP].payload) == payload
        return "af_packet's kernel defrag: lone fragments unseen, a full set answered whole"

    def ipv4_garbage(self):
        w = self.wire
        for fields, counter in (({"version": 5}, "dp.net.drop.ipv4_bad_version"),
                                ({"ihl": 4}, "dp.net.drop.ipv4_bad_ihl"),
                                ({"len": 10}, "dp.net.drop.ipv4_bad_total_length"),
                                ({"len": 1400}, "dp.net.drop.ipv4_truncated")):
            tcp = ScapyTcp(w, self.port)
            frame = tcp.seg("S", ack=0)
            for k, v in fields.items():
                setattr(frame[IP], k, v)
            self.drop_silently(Ether(bytes(frame)), [counter], tcp.sport)


def run(controlplane, dataplane, tmp):
    with Link("a", 206) as link, DpdkNode(controlplane, dataplane, tmp, link, extra={
            "limits": {"max_connections": 1000, "handshake_timeout_ms": 60000}}) as dp:
        wire = Wire(link)
        try:
            wire.learn()
            cases = Cases(dp, link, wire)
            for name in ("closed_port", "bad_checksums", "bad_data_offsets", "option_overflows",
                         "syn_fin", "ipv4_garbage", "fragments", "arp_garbage", "icmp",
                         "reassembly", "tiny_mss", "window_scale", "zero_window",
                         "simultaneous_close"):
                started = time.monotonic()
                note = getattr(cases, name)()
                cases.linux.served()
                print(f"ok {name} ({time.monotonic() - started:.1f} s)"
                      + (f": {note}" if note else ""), flush=True)
        except BaseException:
            dp.dump_logs()
            raise
        finally:
            wire.close()
        dp.finish()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    reason = skip_reason() or (None if conf is not None else "needs python3-scapy")
    if reason:
        print(f"skipped: {reason}")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        run(sys.argv[1], sys.argv[2], tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

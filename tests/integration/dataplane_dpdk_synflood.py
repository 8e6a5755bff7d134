#!/usr/bin/python3
"""A SYN flood against herald-dataplane's DPDK stack (net_af_packet over a veth into a
namespace, see dataplane_dpdk_netns.py) while real clients use it; every claim is read off the
node's counters (GET /metrics, dp.tcp.* / dp.net.* / dp.dpdk.*):

- the flood: spoofed SYNs (240 source addresses on the link, a new port per round, never a
  repeated 4-tuple) from a separate process at FLOOD_RATE_PER_S, for FLOOD_MIN_S or until the
  checks below are done (~75,000 SYNs). Half of the sources were announced by ARP (the stack's
  SYN-ACKs go out on the wire to a MAC nobody owns), the other half never answer ARP (SYN-ACKs
  wait in the ARP queue, then are dropped). The SYN queue (dataplane.dpdk.syn_queue, set to
  96 here, not its default 128) takes exactly its first 96 SYNs; every later SYN gets a cookie.
- established sessions: herald-loadgen one-to-one (200 sessions logged in before the flood,
  1000 msg/s) keeps sending through it: lost 0, duplicates 0, no reconnect, messages delivered
  while the flood ran (dp.router.delivered_local).
- cookies complete handshakes: a hand-made client (scapy) gets a cookie SYN-ACK and is served
  over it (TLS 1.3 + Ping); Linux TLS clients are served (syn_cookies_accepted); a second
  herald-loadgen connects 300 sessions and reconnects them all at once (reconnect-storm) during
  the flood: every connection through a cookie, lost 0, duplicates 0.
- forged cookie ACKs: a wrong cookie, a wrong peer ISN, the right cookie from another port, and
  200 random ACKs from 200 new ports: each answered by an RST (sniffed) and counted in
  syn_cookies_rejected (exactly: rejected = RSTs), none creates a connection
  (syn_cookies_accepted, transport.accepted).

Frames the test counts on are sent again when unanswered: net_af_packet's kernel ring drops
frames while the dataplane's lcore is descheduled (~0.4 % of this run's, counted nowhere in the
node), and a frame that never reached TCP changes nothing the test counts.
- nothing leaks: every block a SYN made reached ESTABLISHED or ends by SYN-ACK timeout
  (aborted_syn_timeout = passive_opens - established: the 96 of the first fill, 63 s =
  1+2+4+8+16+32 after the flood began); the connection gauges return to their baseline (0);
  every frame the ARP queue took was released or dropped (arp_queued = arp_released +
  arp_resolution_failed + arp_evicted); no tx frame ever lacked an mbuf or a tx slot, and the
  flood's SYNs outnumber the mempool's mbufs with rx_nombuf still 0 (DPDK telemetry); a new
  client is served by an ordinary handshake (no cookie); and the SYN queue is empty again:
  exactly 96 new SYNs get blocks, the 97th a cookie.

The counters segment has no gauge for the engine's blocks, its SYN queue, the mempool's free
mbufs or the tx slots in use (dp.transport.connections counts accepted connections only): the
SYN queue is measured by filling it, the blocks by the counters that create and end them.

Root only (namespace, veth, af_packet) and python3-scapy: exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_synflood.py <herald-controlplane> <herald-dataplane> <herald-loadgen>
"""
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from dataplane_dpdk_netns import DpdkNode, FrameCapture, Link, gauge, skip_reason, wait_for
from dataplane_dpdk_sockets import Case as SocketCase
from herald_node import metric

conf = None
if sys.argv[1:2] != ["--flood"]:  # the flood process needs none of it (and starts sooner)
    try:
        import logging
        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
        from scapy.all import TCP, Ether, conf
        from dataplane_dpdk_scapy import ScapyTcp, TlsOverScapy, tcp_from
    except ImportError:
        conf = None

SUBNET = 209
FAKE_MAC = "02:48:52:4c:44:19"   # the hand-made (scapy) client's host, learned by the stack
FLOOD_MAC = "02:48:52:4c:44:f1"  # the flood's sources: a MAC nobody owns
LEARNED_HOSTS = range(10, 130)   # flood sources announced by ARP: SYN-ACKs go on the wire
SILENT_HOSTS = range(130, 250)   # flood sources that never answer ARP: SYN-ACKs queue, then drop
FLOOD_RATE_PER_S = 5000
FLOOD_BURST = 50                 # frames at most per 5 ms turn (the backlog holds 1000)
FLOOD_MIN_S = 15                 # the flood lasts at least this long (~75,000 SYNs)
FLOOD_MAX_S = 90                 # the flood process stops by itself after this (a safety net)
SYN_QUEUE = 96                   # dataplane.dpdk.syn_queue, configured (default 128)
SYN_RECEIVED_LIFETIME_S = 63     # initial_rto 1 s, 5 SYN-ACK retransmissions: 1+2+4+8+16+32
FORGED_ACKS = 200
LINUX_CLIENTS = 8
STEADY_CONNECTIONS = 200         # loadgen one-to-one, connected before the flood
STEADY_RATE_PER_S = 1000
STORM_CONNECTIONS = 300          # loadgen reconnect-storm, connected during the flood
PROBE_SPORT = 40000              # the SYN-queue probe's source ports (the flood's stay < 3000)


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def ones_sum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def tcp_frame(dst_mac, src_mac, src_ip, dst_ip, sport, dport, seq, ack, flags, options=b""):
    """Ethernet + IPv4 + TCP as bytes with correct checksums (addresses as 4 bytes, MACs as 6):
    a few microseconds each, where scapy takes a hundred."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, ((20 + len(options)) // 4) << 4,
                      flags, 65535, 0, 0) + options
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", ~ones_sum(pseudo + tcp) & 0xFFFF) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq & 0xFFFF, 0x4000, 64, 6, 0,
                     src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", ~ones_sum(ip) & 0xFFFF) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


MSS_1460 = b"\x02\x04\x05\xb4"


def arp_request(src_mac, src_ip, target_ip):
    return (b"\xff" * 6 + src_mac + b"\x08\x06" +
            struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, src_ip, b"\0" * 6,
                        target_ip))


def flood_tuple(i, prefix):
    """The i-th SYN's source: 240 addresses round robin, the port advancing each round, so no
    4-tuple repeats (a repeat would meet its own SYN-RECEIVED block, not the listener)."""
    hosts = len(LEARNED_HOSTS) + len(SILENT_HOSTS)
    return socket.inet_aton(f"{prefix}.{LEARNED_HOSTS[0] + i % hosts}"), 1024 + i // hosts


def flood_main(iface, stack_mac, stack_ip, prefix, port):
    """The flood process: spoofed SYNs at FLOOD_RATE_PER_S until SIGTERM (or FLOOD_MAX_S);
    prints how many it sent. A process of its own: the test's threads keep their interpreter."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    out.bind((iface, 0))
    dst, src, stack = mac_bytes(stack_mac), mac_bytes(FLOOD_MAC), socket.inet_aton(stack_ip)
    rng = random.Random(SUBNET)
    sent = 0
    started = last = time.monotonic()
    tokens = 0.0
    while not stopping and last - started < FLOOD_MAX_S:
        # A token bucket, not a schedule to catch up with: after the process was descheduled
        # a catch-up burst would overflow the receiving CPU's backlog (netdev_max_backlog) and
        # the kernel would drop the test's own frames with the flood's.
        now = time.monotonic()
        tokens = min(FLOOD_BURST, tokens + (now - last) * FLOOD_RATE_PER_S)
        last = now
        while tokens >= 1 and not stopping:
            ip, sport = flood_tuple(sent, prefix)
            try:
                out.send(tcp_frame(dst, src, ip, stack, sport, port, rng.getrandbits(32), 0,
                                   0x02, MSS_1460))
            except OSError:  # ENOBUFS: the veth's queue is full; the next turn tries again
                break
            sent += 1
            tokens -= 1
        time.sleep(0.005)
    print(sent, flush=True)
    return 0


class Flood:
    def __init__(self, link, stack_mac, port):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--flood", link.host_if, stack_mac, link.stack_ip,
             link.prefix, str(port)], stdout=subprocess.PIPE, text=True)
        self.sent = None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, f"flood process exited {self.proc.returncode}"
        self.sent = int(out.strip())
        return self.sent


class Wire(FrameCapture):
    """dataplane_dpdk_scapy.Wire's capture for ScapyTcp over a raw socket that keeps only
    frames for FAKE_MAC: AsyncSniffer would dissect every one of the flood's SYN-ACKs in Python
    first. Answers the stack's ARP requests for the made-up host."""

    def __init__(self, link):
        super().__init__(link, FAKE_MAC, answer_s=10)
        self.out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.out.bind((link.host_if, 0))
        self.inp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.inp.bind((link.host_if, 0))
        # Every frame on the link passes this socket (the flood's SYN-ACKs too) before the
        # filter: room for seconds of them, so the thread's pauses (the GIL) lose none of ours.
        self.inp.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root)
        self.inp.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def close(self):
        self.running = False
        self.thread.join()
        self.inp.close()
        self.out.close()

    def _receive(self):
        ours, stack = mac_bytes(FAKE_MAC), mac_bytes(self.stack_mac)
        fake_ip = socket.inet_aton(self.fake_ip)
        while self.running:
            try:
                data = self.inp.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if data[6:12] != stack:
                continue
            if data[0:6] == ours:
                self.keep(Ether(data))
            elif data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x01" and \
                    data[38:42] == fake_ip:  # the stack asks for our address
                self.out.send(data[22:28] + ours + b"\x08\x06" + struct.pack(
                    "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, ours, fake_ip, data[22:28],
                    data[28:32]))

    def send(self, frame):
        self.out.send(frame if isinstance(frame, bytes) else bytes(frame))


def counter(values, name):
    return int(metric(values, name))


def delta(before, after, name):
    return counter(after, name) - counter(before, name)


REQUIRED = ("dp.tcp.passive_opens", "dp.tcp.established", "dp.tcp.aborted_syn_timeout",
            "dp.tcp.syn_cookies_sent", "dp.tcp.syn_cookies_accepted",
            "dp.tcp.syn_cookies_rejected", "dp.tcp.rst_listen_ack", "dp.net.arp_queued",
            "dp.net.arp_released", "dp.net.drop.arp_resolution_failed", "dp.net.drop.arp_evicted",
            "dp.net.arp_learned", "dp.router.delivered_local", "dp.router.messages",
            "dp.dpdk.transport.accepted")
GAUGES = ("dp.transport.connections", "dp.tls.connections", "dp.worker.sessions")
TX_TROUBLE = ("dp.dpdk.alloc_failures", "dp.dpdk.transport.tx_slots_exhausted",
              "dp.dpdk.transport.tx_batch_refused", "dp.dpdk.tx_ring_full_drops")


class Loadgen:
    """herald-loadgen in the background; result() is its JSON verdict, checked."""

    def __init__(self, binary, dp, link, tmp, scenario, connections, phone_prefix, *extra):
        self.scenario = scenario
        self.connections = connections
        self.out_path = f"{tmp}/loadgen-{scenario}.out"
        self.err_path = f"{tmp}/loadgen-{scenario}.err"
        args = [binary, "--target", f"{link.stack_ip}:{dp.chat_port}",
                "--admin", f"127.0.0.1:{dp.node.admin_port}",
                "--public", f"127.0.0.1:{dp.node.public_port}",
                "--data-dir", dp.node.data_dir, "--quiet", "--json", "--scenario", scenario,
                "--connections", str(connections), "--processes", "1",
                "--phone-prefix", phone_prefix, "--settle-timeout", "30", *extra]
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def result(self, timeout_s=150):
        self.proc.wait(timeout=timeout_s)
        with open(self.out_path) as f:
            out = f.read()
        with open(self.err_path) as f:
            err = f.read()
        try:
            result = json.loads(out)
        except json.JSONDecodeError:
            raise AssertionError(f"{self.scenario}: loadgen exited {self.proc.returncode}, "
                                 f"no JSON:\n{out[-2000:]}\n{err[-2000:]}")
        summary = {k: result.get(k) for k in ("sent", "acked", "delivered", "lost", "duplicates",
                                              "connects", "logins", "disconnects", "msgs_per_s",
                                              "reconnect_s", "errors")}
        print(f"{self.scenario}: exit {self.proc.returncode} {json.dumps(summary)}", flush=True)
        assert self.proc.returncode == 0, f"{self.scenario}: exit {self.proc.returncode}: " \
                                          f"{err[-2000:]}"
        assert result["lost"] == 0 and result["duplicates"] == 0, summary
        assert result["acked"] > 0 and result["delivered"] >= result["acked"], summary
        assert result["logins"] >= self.connections, summary
        return result


class Telemetry:
    """DPDK's telemetry socket (in the EAL's runtime directory: a file, so reachable from the
    root namespace): the mempool's size and the port's rx_nombuf, which the counters segment
    does not carry. None when the EAL runs without telemetry."""

    @staticmethod
    def open(link):
        path = f"/var/run/dpdk/{link.ns}/dpdk_telemetry.v2"
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.settimeout(5)
            sock.connect(path)
            sock.recv(16384)  # the greeting: version, pid, max_output_len
        except OSError:
            return None
        return Telemetry(sock)

    def __init__(self, sock):
        self.sock = sock

    def query(self, command):
        self.sock.send(command.encode())
        return json.loads(self.sock.recv(65536))[command.split(",")[0]]

    def mempool_size(self):
        return self.query(f"/mempool/info,{self.query('/mempool/list')[0]}")["size"]

    def port_stats(self):
        return self.query("/ethdev/stats,0")

    def close(self):
        self.sock.close()


class Checks:
    def __init__(self, dp, link, wire):
        self.dp = dp
        self.link = link
        self.wire = wire
        self.linux = SocketCase(dp, link)
        self.stack_ip = socket.inet_aton(link.stack_ip)

    def flood_host(self, index):
        return socket.inet_aton(f"{self.link.prefix}.{index}")

    def announce_flood_hosts(self):
        """ARP requests from the learned half: the stack takes their MAC (FLOOD_MAC)."""
        learned = self.dp.counter("dp.net.arp_learned")
        for h in LEARNED_HOSTS:
            self.wire.send(arp_request(mac_bytes(FLOOD_MAC), self.flood_host(h), self.stack_ip))
        self.dp.wait_counter("dp.net.arp_learned", learned + len(LEARNED_HOSTS))

    def send_until(self, frames, answered, what, rounds=5, wait_s=2):
        """Sends each frame of {key: frame} whose key answered() does not yet return, paced,
        and again after wait_s, up to `rounds` times: a frame the kernel under the port dropped
        (the af_packet ring overflows while the dataplane's lcore is descheduled; no counter
        sees it) never reached TCP, so sending it again changes nothing the test counts."""
        for _ in range(rounds):
            pending = [k for k in frames if k not in answered()]
            if not pending:
                return
            self.send_paced([frames[k] for k in pending])
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and len(answered()) < len(frames):
                time.sleep(0.05)
        missing = [k for k in frames if k not in answered()]
        assert not missing, f"no answer to {len(missing)} {what} after {rounds} rounds"

    def send_paced(self, frames):
        for n, frame in enumerate(frames):
            if n % 25 == 24:
                time.sleep(0.005)  # bursts the backlog takes beside the flood's (FLOOD_BURST)
            self.wire.send(frame)

    def rsts_to(self, mark, ports):
        return [f for f in self.wire.since(mark, lambda f: TCP in f and f[TCP].flags & 0x04)
                if f[TCP].dport in ports]

    def forged_acks(self):
        """Random ACKs to the listener from our host (new ports): each one a rejected cookie and
        an RST (sniffed), none a connection. Exact: rejected = RSTs = ACKs that arrived."""
        before = self.dp.counters()
        rng = random.Random(7)
        stack_mac, fake_mac = mac_bytes(self.wire.stack_mac), mac_bytes(FAKE_MAC)
        fake_ip = socket.inet_aton(self.wire.fake_ip)
        ports = range(60000, 60000 + FORGED_ACKS)
        frames = {p: tcp_frame(stack_mac, fake_mac, fake_ip, self.stack_ip, p,
                               self.dp.chat_port, rng.getrandbits(32), rng.getrandbits(32),
                               0x10) for p in ports}
        mark = self.wire.mark()
        self.send_until(frames, lambda: {f[TCP].dport for f in self.rsts_to(mark, ports)},
                        "forged ACKs")
        rsts = len(self.rsts_to(mark, ports))
        self.dp.wait_counter("dp.tcp.syn_cookies_rejected",
                             counter(before, "dp.tcp.syn_cookies_rejected") + rsts)
        self.dp.wait_counter("dp.tcp.rst_listen_ack",
                             counter(before, "dp.tcp.rst_listen_ack") + rsts)
        after = self.dp.counters()
        assert delta(before, after, "dp.tcp.syn_cookies_rejected") == rsts
        assert delta(before, after, "dp.tcp.rst_listen_ack") == rsts
        assert delta(before, after, "dp.tcp.syn_cookies_accepted") == 0
        assert delta(before, after, "dp.dpdk.transport.accepted") == 0
        return rsts

    def scapy_cookie(self):
        """One SYN from our hand-made client while the queue is full: a cookie SYN-ACK and no
        block. Then ACKs with a wrong cookie, a wrong peer ISN and the right cookie from another
        port: each rejected with an RST, no connection. Then the right ACK: accepted, and the
        connection it makes is served (TLS 1.3 handshake and a Ping, byte-exact)."""
        port = self.dp.chat_port
        tcp = ScapyTcp(self.wire, port)
        before = self.dp.counters()
        syn = bytes(tcp.seg("S", ack=0, options=[("MSS", 1460)]))
        is_synack = lambda f: tcp_from(tcp.sport)(f) and f[TCP].flags & 0x12 == 0x12  # noqa
        # A SYN sent again gets the same cookie (same tuple, ISN, MSS and period).
        self.send_until({0: syn}, lambda: {0} if self.wire.since(tcp.mark, is_synack) else set(),
                        "cookie SYN")
        synack = self.wire.since(tcp.mark, is_synack)[0]
        assert synack[TCP].ack == (tcp.isn + 1) % 2**32, synack.summary()
        cookie = synack[TCP].seq
        isn1, cookie1 = (tcp.isn + 1) % 2**32, (cookie + 1) % 2**32
        other = ScapyTcp(self.wire, port)  # another source port, the same cookie
        forged = [("wrong cookie", tcp, isn1, cookie1 ^ 0x00A5A5A5),
                  ("wrong peer ISN", tcp, (isn1 + 1000) % 2**32, cookie1),
                  ("another tuple", other, isn1, cookie1)]
        rsts = 0
        for what, who, seq, ack in forged:
            mark = self.wire.mark()
            is_rst = lambda f: tcp_from(who.sport)(f) and f[TCP].flags & 0x04  # noqa: E731
            self.send_until({0: bytes(who.seg("A", seq=seq, ack=ack))},
                            lambda: {0} if self.wire.since(mark, is_rst) else set(),
                            f"forged ACK ({what})")
            got = self.wire.since(mark, is_rst)
            assert all(r[TCP].seq == ack for r in got), (what, got[0].summary())
            rsts += len(got)
        self.dp.wait_counter("dp.tcp.syn_cookies_rejected",
                             counter(before, "dp.tcp.syn_cookies_rejected") + rsts)
        mid = self.dp.counters()
        assert delta(before, mid, "dp.tcp.syn_cookies_rejected") == rsts
        assert delta(before, mid, "dp.tcp.syn_cookies_accepted") == 0
        assert delta(before, mid, "dp.tcp.passive_opens") == 0, "a block for a queue-full SYN"
        assert delta(before, mid, "dp.dpdk.transport.accepted") == 0
        # The right ACK: the connection exists from it alone (sent again, it is a duplicate
        # ACK on that connection, not a second one).
        tcp.snd_nxt, tcp.rcv_nxt = isn1, cookie1
        accepted = counter(before, "dp.tcp.syn_cookies_accepted")
        self.send_until({0: bytes(tcp.seg("A"))}, lambda: (
            {0} if self.dp.counter("dp.tcp.syn_cookies_accepted") > accepted else set()),
            "cookie ACK")
        tcp.seen = len(tcp.ours())
        tls = TlsOverScapy(tcp)
        tcp.write(tls.client_hello())
        tls.finish_handshake()
        tls.ping(0xC00C1E)
        tcp.send(tcp.seg("R"))
        assert self.dp.counter("dp.tcp.syn_cookies_accepted") == accepted + 1
        return (f"cookie {cookie:#010x}: 3 forged ACKs rejected ({rsts} RSTs), the right one "
                f"served")

    def linux_clients(self):
        """Linux TLS clients complete their handshakes through cookies and are served."""
        accepted = self.dp.counter("dp.tcp.syn_cookies_accepted")
        for i in range(LINUX_CLIENTS):
            self.linux.served(0xF100D00 + i)
        self.dp.wait_counter("dp.tcp.syn_cookies_accepted", accepted + LINUX_CLIENTS)

    def syn_queue_empty(self):
        """The SYN queue holds nothing: exactly SYN_QUEUE new SYNs get blocks, then a cookie.
        (A SYN sent again for a tuple that has its block is answered by that block: no second
        block, no cookie.)"""
        before = self.dp.counters()
        stack_mac, flood_mac = mac_bytes(self.wire.stack_mac), mac_bytes(FLOOD_MAC)

        def syn(i):
            h = SILENT_HOSTS[i % len(SILENT_HOSTS)]
            return tcp_frame(stack_mac, flood_mac, self.flood_host(h), self.stack_ip,
                             PROBE_SPORT + i, self.dp.chat_port, 1000 + i, 0, 0x02, MSS_1460)
        opens = counter(before, "dp.tcp.passive_opens")
        for attempt in range(5):
            self.send_paced([syn(i) for i in range(SYN_QUEUE)])
            try:
                wait_for("the probe's blocks", lambda: self.dp.counter("dp.tcp.passive_opens")
                         >= opens + SYN_QUEUE, timeout_s=2)
                break
            except AssertionError:
                if attempt == 4:
                    raise
        full = self.dp.counters()
        assert delta(before, full, "dp.tcp.syn_cookies_sent") == 0, \
            "a cookie before the queue was full: blocks left in it"
        cookies = counter(before, "dp.tcp.syn_cookies_sent")
        self.send_until({0: syn(SYN_QUEUE)}, lambda: (
            {0} if self.dp.counter("dp.tcp.syn_cookies_sent") > cookies else set()),
            "SYN past the queue")
        after = self.dp.counters()
        assert delta(before, after, "dp.tcp.passive_opens") == SYN_QUEUE, \
            "more blocks than the SYN queue holds"


def run(controlplane, dataplane, loadgen, tmp):
    started = time.monotonic()
    with Link("f", SUBNET) as link, DpdkNode(controlplane, dataplane, tmp, link,
                                             dpdk_extra={"syn_queue": SYN_QUEUE}) as dp:
        wire = Wire(link)
        flood = steady = storm = None
        try:
            wire.learn()
            checks = Checks(dp, link, wire)
            # The baseline: no client (the node's readiness probe has gone).
            baseline = {g: 0 for g in GAUGES}
            wait_for("no connection before the test", lambda: all(
                gauge(dp.counters(), g) == 0 for g in GAUGES))
            base = dp.counters()
            missing = [n for n in REQUIRED if metric(base, n) == 0 and
                       f"herald_{n.replace('.', '_')}_total" not in base]
            assert not missing, f"counters not in /metrics: {missing}"

            # Established sessions first: the one-to-one run logs in, then sends throughout.
            steady = Loadgen(loadgen, dp, link, tmp, "one-to-one", STEADY_CONNECTIONS, "+1601",
                             "--rate", str(STEADY_RATE_PER_S), "--duration", "35")
            wait_for("the steady sessions logged in and sending", lambda: (
                gauge(dp.counters(), "dp.worker.sessions") >= STEADY_CONNECTIONS and
                dp.counter("dp.router.messages") > counter(base, "dp.router.messages")),
                timeout_s=60)
            checks.announce_flood_hosts()

            before = dp.counters()
            flood_started = time.monotonic()
            flood = Flood(link, wire.stack_mac, dp.chat_port)
            dp.wait_counter("dp.tcp.syn_cookies_sent",
                            counter(before, "dp.tcp.syn_cookies_sent") + 1, timeout_s=30)
            filled = dp.counters()
            half_open = delta(before, filled, "dp.tcp.passive_opens")
            assert half_open == SYN_QUEUE, f"{half_open} blocks from the flood, queue {SYN_QUEUE}"
            print(f"ok queue full: {half_open} half-open blocks, then cookies", flush=True)

            rsts = checks.forged_acks()
            print(f"ok {FORGED_ACKS} random ACKs: rejected and RST each ({rsts} RSTs), no "
                  f"connection", flush=True)
            print(f"ok scapy: {checks.scapy_cookie()}", flush=True)
            checks.linux_clients()
            print(f"ok {LINUX_CLIENTS} Linux TLS clients served through cookies", flush=True)

            storm_before = dp.counters()
            storm_started_s = time.monotonic() - flood_started
            storm = Loadgen(loadgen, dp, link, tmp, "reconnect-storm", STORM_CONNECTIONS,
                            "+1602", "--rate", "1000", "--duration", "8", "--storm-after", "3")
            storm_result = storm.result()
            assert storm_result.get("reconnect_s") is not None, "no reconnect_s"
            during = dp.counters()
            storm_cookies = delta(storm_before, during, "dp.tcp.syn_cookies_accepted")
            # Its first connections and every reconnect went through cookies while the flood's
            # first blocks held the queue full (after SYN_RECEIVED_LIFETIME_S they expire one
            # by one, and a real SYN may then take a freed slot: legitimate, not checked).
            if time.monotonic() - flood_started < SYN_RECEIVED_LIFETIME_S:
                assert storm_cookies >= 2 * STORM_CONNECTIONS, storm_cookies
                assert delta(storm_before, during, "dp.tcp.passive_opens") == storm_cookies
            print(f"ok reconnect-storm in the flood (from {storm_started_s:.0f} s): "
                  f"{storm_cookies} connections by cookie ("
                  f"{delta(storm_before, during, 'dp.dpdk.transport.accepted')} accepted by the "
                  f"transport, {storm_result['connects']} connects seen by the loadgen), "
                  f"reconnected in {storm_result['reconnect_s']} s", flush=True)

            # The flood goes on for FLOOD_MIN_S in all (its size, not a wait for the machine).
            while time.monotonic() - flood_started < FLOOD_MIN_S:
                assert flood.proc.poll() is None, "the flood process ended early"
                time.sleep(0.2)

            steady_overlapped = steady.proc.poll() is None
            sent = flood.stop()
            flood = None
            flood_stopped = time.monotonic()
            flooded = dp.counters()
            flood_s = time.monotonic() - flood_started
            delivered = delta(before, flooded, "dp.router.delivered_local")
            assert delivered > 0, "no message delivered during the flood"
            steady_result = steady.result()
            assert steady_result["connects"] == STEADY_CONNECTIONS, \
                f"the established sessions reconnected: {steady_result['connects']} connects"
            print(f"flood: {sent} SYNs in {flood_s:.1f} s; cookies sent "
                  f"{delta(before, flooded, 'dp.tcp.syn_cookies_sent')}, accepted "
                  f"{delta(before, flooded, 'dp.tcp.syn_cookies_accepted')}, rejected "
                  f"{delta(before, flooded, 'dp.tcp.syn_cookies_rejected')}; "
                  f"{delivered} messages delivered meanwhile (steady run still sending at the "
                  f"end: {steady_overlapped}); ARP queued "
                  f"{delta(before, flooded, 'dp.net.arp_queued')}, queue full "
                  f"{delta(before, flooded, 'dp.net.drop.arp_queue_full')}", flush=True)
            assert sent > 10 * SYN_QUEUE, f"the flood sent only {sent} SYNs"
            telemetry = Telemetry.open(link)
            if telemetry is not None:
                # More SYNs answered than the pool has mbufs, and none ever lacked one: a
                # frame leaked per SYN (or per cookie) would have run the pool dry.
                pool, port = telemetry.mempool_size(), telemetry.port_stats()
                telemetry.close()
                assert sent > pool and port["rx_nombuf"] == 0, (sent, pool, port)
                print(f"ok mempool: {pool} mbufs, {sent} SYNs answered, rx_nombuf 0 (port: "
                      f"{port['ipackets']} in, {port['imissed']} missed)", flush=True)
            else:
                print("DPDK telemetry unavailable: the mempool checked by alloc_failures only")

            # Nothing leaks. Every client has left: the gauges are back at their baseline.
            wait_for("the connection gauges back at baseline", lambda: all(
                gauge(dp.counters(), g) == baseline[g] for g in GAUGES), timeout_s=60)
            # Every block a SYN made either reached ESTABLISHED (real clients, cookies
            # included) or ends by SYN-ACK timeout: the flood's. Normally the SYN_QUEUE of the first
            # fill; if the flood outlived them, their successors too.
            half_opens = (delta(before, flooded, "dp.tcp.passive_opens") -
                          delta(before, flooded, "dp.tcp.established"))
            assert half_opens >= half_open, (half_opens, half_open)
            deadline_s = SYN_RECEIVED_LIFETIME_S + 30 - (time.monotonic() - flood_stopped)
            dp.wait_counter("dp.tcp.aborted_syn_timeout",
                            counter(before, "dp.tcp.aborted_syn_timeout") + half_opens,
                            timeout_s=max(deadline_s, 1))
            ended = dp.counters()
            assert delta(before, ended, "dp.tcp.aborted_syn_timeout") == half_opens
            assert delta(flooded, ended, "dp.tcp.passive_opens") == 0
            print(f"flood accounting: {sent} SYNs sent; the stack made {half_opens} blocks and "
                  f"sent {delta(before, ended, 'dp.tcp.syn_cookies_sent')} cookies (real "
                  f"clients' SYNs and their retransmissions included), dropped "
                  f"{delta(before, ended, 'dp.tcp.drop_accept_backlog_full')} SYNs/ACKs for a "
                  f"full accept backlog", flush=True)
            drops = {k[len("herald_dp_"):]: int(v - before.get(k, 0)) for k, v in ended.items()
                     if ("drop" in k or "no_room" in k or "limited" in k) and
                     k.startswith("herald_dp_") and v != before.get(k, 0)}
            print(f"drops and limits that moved: {drops}", flush=True)
            with open(f"/sys/class/net/{link.host_if}/statistics/tx_packets") as f:
                to_port = int(f.read())
            print(f"frames: the veth carried {to_port} to the port, the port loop received "
                  f"{counter(dp.counters(), 'dp.dpdk.rx_packets')} (the rest dropped below the "
                  f"PMD, counted nowhere in the node)", flush=True)

            def arp_balance():
                c = dp.counters()
                queued = counter(c, "dp.net.arp_queued")
                out = sum(counter(c, n) for n in ("dp.net.arp_released",
                                                  "dp.net.drop.arp_resolution_failed",
                                                  "dp.net.drop.arp_evicted"))
                return (queued, out) if queued == out else None
            queued, _ = wait_for("every frame the ARP queue took released or dropped",
                                 arp_balance, timeout_s=30)
            end = dp.counters()
            trouble = {n: delta(base, end, n) for n in TX_TROUBLE}
            assert not any(trouble.values()), f"tx frames lacked an mbuf or a slot: {trouble}"

            # An ordinary handshake again (no cookie), then the SYN queue measured by filling it.
            ordinary = dp.counters()
            checks.linux.served(0xAF7E5)
            dp.wait_counter("dp.tcp.passive_opens", counter(ordinary, "dp.tcp.passive_opens") + 1)
            served = dp.counters()
            assert delta(ordinary, served, "dp.tcp.syn_cookies_sent") == 0
            checks.syn_queue_empty()
            print(f"ok after the flood: {half_opens} half-open blocks timed out "
                  f"({time.monotonic() - flood_started:.0f} s after it began), gauges "
                  f"{baseline}, ARP queue balanced ({queued} frames), tx trouble {trouble}, an "
                  f"ordinary handshake, the SYN queue empty ({SYN_QUEUE} blocks then a cookie)",
                  flush=True)
        except BaseException:
            for proc in (steady, storm):
                if proc is not None:
                    proc.kill()
            if flood is not None:
                flood.proc.kill()
                flood.proc.wait()
            dp.dump_logs()
            raise
        finally:
            wire.close()
        dp.finish()
    print(f"1 passed, 0 failed ({time.monotonic() - started:.0f} s)")


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "--flood":
        return flood_main(*sys.argv[2:6], int(sys.argv[6]))
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    reason = skip_reason() or (None if conf is not None else "needs python3-scapy")
    if reason:
        print(f"skipped: {reason}")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        run(*sys.argv[1:4], tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

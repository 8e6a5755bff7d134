#!/usr/bin/python3
"""Bulk TCP between Linux and Herald's own stack (herald-tcpbulk on net_af_packet over a veth
whose peer end is in a network namespace this test makes and always deletes), byte-exact both
ways, with the stack's impairment layer off and on:

1. Linux -> stack (sink) and stack -> Linux (source), 16 MiB each, SHA-256 of both ends equal;
   window scaling and SACK in effect (the Linux socket's TCP_INFO: our wscale 7 seen).
2. The same with impairment on both rx and tx (1% drop, 0.5% duplicate, 1% reorder, 0.1%
   corrupt): still byte-exact; the stack's counters show the retransmissions really happened
   (source: segments_retransmitted > 0; sink: out-of-order segments held) and corrupted frames
   dropped on their checksums (dp.net.drop.*_bad_checksum > 0); Linux counts the corrupted
   frames we sent as checksum errors (Tcp InCsumErrors). Linux -> stack: our D-SACKs (RFC
   2883) for the duplicates Linux resent reach it (TcpExt TCPDSACKRecv > 0).
3. Zero window both ways: Linux stops reading for 2.5 s while the stack sources (our persist
   timer probes: window_probes > 0, then the transfer resumes and completes), and the stack's
   sink stops reading for 2.5 s (Linux probes our zero window: TcpExt TCPWinProbe > 0; window
   updates follow the resume).

Root only (namespaces, veth, af_packet): exits 77 (skipped) otherwise.
Usage: dpdk_tcp_bulk.py <herald-tcpbulk>
This file is also the Linux peer (run inside the namespace): dpdk_tcp_bulk.py --peer ...
"""
import argparse
import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time

PID = os.getpid() % 100000
NS = f"htb{PID}"
HOST_IF = f"htbh{PID}"  # DPDK's port (af_packet) on the host side
NS_IF = f"htbn{PID}"
STACK_IP = "10.207.0.1"
NS_IP = "10.207.0.2"
MIB = 1 << 20
BULK_BYTES = 16 * MIB
IMPAIR = ["rx.drop_ppm=10000", "rx.duplicate_ppm=5000", "rx.reorder_ppm=10000",
          "rx.corrupt_ppm=1000", "tx.drop_ppm=10000", "tx.duplicate_ppm=5000",
          "tx.reorder_ppm=10000", "tx.corrupt_ppm=1000", "seed=7"]

# ----------------------------------------------------------------------------- the Linux peer


def pattern_chunks(nbytes, seed):
    rng = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(left, MIB)
        yield rng.randbytes(n)
        left -= n


def netstat():
    """This namespace's TcpExt and Tcp counters (/proc/net is per network namespace)."""
    out = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with open(path) as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[0::2], lines[1::2]):
            prefix = names.split(":")[0]
            for k, v in zip(names.split()[1:], values.split()[1:]):
                out[f"{prefix}.{k}"] = int(v)
    return out


def tcp_info(sock):
    """Window scales and options the connection agreed on (struct tcp_info's first bytes)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    options, scales = raw[5], raw[6]
    return {"snd_wscale": scales & 15, "rcv_wscale": scales >> 4,
            "timestamps": bool(options & 1), "sack": bool(options & 2),
            "wscale": bool(options & 4), "total_retrans": struct.unpack_from("I", raw, 100)[0]}


def counters_delta(before, after, keys):
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


NETSTAT_KEYS = ["TcpExt.TCPWinProbe", "Tcp.InCsumErrors", "Tcp.RetransSegs",
                "TcpExt.TCPToZeroWindowAdv", "TcpExt.TCPFromZeroWindowAdv",
                # RFC 2883: the D-SACKs our stack sends, and what Linux made of them.
                "TcpExt.TCPDSACKRecv", "TcpExt.TCPDSACKOfoRecv", "TcpExt.TCPDSACKUndo",
                "TcpExt.TCPDSACKIgnoredNoUndo", "TcpExt.TCPDSACKIgnoredOld",
                "TcpExt.TCPSpuriousRtxHostQueues", "TcpExt.TCPLossUndo",
                # Where Linux's resends came from.
                "TcpExt.TCPLossProbes", "TcpExt.TCPTimeouts", "TcpExt.TCPFastRetrans",
                "TcpExt.TCPSlowStartRetrans", "TcpExt.TCPSackRecovery", "TcpExt.TCPSACKReorder"]


def peer_client(args):
    """Connects to the stack: `send` streams args.bytes then reads to EOF; `recv` reads to EOF
    (optionally pausing). Prints one JSON line."""
    before = netstat()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.settimeout(args.timeout)
    start = time.monotonic()
    sock.connect((args.host, args.port))
    info = tcp_info(sock)
    digest = hashlib.sha256()
    sent = received = 0
    if args.role == "echo":
        # Send from a thread while reading the echo here: the stack's echo is back-pressured by
        # our reading, ours by its window, so neither side may wait for the other to finish.
        import threading

        def send_all():
            for chunk in pattern_chunks(args.bytes, args.seed):
                sock.sendall(chunk)
        sender = threading.Thread(target=send_all)
        sender.start()
        # No half-close: the Transport ends a connection on the peer's FIN (as the dataplane
        # does), so the echo must be all back before we close.
        while received < args.bytes:
            data = sock.recv(262144)
            if not data:
                break
            digest.update(data)
            received += len(data)
        sender.join()
        sent_digest = hashlib.sha256()
        for chunk in pattern_chunks(args.bytes, args.seed):
            sent_digest.update(chunk)
        assert sent_digest.hexdigest() == digest.hexdigest(), "echo differs"
    elif args.role == "send":
        for chunk in pattern_chunks(args.bytes, args.seed):
            digest.update(chunk)
            sock.sendall(chunk)
            sent += len(chunk)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    else:
        paused = False
        while True:
            if args.pause_s and not paused and received >= args.pause_after:
                paused = True
                time.sleep(args.pause_s)  # our window closes: the stack must probe
            data = sock.recv(262144)
            if not data:
                break
            digest.update(data)
            received += len(data)
    seconds = time.monotonic() - start
    final = tcp_info(sock)
    sock.close()
    nbytes = sent or received
    print(json.dumps({"bytes": nbytes, "sha256": digest.hexdigest(), "seconds": seconds,
                      "mbit_s": nbytes * 8 / seconds / 1e6, "tcp_info": info,
                      "total_retrans": final["total_retrans"],
                      "netstat": counters_delta(before, netstat(), NETSTAT_KEYS)}))


def peer_server(args):
    """Linux's own counterpart of herald-tcpbulk (the baseline): one connection, sink or
    source, hashing what it reads. Prints one JSON line."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    start = time.monotonic()
    digest = hashlib.sha256()
    nbytes = 0
    if args.role == "sink":
        while True:
            data = conn.recv(262144)
            if not data:
                break
            digest.update(data)
            nbytes += len(data)
    else:
        for chunk in pattern_chunks(args.bytes, args.seed):
            digest.update(chunk)
            conn.sendall(chunk)
            nbytes += len(chunk)
    conn.close()
    seconds = time.monotonic() - start
    print(json.dumps({"bytes": nbytes, "sha256": digest.hexdigest(), "seconds": seconds}))


def peer_main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--peer", choices=["client", "server"], required=True)
    p.add_argument("--role", choices=["send", "recv", "echo", "sink", "source"], required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--pause-after", type=int, default=0)
    p.add_argument("--pause-s", type=float, default=0)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args(argv)
    if args.peer == "client":
        peer_client(args)
    else:
        peer_server(args)


# ----------------------------------------------------------------------------- the test


def sh(cmd, check=True):
    result = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd}: {result.returncode}\n{result.stdout}{result.stderr}")
    return result


# Turns a veth's transmit checksum offload (and TSO with it) off, so the frames af_packet reads
# carry complete checksums and are at most one MTU (a veth otherwise passes CHECKSUM_PARTIAL
# super-segments). There is no ethtool binary here: the ioctl directly.
TX_OFF_SCRIPT = r"""
import ctypes, fcntl, socket, struct, sys
for cmd in (0x17, 0x1f):  # ETHTOOL_STXCSUM, ETHTOOL_STSO
    value = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
    ifr = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
        except OSError:
            if cmd == 0x17:
                raise
"""


def make_namespace(ns, host_if, ns_if, ns_ip):
    delete_namespace(ns, host_if)
    sh(f"ip netns add {ns}")
    sh(f"ip link add {host_if} type veth peer name {ns_if}")
    sh(f"ip link set {ns_if} netns {ns}")
    sh(f"sysctl -qw net.ipv6.conf.{host_if}.disable_ipv6=1", check=False)
    sh(f"ip link set {host_if} up")
    sh(f"ip netns exec {ns} ip link set lo up")
    sh(f"ip netns exec {ns} ip addr add {ns_ip}/24 dev {ns_if}")
    sh(f"ip netns exec {ns} ip link set {ns_if} up")
    sh(f"ip netns exec {ns} /usr/bin/python3 -c '{TX_OFF_SCRIPT}' {ns_if}")


def delete_namespace(ns, host_if):
    sh(f"ip netns del {ns}", check=False)
    sh(f"ip link del {host_if}", check=False)


class Tool:
    """herald-tcpbulk on the host end of the veth, one run (one or more connections)."""

    def __init__(self, binary, listen_port, mode, extra=(), tag="t", host_if=HOST_IF,
                 address=STACK_IP):
        self.log_path = f"/tmp/htb{PID}-{tag}.log"
        self.log = open(self.log_path, "w")
        cmd = [binary, "--port", f"net_af_packet0,iface={host_if}", "--address",
               f"{address}/24", "--file-prefix", f"htb{PID}{tag}", "--listen-port",
               str(listen_port), "--mode", mode, "--min-rto-ms", "200", "--timeout-s", "90",
               *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.monotonic() + 30
        while "listening on" not in open(self.log_path).read():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"herald-tcpbulk did not start:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self):
        return open(self.log_path).read()[-4000:]

    def result(self, timeout=90):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"herald-tcpbulk did not finish:\n{self.logs()}")
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"herald-tcpbulk exited {self.proc.returncode}: {out}\n"
                                 f"{self.logs()}")
        return lines[-1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        text = open(self.log_path).read()
        os.unlink(self.log_path)
        # Sanitizer builds: UBSan reports do not change the exit code.
        for needle in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
            assert needle not in text, f"herald-tcpbulk: {needle}\n{text[-4000:]}"


def peer(ns, *args, timeout=90):
    cmd = ["ip", "netns", "exec", ns, "/usr/bin/python3", os.path.abspath(__file__), "--peer",
           "client", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"peer {args}: {r.returncode}\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def transfer(binary, direction, impair, port, tag, tool_extra=(), peer_extra=()):
    """One connection: direction 'up' (Linux sends, stack sinks) or 'down' (stack sources).
    Returns (tool's JSON, peer's JSON), digests already compared."""
    mode = "sink" if direction == "up" else "source"
    extra = [str(x) for x in tool_extra]
    if direction == "down":
        extra += ["--bytes", str(BULK_BYTES), "--seed", "3"]
    for kv in impair:
        extra += ["--impair", kv]
    tool = Tool(binary, port, mode, extra, tag=tag)
    try:
        role = ["--role", "send", "--bytes", BULK_BYTES, "--seed", 5] if direction == "up" \
            else ["--role", "recv"]
        linux = peer(NS, "--host", STACK_IP, "--port", port, *role, *peer_extra)
        ours = tool.result()
    finally:
        tool.stop()
    assert ours["ok"], ours
    assert linux["bytes"] == BULK_BYTES and ours["bytes"] == BULK_BYTES, (linux, ours)
    assert linux["sha256"] == ours["sha256"], f"stream differs: {linux} {ours}"
    info = linux["tcp_info"]
    # RFC 7323 window scaling both ways (ours is TcpConfig::window_scale = 7), SACK, timestamps.
    assert info["wscale"] and info["snd_wscale"] == 7 and info["rcv_wscale"] > 0, info
    assert info["sack"] and info["timestamps"], info
    print(f"  {direction:4} impair={'on ' if impair else 'off'} {BULK_BYTES >> 20} MiB "
          f"ours {ours['mbit_s']:.0f} Mbit/s, linux {linux['mbit_s']:.0f} Mbit/s, "
          f"retransmitted ours {ours['tcp']['segments_retransmitted']} "
          f"linux {linux['total_retrans']} (our RTOs {ours['tcp']['rto_fired']}), bad checksums ours "
          f"{ours['net_drop'].get('l4_bad_checksum', 0)} linux "
          f"{linux['netstat']['Tcp.InCsumErrors']}", flush=True)
    return ours, linux


def run(binary):
    port = 5001
    # 1. Clean link, both directions.
    for direction in ("up", "down"):
        ours, _ = transfer(binary, direction, [], port, f"c{direction}")
        assert ours["impair_rx"]["frames"] == 0 and ours["impair_tx"]["frames"] == 0, ours
        port += 1

    # Echo: 4 MiB sent and read back at once, byte-exact (the peer compares).
    tool = Tool(binary, port, "echo", tag="echo")
    try:
        linux = peer(NS, "--host", STACK_IP, "--port", port, "--role", "echo", "--bytes",
                     4 * MIB, "--seed", 9)
        ours = tool.result()
    finally:
        tool.stop()
    assert ours["ok"] and ours["bytes"] == 4 * MIB == linux["bytes"], (ours, linux)
    assert ours["sha256"] == linux["sha256"], (ours, linux)
    print(f"  echo 4 MiB ok ({linux['seconds']:.2f} s)", flush=True)
    port += 1

    # 2. Impairment on rx and tx.
    ours, linux = transfer(binary, "up", IMPAIR, port, "iu")
    port += 1
    rx = ours["impair_rx"]
    assert rx["dropped"] > 0 and rx["duplicated"] > 0 and rx["reordered"] > 0, rx
    assert rx["corrupted"] > 0, rx
    # Linux resent what our rx side lost; we held what arrived out of order and dropped what
    # was corrupted on its checksum (the IP layer verifies in software).
    assert linux["total_retrans"] > 0, linux
    tcp = ours["tcp"]
    assert tcp["ooo_segments"] > 0, tcp
    assert tcp["data_duplicate"] + tcp["drop_out_of_window"] > 0, tcp  # the duplicates
    bad = ours["net_drop"]
    assert bad.get("l4_bad_checksum", 0) + bad.get("ipv4_bad_checksum", 0) > 0, bad
    # RFC 2883: the duplicates Linux resent were reported back as D-SACKs, and Linux took them
    # (the rest of these counters is what Linux did with them: printed, not asserted).
    ns = linux["netstat"]
    print("  up   impair=on  linux " + ", ".join(
        f"{k.split('.')[1]} {v}" for k, v in ns.items() if k != "Tcp.InCsumErrors") +
        f"; ours dsack_sent {tcp['dsack_sent']}", flush=True)
    assert tcp["dsack_sent"] > 0, tcp
    assert ns["TcpExt.TCPDSACKRecv"] > 0, ns

    ours, linux = transfer(binary, "down", IMPAIR, port, "id")
    port += 1
    assert ours["impair_tx"]["dropped"] > 0 and ours["impair_tx"]["corrupted"] > 0, ours
    tcp = ours["tcp"]
    assert tcp["segments_retransmitted"] > 0 and tcp["bytes_retransmitted"] > 0, tcp
    assert tcp["fast_retransmits"] + tcp["sack_hole_retransmits"] > 0, tcp
    # The frames we corrupted on tx failed Linux's TCP/IP checksums.
    assert linux["netstat"]["Tcp.InCsumErrors"] > 0, linux

    # 3. Zero windows. Linux stops reading (a small receive buffer so its window closes): our
    # persist timer probes, then the stream resumes and completes.
    ours, linux = transfer(binary, "down", [], port, "zd",
                           peer_extra=["--rcvbuf", 65536, "--pause-after", 2 * MIB,
                                       "--pause-s", 2.5])
    port += 1
    assert ours["tcp"]["window_probes"] > 0, ours["tcp"]
    assert linux["netstat"]["TcpExt.TCPToZeroWindowAdv"] > 0, linux
    # Our sink stops reading: Linux sees our zero window and probes it; our window update after
    # the resume restarts the stream.
    ours, linux = transfer(binary, "up", [], port, "zu",
                           tool_extra=["--pause-after-bytes", 2 * MIB, "--pause-ms", 2500])
    assert ours["paused"], ours
    assert linux["netstat"]["TcpExt.TCPWinProbe"] > 0, linux
    assert ours["tcp"]["window_updates"] > 0, ours["tcp"]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[1:])
        return 0
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces, veth, af_packet)")
        return 77
    if subprocess.run("ip netns list", shell=True, capture_output=True).returncode != 0:
        print("SKIP: no network namespaces here")
        return 77
    binary = os.path.abspath(sys.argv[1])
    start = time.monotonic()
    # meson's timeout sends SIGTERM: unwind through the finally blocks (tools stopped, the
    # namespace and veth deleted) instead of dying with them in place.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("SIGTERM"))
    try:
        make_namespace(NS, HOST_IF, NS_IF, NS_IP)
        run(binary)
    finally:
        delete_namespace(NS, HOST_IF)
    print(f"OK ({time.monotonic() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

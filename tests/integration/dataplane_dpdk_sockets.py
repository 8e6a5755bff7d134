#!/usr/bin/python3
"""Linux's own TCP (Python sockets) and curl against herald-dataplane's DPDK stack
(net_af_packet over a veth into a namespace, see dataplane_dpdk_netns.py); each case checks what
the Linux peer sees (return values, bytes, socket state) and the stack's counters, then that a
real TLS client is still served:

- handshake: a Python TLS client, Ping -> Pong (nonce echoed) over Herald's TCP.
- half_close: shutdown(SHUT_WR) -> the stack closes too; Linux reads EOF, ends in TIME_WAIT.
- rst: SO_LINGER 0 on an established TLS connection -> RST; the stack counts it, no RST back.
- close_together: a protocol error sent with our FIN -> both sides close at once: Linux reads
  the server's bytes and EOF, never ECONNRESET.
- time_wait_reuse: the stack closes first and holds TIME-WAIT; Linux reconnects from the same
  port at once: the newer SYN reopens the tuple (RFC 6191) and is served.
- short_connections: 300 connect/close in a row and 40 TLS handshakes at once: all served, the
  stack's transport layer opened and closed each.
- zero_window: a 4 KiB receive buffer and 600 pipelined Pings nobody reads: the stack meets a
  zero window and probes it (dp.tcp.window_probes); then every Pong arrives, in order.
- curl: `curl -k https://stack:port/` offers ALPN h2/http1.1: refused in the handshake with a
  no_application_protocol alert (exit 35, dp.tls.handshake_failed); with --no-alpn the handshake
  completes and "GET / ..." gets a clean protocol-error close (the dataplane speaks the chat
  protocol, not HTTP): no hang, counted (dp.session.*too_large).

Root only (namespace, veth, af_packet): exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_sockets.py <herald-controlplane> <herald-dataplane>
"""
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

from dataplane_dpdk_netns import DpdkNode, Link, skip_reason, wait_for
from herald_node import metric

# A size-prefixed Frame{Ping{nonce, time_ms: 7}} as flatc 2.0 builds it from schemas/wire.fbs;
# the nonce's 8 bytes (little-endian) are at NONCE_AT.
PING_TEMPLATE = bytes.fromhex(
    "3c000000140000004852 4c440000000008000c000700080008000000000000110c000000080014000400"
    "0c0008000000414243444546474807000000000000 00".replace(" ", ""))
NONCE_AT = PING_TEMPLATE.index(b"ABCDEFGH")
TCP_STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE",
              8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING"}


def ping_frame(nonce):
    return PING_TEMPLATE[:NONCE_AT] + struct.pack("<Q", nonce) + PING_TEMPLATE[NONCE_AT + 8:]


def tls_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tcp_state(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return TCP_STATES.get(info[0], str(info[0]))


def read_frames(tls, count, timeout_s=20):
    """`count` frames (u32 LE length + FlatBuffer) from a TLS socket, as bytes each."""
    tls.settimeout(timeout_s)
    buffer = b""
    frames = []
    while len(frames) < count:
        while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack_from("<I", buffer)[0]:
            length = struct.unpack_from("<I", buffer)[0]
            frames.append(buffer[4:4 + length])
            buffer = buffer[4 + length:]
        if len(frames) >= count:
            break
        chunk = tls.recv(65536)
        assert chunk, f"EOF after {len(frames)} of {count} frames"
        buffer += chunk
    return frames


class Case:
    def __init__(self, dp, link):
        self.dp = dp
        self.link = link
        self.addr = (link.stack_ip, dp.chat_port)

    def tls_connect(self, rcvbuf=None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(self.addr)
        return tls_context().wrap_socket(sock)

    def served(self, nonce=0x5EED):
        """A real TLS client still gets its Pong."""
        with self.tls_connect() as tls:
            assert tls.version() == "TLSv1.3", tls.version()
            tls.sendall(ping_frame(nonce))
            (pong,) = read_frames(tls, 1)
            assert struct.pack("<Q", nonce) in pong, pong.hex()

    def handshake(self):
        before = self.dp.counter("dp.session.pings")
        self.served(0x1234567890)
        self.dp.wait_counter("dp.session.pings", before + 1)
        self.dp.wait_counter("dp.tls.handshake_ok", 1)

    def half_close(self):
        accepted_before = self.dp.counter("dp.dpdk.transport.accepted")
        with socket.create_connection(self.addr, timeout=10) as s:
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b"", "bytes after our FIN, or no EOF"
            local_port = s.getsockname()[1]
            # We sent the first FIN and got the stack's: Linux moved the connection to a
            # TIME_WAIT mini-socket (the descriptor's own socket reads CLOSE).
            wait_for("TIME_WAIT", lambda: self.ss_state(local_port) == "TIME-WAIT")
            assert tcp_state(s) == "CLOSE", tcp_state(s)
        self.dp.wait_counter("dp.dpdk.transport.accepted", accepted_before + 1)
        self.dp.wait_counter("dp.dpdk.transport.close.peer_closed", 1)

    def ss_state(self, local_port):
        """The state `ss` shows for our connection from local_port to the stack ('' if none)."""
        out = subprocess.run(["ss", "-tanH", "dst", f"{self.link.stack_ip}:{self.dp.chat_port}",
                              "sport", f"= :{local_port}"], capture_output=True, text=True)
        return out.stdout.split()[0] if out.stdout.split() else ""

    def rst(self):
        rst_before = self.dp.counter("dp.tcp.rst_received")
        tls = self.tls_connect()
        tls.sendall(ping_frame(77))
        read_frames(tls, 1)
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tls.close()  # no close_notify reaches the stack before the RST: abortive close
        self.dp.wait_counter("dp.tcp.rst_received", rst_before + 1)
        assert self.dp.counter("dp.tcp.drop_rst_out_of_window") == 0

    def close_together(self):
        tls = self.tls_connect()
        errors_before = self.frame_errors()
        # A frame whose length prefix is beyond max_frame_bytes, then our FIN at once.
        tls.sendall(struct.pack("<I", 1 << 30) + b"xxxx")
        tls.settimeout(10)
        # The TCP write side only (SSLSocket.shutdown would drop the TLS state): no
        # close_notify, the FIN right behind the bad frame.
        socket.socket.shutdown(tls, socket.SHUT_WR)
        received = b""
        try:
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ssl.SSLError as e:
            # The stack closed right after its Error frame: EOF without close_notify is
            # what TLS 1.3 peers often do; anything but a reset is fine.
            assert "EOF" in str(e) or "eof" in str(e).lower(), e
        except ConnectionResetError as e:
            raise AssertionError(f"reset instead of a close: {e}")
        assert len(received) >= 4, received
        local_port = tls.getsockname()[1]
        # Closed on both sides: the descriptor's socket is CLOSE, and ss has no half-open
        # state (FIN-WAIT/CLOSE-WAIT/LAST-ACK) left for it.
        wait_for("both sides closed", lambda: tcp_state(tls) == "CLOSE" and
                 self.ss_state(local_port) in ("", "TIME-WAIT"))
        tls.close()
        wait_for("a frame error counted", lambda: self.frame_errors() > errors_before)

    def time_wait_reuse(self):
        """The stack closes first (a fatal frame) and holds TIME-WAIT; Linux reconnects from the
        same port at once: its SYN (newer timestamp) reopens the tuple (RFC 6191,
        dp.tcp.time_wait_reused) and the new connection is served."""
        reused_before = self.dp.counter("dp.tcp.time_wait_reused")
        entered_before = self.dp.counter("dp.tcp.time_wait_entered")
        tls = self.tls_connect()
        port = tls.getsockname()[1]
        tls.sendall(struct.pack("<I", 1 << 30) + b"xxxx")
        tls.settimeout(10)
        try:
            while tls.recv(4096):
                pass
        except ssl.SSLError:
            pass  # EOF without close_notify
        tls.close()  # our FIN after the stack's: the stack ends in TIME-WAIT, Linux in CLOSED
        self.dp.wait_counter("dp.tcp.time_wait_entered", entered_before + 1)
        wait_for("Linux's side gone", lambda: self.ss_state(port) == "")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The veth's own address, not the wildcard: a wildcard bind also conflicts with any
        # other socket on this port (another test's connection on another interface).
        sock.bind((self.link.peer_ip, port))
        sock.settimeout(10)
        sock.connect(self.addr)
        with tls_context().wrap_socket(sock) as again:
            again.sendall(ping_frame(0x7E))
            (pong,) = read_frames(again, 1)
            assert struct.pack("<Q", 0x7E) in pong
        self.dp.wait_counter("dp.tcp.time_wait_reused", reused_before + 1)
        return f"port {port} reused while the stack held TIME-WAIT"

    def frame_errors(self):
        """The session layer's "frame over max_frame_bytes" count (a Prometheus name under
        dp.session.*; the section between is the decoder's)."""
        values = self.dp.counters()
        names = [k for k in values if k.startswith("herald_dp_session_") and "too_large" in k]
        assert names, "no dp.session.*too_large counter published"
        return sum(values[k] for k in names)

    def short_connections(self):
        accepted_before = self.dp.counter("dp.dpdk.transport.accepted")
        for i in range(300):
            with socket.create_connection(self.addr, timeout=10):
                pass
        threads, failures = [], []

        def one(i):
            try:
                self.served(1000 + i)
            except Exception as e:  # noqa: BLE001 (collected, reported below)
                failures.append(f"{i}: {e!r}")
        for i in range(40):
            threads.append(threading.Thread(target=one, args=(i,)))
            threads[-1].start()
        for t in threads:
            t.join(60)
        assert not failures, failures
        self.dp.wait_counter("dp.dpdk.transport.accepted", accepted_before + 340)
        # Each connection the transport accepted also ended (no block left behind).
        wait_for("every connection closed", lambda: self.open_connections() == 0)

    def open_connections(self):
        values = self.dp.counters()
        accepted = metric(values, "dp.dpdk.transport.accepted")
        closed = sum(v for k, v in values.items()
                     if k.startswith("herald_dp_dpdk_transport_close_"))
        return accepted - closed

    def zero_window(self):
        probes_before = self.dp.counter("dp.tcp.window_probes")
        pings_before = self.dp.counter("dp.session.pings")
        count = 600
        tls = self.tls_connect(rcvbuf=4096)
        tls.settimeout(30)
        tls.sendall(b"".join(ping_frame(0x7A000000 + i) for i in range(count)))
        # We do not read: the Pongs fill Linux's small receive buffer and the window closes.
        # The stack must wait and probe, not drop or reset.
        wait_for("the stack's zero-window probes",
                 lambda: self.dp.counter("dp.tcp.window_probes") > probes_before)
        ss = subprocess.run(["ss", "-tnH", "dst", f"{self.link.stack_ip}:{self.dp.chat_port}"],
                            capture_output=True, text=True).stdout
        recv_q = max((int(line.split()[1]) for line in ss.splitlines() if line.strip()),
                     default=0)
        assert recv_q > 0, f"ss shows no queued bytes:\n{ss}"
        assert tcp_state(tls) == "ESTABLISHED"
        frames = read_frames(tls, count, timeout_s=30)
        for i, frame in enumerate(frames):
            assert struct.pack("<Q", 0x7A000000 + i) in frame, (i, frame.hex())
        tls.close()
        self.dp.wait_counter("dp.session.pings", pings_before + count)
        return f"{self.dp.counter('dp.tcp.window_probes') - probes_before:.0f} probes"

    def curl_once(self, *flags):
        started = time.monotonic()
        r = subprocess.run(["curl", "-k", "-v", "-sS", "--max-time", "20", *flags,
                            f"https://{self.link.stack_ip}:{self.dp.chat_port}/"],
                           capture_output=True, text=True)
        took_s = time.monotonic() - started
        assert took_s < 15, f"curl took {took_s:.1f} s"
        return r.returncode, r.stdout + r.stderr

    def curl(self):
        # As curl comes: ALPN h2/http1.1, which the chat port does not speak: refused in the
        # handshake with a TLS alert (no_application_protocol), exit 35, counted.
        failed_before = self.dp.counter("dp.tls.handshake_failed")
        code, text = self.curl_once()
        assert code == 35 and "no application protocol" in text, (code, text)
        self.dp.wait_counter("dp.tls.handshake_failed", failed_before + 1)
        # Without ALPN the handshake completes and curl's "GET / HTTP/1.1" is read as a frame
        # whose length prefix ("GET ") is far over max_frame_bytes: an Error frame and a close.
        errors_before = self.frame_errors()
        code, text = self.curl_once("--no-alpn")
        assert "SSL connection using TLSv1.3" in text, text
        # 1: HTTP/0.9 refused, 8: weird reply, 52: empty reply, 56: recv failure. Not 28
        # (timeout: a hang), not 35 (TLS failed), not 7 (no connection).
        assert code in (1, 8, 52, 56), (code, text)
        wait_for("curl's request counted as a frame error",
                 lambda: self.frame_errors() > errors_before)
        return f"curl exit 35 with ALPN (alert), {code} without (protocol error)"


def run(controlplane, dataplane, tmp):
    with Link("s", 205) as link, DpdkNode(controlplane, dataplane, tmp, link, extra={
            "limits": {"max_connections": 1000, "handshake_timeout_ms": 60000}}) as dp:
        try:
            case = Case(dp, link)
            for name in ("handshake", "half_close", "rst", "close_together", "time_wait_reuse",
                         "short_connections", "zero_window", "curl"):
                started = time.monotonic()
                note = getattr(case, name)()
                case.served()
                print(f"ok {name} ({time.monotonic() - started:.1f} s)"
                      + (f": {note}" if note else ""), flush=True)
            values = dp.counters()
            for name in ("dp.net.drop.l4_bad_checksum", "dp.tcp.drop_bad_checksum"):
                assert metric(values, name) == 0, name
        except BaseException:
            dp.dump_logs()
            raise
        dp.finish()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    reason = skip_reason()
    if reason is None and (shutil.which("curl") is None or shutil.which("ss") is None):
        reason = "needs curl and ss"
    if reason:
        print(f"skipped: {reason}")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        run(sys.argv[1], sys.argv[2], tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

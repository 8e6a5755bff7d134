#!/usr/bin/python3
"""herald-dataplane with `backend: dpdk` on net_af_packet over a veth pair whose peer is in a
network namespace this test makes (and deletes); real Linux clients in that namespace talk to
Herald's own TCP/IP stack:

1. `openssl s_client` completes a TLS handshake with the chat port.
2. Two `herald-chat` clients (registered through the public API) log in over the DPDK stack;
   Alice's message reaches Bob, Bob's client answers with a Delivered receipt that reaches
   Alice.
3. The stack's counters (dp.net.*, dp.tcp.*, dp.dpdk.*) are in the control plane's /metrics.

The control plane runs on the host; the namespace reaches its public API over a second veth
pair (kernel to kernel), since the first one belongs to DPDK.

Root only (namespaces, veth, af_packet): exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_interop.py <herald-controlplane> <herald-dataplane> <herald-chat>
"""
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile

import herald_node
from herald_node import assert_no_sanitizer_reports, metric, metrics, stop_on_sigterm

DEADLINE_S = 30
wait_for = functools.partial(herald_node.wait_for, timeout_s=DEADLINE_S, poll_s=0.1)
PID = os.getpid() % 100000
NS = f"hdpt{PID}"
DATA_HOST_IF = f"hdd{PID}"  # DPDK's port (af_packet) on the host side
DATA_NS_IF = f"hdn{PID}"
CTL_HOST_IF = f"hdc{PID}"   # the kernel path to the control plane's public API
CTL_NS_IF = f"hdm{PID}"
STACK_IP = "10.203.0.1"     # dataplane.dpdk.address
NS_DATA_IP = "10.203.0.2"
HOST_CTL_IP = "10.204.0.1"
NS_CTL_IP = "10.204.0.2"


def sh(cmd, check=True):
    result = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd}: {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def in_ns(cmd):
    return f"ip netns exec {NS} {cmd}"


# Turns the namespace's veth transmit checksum offload (and TSO with it) off, so the frames
# af_packet reads carry complete checksums (a veth otherwise passes CHECKSUM_PARTIAL packets,
# which a raw socket sees unsummed). There is no ethtool binary here: the ioctl directly.
TX_OFF_SCRIPT = r"""
import ctypes, fcntl, socket, struct, sys
for cmd in (0x17, 0x1f):  # ETHTOOL_STXCSUM, ETHTOOL_STSO
    value = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
    ifr = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
        except OSError as e:
            if cmd == 0x17:
                raise
"""


def make_namespace():
    sh(f"ip netns del {NS}", check=False)
    sh(f"ip link del {DATA_HOST_IF}", check=False)
    sh(f"ip link del {CTL_HOST_IF}", check=False)
    sh(f"ip netns add {NS}")
    sh(f"ip link add {DATA_HOST_IF} type veth peer name {DATA_NS_IF}")
    sh(f"ip link add {CTL_HOST_IF} type veth peer name {CTL_NS_IF}")
    sh(f"ip link set {DATA_NS_IF} netns {NS}")
    sh(f"ip link set {CTL_NS_IF} netns {NS}")
    # The data side's host end has no address: its frames are DPDK's, not the host's.
    sh(f"sysctl -qw net.ipv6.conf.{DATA_HOST_IF}.disable_ipv6=1", check=False)
    sh(f"ip link set {DATA_HOST_IF} up")
    sh(f"ip addr add {HOST_CTL_IP}/24 dev {CTL_HOST_IF}")
    sh(f"ip link set {CTL_HOST_IF} up")
    sh(in_ns("ip link set lo up"))
    sh(in_ns(f"ip addr add {NS_DATA_IP}/24 dev {DATA_NS_IF}"))
    sh(in_ns(f"ip link set {DATA_NS_IF} up"))
    sh(in_ns(f"ip addr add {NS_CTL_IP}/24 dev {CTL_NS_IF}"))
    sh(in_ns(f"ip link set {CTL_NS_IF} up"))
    sh(in_ns(f"/usr/bin/python3 -c '{TX_OFF_SCRIPT}' {DATA_NS_IF}"))


def delete_namespace():
    sh(f"ip netns del {NS}", check=False)
    sh(f"ip link del {DATA_HOST_IF}", check=False)
    sh(f"ip link del {CTL_HOST_IF}", check=False)


def tcp_connects_from_ns(port):
    r = subprocess.run(in_ns(f"/usr/bin/python3 -c 'import socket; socket.create_connection("
                             f"(\"{STACK_IP}\", {port}), timeout=2).close()'"),
                       shell=True, capture_output=True, text=True)
    return r.returncode == 0


def run(controlplane, dataplane, herald_chat, tmp):
    chat_port = herald_node.free_port()
    node = herald_node.Node(controlplane, tmp, extra_config={
        "controlplane": {"public_address": "0.0.0.0"},
        "limits": {"max_connections": 1000},
        "dataplane": {
            "backend": "dpdk", "listen_address": "0.0.0.0", "chat_port": chat_port,
            "workers": 1, "poll_mode": "adaptive", "adaptive_idle_polls": 200,
            "dpdk": {"ports": [f"net_af_packet0,iface={DATA_HOST_IF}"], "huge_pages": False,
                     "memory_mb": 256, "file_prefix": f"hdpt{PID}", "address": STACK_IP,
                     "prefix_length": 24, "rx_descriptors": 256, "tx_descriptors": 256,
                     "mempool_cache_size": 32},
        },
    })
    node.start()
    dp_log_path = os.path.join(tmp, "dataplane.log")
    dp_log = open(dp_log_path, "a")
    dp = subprocess.Popen([dataplane, "--config", node.config_path, "--data-dir", node.data_dir],
                          stdout=dp_log, stderr=dp_log)
    chats = []
    try:
        def dp_alive():
            if dp.poll() is not None:
                with open(dp_log_path) as f:
                    raise AssertionError(f"herald-dataplane exited {dp.returncode}:\n"
                                         f"{f.read()[-6000:]}")
            return True
        wait_for("the dataplane's worker",
                 lambda: dp_alive() and "dataplane.worker.started" in open(dp_log_path).read())
        # 1. TCP over Herald's stack from Linux (ARP, SYN, SYN-ACK, ACK, FIN).
        wait_for("a TCP connection from the namespace", lambda: tcp_connects_from_ns(chat_port))

        # 2. A TLS handshake from openssl.
        s_client = subprocess.run(
            in_ns(f"openssl s_client -connect {STACK_IP}:{chat_port} -servername herald "
                  "-brief"), shell=True, input="", capture_output=True, text=True, timeout=30)
        text = s_client.stdout + s_client.stderr
        assert "CONNECTION ESTABLISHED" in text and "Protocol version: TLSv1.3" in text, text

        # 3. Two people chatting from the namespace (registered from the host).
        common_host = [herald_chat, "--public", f"127.0.0.1:{node.public_port}",
                       "--chat", f"{STACK_IP}:{chat_port}", "--data-dir", node.data_dir,
                       "--profiles", os.path.join(tmp, "profiles")]
        accounts = {}
        for phone in ("+15550000071", "+15550000072"):
            out = subprocess.run(common_host + ["register", "--phone", phone, "--sms-log",
                                                os.path.join(node.data_dir, "sms.log")],
                                 capture_output=True, text=True, timeout=60)
            m = re.search(r"registered \S+: account (\S+),", out.stdout)
            assert m, out
            accounts[phone] = m.group(1)
        common_ns = ["ip", "netns", "exec", NS] + [
            herald_chat, "--public", f"{HOST_CTL_IP}:{node.public_port}",
            "--chat", f"{STACK_IP}:{chat_port}", "--data-dir", node.data_dir,
            "--profiles", os.path.join(tmp, "profiles")]
        bob_out = open(os.path.join(tmp, "bob.out"), "w+")
        bob = subprocess.Popen(common_ns + ["chat", "--phone", "+15550000072", "--to",
                                            accounts["+15550000071"]],
                               stdin=subprocess.PIPE, stdout=bob_out, stderr=subprocess.STDOUT,
                               text=True)
        chats.append(bob)
        wait_for("bob logged in", lambda: "logged in as" in open(bob_out.name).read())
        alice_out = open(os.path.join(tmp, "alice.out"), "w+")
        alice = subprocess.Popen(common_ns + ["chat", "--phone", "+15550000071", "--to",
                                              accounts["+15550000072"]],
                                 stdin=subprocess.PIPE, stdout=alice_out,
                                 stderr=subprocess.STDOUT, text=True)
        chats.append(alice)
        wait_for("alice logged in", lambda: "logged in as" in open(alice_out.name).read())
        alice.stdin.write("hello bob, over herald's own tcp\n")
        alice.stdin.flush()
        wait_for("bob got the message", lambda: "] hello bob, over herald's own tcp" in
                 open(bob_out.name).read())
        wait_for("alice's ServerAck", lambda: "(sent #" in open(alice_out.name).read())
        wait_for("alice got bob's Delivered receipt",
                 lambda: "(Delivered by" in open(alice_out.name).read())
        for c in chats:
            c.stdin.write("/quit\n")
            c.stdin.flush()
            c.wait(timeout=20)

        # 4. The stack's counters in the counters segment.
        values = wait_for("dp.dpdk.* in /metrics",
                          lambda: (lambda m: m if metric(m, "dp.dpdk.rx_packets") > 0 else None)(
                              metrics(node)))
        for name in ["dp.net.rx_delivered", "dp.net.arp_replies_sent", "dp.tcp.segments_in",
                     "dp.dpdk.tx_packets", "dp.dpdk.transport.accepted", "dp.tls.handshake_ok",
                     "dp.session.auth_ok"]:
            assert metric(values, name) > 0, (name, sorted(k for k in values if "dp_" in k)[:400])
        assert metric(values, "dp.net.drop.l4_bad_checksum") == 0, \
            metric(values, "dp.net.drop.l4_bad_checksum")
        print(f"ok: TCP + TLS from Linux over the DPDK stack; 1:1 with a receipt; "
              f"rx {metric(values, 'dp.dpdk.rx_packets'):.0f} tx "
              f"{metric(values, 'dp.dpdk.tx_packets'):.0f} frames")
    finally:
        for c in chats:
            if c.poll() is None:
                c.kill()
                c.wait()
        dp_status = stop_on_sigterm(dp, 30)
        node.stop()
    assert dp_status == 0, f"herald-dataplane on SIGTERM: {dp_status}"
    assert_no_sanitizer_reports([os.path.join(tmp, log) for log in ("node.log", "dataplane.log")])


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("skipped: needs root (network namespace, veth, af_packet)")
        return 77
    if shutil.which("ip") is None or shutil.which("openssl") is None:
        print("skipped: needs iproute2 and openssl")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        make_namespace()
        try:
            run(sys.argv[1], sys.argv[2], sys.argv[3], tmp)
        except AssertionError:
            for log in ("dataplane.log", "node.log", "alice.out", "bob.out"):
                path = os.path.join(tmp, log)
                if os.path.exists(path):
                    with open(path) as f:
                        print(f"--- {log}\n{f.read()[-4000:]}")
            raise
        finally:
            delete_namespace()
    return 0


if __name__ == "__main__":
    sys.exit(main())

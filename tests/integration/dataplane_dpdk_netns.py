"""Shared by the dataplane_dpdk_* tests: a veth pair whose one end is in a network namespace the
test makes (and always deletes), herald-dataplane with `backend: dpdk` running inside that
namespace on net_af_packet over its end, and herald-controlplane plus every Linux client (the
test process itself, curl, openssl, scapy) in the root namespace on the other end.

Why the dataplane, not the clients, is in the namespace: the test process then reaches the
control plane's admin and public APIs on loopback and the stack over the veth with no second
link and no `ip netns exec` per client; IPC is a unix socket path and the counters segment a
file, both of which cross network namespaces.
"""
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import herald_node
from herald_node import assert_no_sanitizer_reports, stop_on_sigterm

DEADLINE_S = 30
wait_for = functools.partial(herald_node.wait_for, timeout_s=DEADLINE_S, poll_s=0.1)

# Turns transmit checksum offload (and TSO with it) off on a veth end, so the frames af_packet
# reads on the other end carry complete checksums (a veth otherwise passes CHECKSUM_PARTIAL
# packets, which a raw socket sees unsummed). There is no ethtool binary here: the ioctl.
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


def sh(cmd, check=True):
    result = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd}: {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def skip_reason():
    """Why these tests cannot run here (None: they can): root, iproute2, netns support."""
    if os.geteuid() != 0:
        return "needs root (network namespace, veth, af_packet)"
    if shutil.which("ip") is None:
        return "needs iproute2"
    probe = f"hdprobe{os.getpid() % 100000}"
    r = subprocess.run(f"ip netns add {probe}", shell=True, capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a network namespace: {r.stderr.strip()}"
    subprocess.run(f"ip netns del {probe}", shell=True, capture_output=True)
    return None


class Link:
    """The namespace and the veth pair: `subnet` is the third octet of 10.<subnet>.0.0/24
    (distinct per test), names carry a tag and the pid so parallel checkouts do not collide."""

    def __init__(self, tag, subnet):
        pid = os.getpid() % 100000
        self.ns = f"hd{tag}{pid}"
        self.host_if = f"hd{tag}h{pid}"  # the Linux peer's end (root namespace)
        self.dp_if = f"hd{tag}d{pid}"    # DPDK's port (af_packet), inside the namespace
        self.stack_ip = f"10.{subnet}.0.1"
        self.peer_ip = f"10.{subnet}.0.2"
        self.prefix = f"10.{subnet}.0"

    def __enter__(self):
        # meson's timeout sends SIGTERM: unwind (with-blocks delete the namespace) instead of
        # dying on the spot and leaving it behind.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.delete()
        try:
            sh(f"ip netns add {self.ns}")
            sh(f"ip link add {self.host_if} type veth peer name {self.dp_if}")
            sh(f"ip link set {self.dp_if} netns {self.ns}")
            sh(f"ip netns exec {self.ns} ip link set lo up")
            sh(f"ip netns exec {self.ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
               check=False)
            # The namespace's end has no address: its frames are DPDK's, not Linux's.
            sh(f"ip netns exec {self.ns} ip link set {self.dp_if} up")
            sh(f"sysctl -qw net.ipv6.conf.{self.host_if}.disable_ipv6=1", check=False)
            sh(f"ip addr add {self.peer_ip}/24 dev {self.host_if}")
            sh(f"ip link set {self.host_if} up")
            sh(f"/usr/bin/python3 -c '{TX_OFF_SCRIPT}' {self.host_if}")
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc):
        self.delete()
        return False

    def delete(self):
        sh(f"ip netns del {self.ns}", check=False)  # takes the veth pair with it
        sh(f"ip link del {self.host_if}", check=False)
        # The EAL's runtime directory (its file prefix is the namespace's name): DPDK 22.11
        # leaves a few MB there after rte_eal_cleanup, on tmpfs.
        shutil.rmtree(f"/var/run/dpdk/{self.ns}", ignore_errors=True)

    def dpdk_config(self, chat_port, memory_mb=256):
        return {
            "backend": "dpdk", "listen_address": "0.0.0.0", "chat_port": chat_port,
            "workers": 1, "poll_mode": "adaptive", "adaptive_idle_polls": 200,
            "dpdk": {"ports": [f"net_af_packet0,iface={self.dp_if}"], "huge_pages": False,
                     "memory_mb": memory_mb, "file_prefix": self.ns, "address": self.stack_ip,
                     "prefix_length": 24, "rx_descriptors": 256, "tx_descriptors": 256,
                     "mempool_cache_size": 32},
        }

    def host_mac(self):
        with open(f"/sys/class/net/{self.host_if}/address") as f:
            return f.read().strip()

    def stack_mac(self):
        r = sh(f"ip netns exec {self.ns} cat /sys/class/net/{self.dp_if}/address")
        return r.stdout.strip()


class DataplaneRun:
    """herald-controlplane plus one herald-dataplane process run from `argv` (a prefix such as
    `ip netns exec NS` comes first): start, stop on SIGTERM, its log, the node's counters."""

    def __init__(self, controlplane, dataplane, tmp, config):
        self.tmp = tmp
        self.dataplane = dataplane
        self.node = herald_node.Node(controlplane, tmp, extra_config=config)
        self.dp = None
        self.dp_log_path = os.path.join(tmp, "dataplane.log")

    def start_dataplane(self, prefix=()):
        """The control plane, then the dataplane; returns once its worker started."""
        self.node.start()
        dp_log = open(self.dp_log_path, "a")
        self.dp = subprocess.Popen(
            [*prefix, self.dataplane, "--config", self.node.config_path, "--data-dir",
             self.node.data_dir], stdout=dp_log, stderr=dp_log)
        wait_for("the dataplane's worker",
                 lambda: self.alive() and "dataplane.worker.started" in self.dp_log())

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        """The dataplane's exit status on SIGTERM (0 when clean)."""
        status = None
        if self.dp is not None and self.dp.poll() is None:
            status = stop_on_sigterm(self.dp, 30)
        elif self.dp is not None:
            status = self.dp.returncode
        self.node.stop()
        return status

    def finish(self):
        """Every test's closing checks: the dataplane exits 0 on SIGTERM (a clean shutdown:
        loops stopped, pool freed) and no log holds a sanitizer report."""
        status = self.stop()
        if status != 0:
            raise AssertionError(f"herald-dataplane exited {status} on SIGTERM:\n"
                                 f"{self.dp_log()[-4000:]}")
        assert_no_sanitizer_reports(self.logs())

    def dp_log(self):
        with open(self.dp_log_path) as f:
            return f.read()

    def alive(self):
        if self.dp.poll() is not None:
            raise AssertionError(f"herald-dataplane exited {self.dp.returncode}:\n"
                                 f"{self.dp_log()[-6000:]}")
        return True

    def logs(self):
        return [self.node.log_path, self.dp_log_path]

    def counters(self):
        return herald_node.metrics(self.node)

    def counter(self, name):
        return herald_node.metric(self.counters(), name)

    def wait_counter(self, name, at_least, timeout_s=10):
        """Polls the counters segment (workers publish every ~100 ms) until `name` >= at_least;
        its value."""
        deadline = time.monotonic() + timeout_s
        value = self.counter(name)
        while value < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
            value = self.counter(name)
        assert value >= at_least, f"{name} = {value}, wanted >= {at_least}"
        return value

    def dump_logs(self):
        for path in self.logs():
            if os.path.exists(path):
                with open(path) as f:
                    print(f"--- {path}\n{f.read()[-4000:]}")


class DpdkNode(DataplaneRun):
    """herald-controlplane (root namespace, loopback APIs) and herald-dataplane (backend dpdk,
    in the link's namespace). `extra` merges into the config's sections, `dpdk_extra` into
    dataplane.dpdk."""

    def __init__(self, controlplane, dataplane, tmp, link, extra=None, dpdk_extra=None):
        self.link = link
        self.chat_port = herald_node.free_port()
        config = {"limits": {"max_connections": 1000},
                  "dataplane": link.dpdk_config(self.chat_port)}
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        config["dataplane"]["dpdk"].update(dpdk_extra or {})
        super().__init__(controlplane, dataplane, tmp, config)

    def __enter__(self):
        try:
            self.start_dataplane(("ip", "netns", "exec", self.link.ns))
            wait_for("a TCP connection to the stack", self.tcp_connects)
        except BaseException:
            self.stop()
            raise
        return self

    def tcp_connects(self):
        import socket
        try:
            socket.create_connection((self.link.stack_ip, self.chat_port), timeout=2).close()
            return True
        except OSError:
            return False


class MemifNode(DataplaneRun):
    """herald-controlplane and herald-dataplane (backend dpdk, one net_memif server port, one
    queue pair per worker), both in the root namespace: memif is a unix socket and shared
    memory, no link to make. herald-loadgen's DPDK client mode joins it as the memif client
    (loadgen_memif_args). `tag` names the EAL's file prefix (removed at exit); `dpdk_extra`
    merges into dataplane.dpdk, `dataplane_extra` into dataplane."""

    def __init__(self, controlplane, dataplane, tmp, tag, stack_ip, workers=1,
                 max_connections=2000, memory_mb=256, dpdk_extra=None, dataplane_extra=None):
        self.workers = workers
        self.stack_ip = stack_ip
        self.socket = os.path.join(tmp, "memif.sock")
        self.prefix = f"h{tag}{os.getpid()}"
        self.chat_port = herald_node.free_port()
        dpdk = {"ports": [f"net_memif0,role=server,socket={self.socket}"],
                "huge_pages": False, "memory_mb": memory_mb, "file_prefix": self.prefix,
                "address": stack_ip, "prefix_length": 24, "rx_descriptors": 1024,
                "tx_descriptors": 1024, "mempool_cache_size": 32,
                "rx_queues": workers, "tx_queues": workers}
        dpdk.update(dpdk_extra or {})
        section = {"backend": "dpdk", "listen_address": "0.0.0.0", "chat_port": self.chat_port,
                   "workers": workers, "poll_mode": "adaptive", "adaptive_idle_polls": 200,
                   "dpdk": dpdk}
        section.update(dataplane_extra or {})
        super().__init__(controlplane, dataplane, tmp, {
            "limits": {"max_connections": max_connections}, "dataplane": section})

    def __enter__(self):
        try:
            self.start_dataplane()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        super().__exit__(*exc)
        # The EAL's runtime directory: DPDK 22.11 leaves a few MB there, on tmpfs.
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        return False

    def loadgen_memif_args(self, loadgen, loadgen_ip, memory_mb=256):
        """herald-loadgen's command line up to its scenario: DPDK client mode on this node's
        memif socket from `loadgen_ip`/24, one queue pair per dataplane worker (worker i
        answers on queue pair i), the node's APIs and data dir, JSON output."""
        return [loadgen, "--target", f"{self.stack_ip}:{self.chat_port}",
                "--dpdk-port", f"net_memif0,role=client,socket={self.socket}",
                "--dpdk-address", f"{loadgen_ip}/24", "--dpdk-memory-mb", str(memory_mb),
                "--dpdk-queues", str(self.workers),
                "--admin", f"127.0.0.1:{self.node.admin_port}",
                "--public", f"127.0.0.1:{self.node.public_port}",
                "--data-dir", self.node.data_dir, "--quiet", "--json"]


def run_linux_loadgen(loadgen, node, link, scenario, connections, *extra):
    """herald-loadgen from Linux (kernel sockets, one process, root namespace) against a
    DpdkNode over its link: `scenario` over `connections`; its verdict (loadgen_verdict)."""
    args = [loadgen, "--target", f"{link.stack_ip}:{node.chat_port}",
            "--admin", f"127.0.0.1:{node.node.admin_port}",
            "--public", f"127.0.0.1:{node.node.public_port}",
            "--data-dir", node.node.data_dir, "--quiet", "--json", "--scenario", scenario,
            "--connections", str(connections), "--processes", "1", "--settle-timeout", "30",
            *extra]
    return loadgen_verdict(args, scenario, connections)


def gauge(values, name):
    """A dp.* gauge from DataplaneRun.counters(); absent is a failure (metric() would read 0 and
    a leak check would pass)."""
    prom = "herald_" + name.replace(".", "_")
    assert prom in values, f"no gauge {name} ({prom}) in /metrics"
    return int(values[prom])


def loadgen_verdict(args, scenario, connections, timeout_s=150):
    """Runs herald-loadgen (`args` with --json) and checks its exactly-once verdict: exit 0,
    lost 0, duplicates 0, something acked and all of it delivered, every connection logged in.
    Prints a one-line summary; returns the whole result."""
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    try:
        result = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"{scenario}: loadgen exited {r.returncode}, no JSON:\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    summary = {k: result.get(k) for k in ("sent", "acked", "delivered", "expected", "lost",
                                          "duplicates", "logins", "msgs_per_s", "errors")}
    print(f"{scenario}: exit {r.returncode} {json.dumps(summary)}")
    for line in r.stderr.splitlines():
        if "dpdk stack:" in line:  # DPDK client mode: its stack's losses and exit resets
            print(f"{scenario}: {line}")
    if r.returncode != 0:
        raise AssertionError(f"{scenario}: loadgen exited {r.returncode}: {r.stderr[-3000:]}")
    if result["lost"] != 0 or result["duplicates"] != 0:
        raise AssertionError(f"{scenario}: lost {result['lost']}, "
                             f"duplicates {result['duplicates']}")
    if result["acked"] == 0 or result["delivered"] < result["acked"]:
        raise AssertionError(f"{scenario}: acked {result['acked']}, "
                             f"delivered {result['delivered']}")
    if result["logins"] < connections:
        raise AssertionError(f"{scenario}: {result['logins']} of {connections} logged in")
    return result


class FrameCapture:
    """The frames the stack sends a made-up host on the link's Linux side (`fake_ip`, its
    `fake_mac`), kept in arrival order, and frames from that host. A subclass receives (calling
    keep() for each frame it wants to see) and sends; the tests only wait on what is kept:
    mark() before acting, then since()/expect()/silent() on what came after.

    scapy is imported here, not at the top: the tests without scapy import this module too."""

    def __init__(self, link, fake_mac, answer_s=5, silence_s=0.3):
        self.link = link
        self.fake_mac = fake_mac
        self.fake_ip = f"{link.prefix}.9"
        self.stack_mac = link.stack_mac()
        self.answer_s = answer_s    # how long an expected answer may take
        self.silence_s = silence_s  # how long "no answer" is watched
        self.frames = []
        self.lock = threading.Lock()

    def keep(self, frame):
        with self.lock:
            self.frames.append(frame)

    def send(self, frame):
        raise NotImplementedError

    def ip(self, **fields):
        """Ether/IP from the made-up host to the stack."""
        from scapy.all import IP, Ether
        return Ether(src=self.fake_mac, dst=self.stack_mac) / IP(src=self.fake_ip,
                                                                 dst=self.link.stack_ip, **fields)

    def mark(self):
        with self.lock:
            return len(self.frames)

    def since(self, mark, match):
        with self.lock:
            return [f for f in self.frames[mark:] if match(f)]

    def expect(self, mark, match, what, timeout_s=None):
        """The first kept frame after `mark` that matches, waiting up to answer_s."""
        deadline = time.monotonic() + (self.answer_s if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            got = self.since(mark, match)
            if got:
                return got[0]
            time.sleep(0.02)
        raise AssertionError(f"no {what} from the stack")

    def silent(self, mark, match, what):
        time.sleep(self.silence_s)
        got = self.since(mark, match)
        assert not got, f"unexpected {what}: {got[0].summary()}"

    def learn(self):
        """The stack learns the made-up host's MAC from an ARP request (and answers it)."""
        from scapy.all import ARP, Ether
        mark = self.mark()
        self.send(Ether(src=self.fake_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=self.fake_mac, psrc=self.fake_ip, pdst=self.link.stack_ip))
        self.expect(mark, lambda f: ARP in f and f[ARP].op == 2 and f[ARP].pdst == self.fake_ip,
                    "ARP reply")

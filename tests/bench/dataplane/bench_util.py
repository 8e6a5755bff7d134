"""What the dataplane benchmarks (dpdk_vs_kernel.py, memif_vs_kernel.py) measure processes with."""
import os


def cpu_s(pid):
    """User + system CPU seconds of every thread of `pid` so far (/proc/PID/stat 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tsc_hz():
    """The CPU's nominal clock from /proc/cpuinfo's model name ("@ 2.20GHz"), else its MHz."""
    with open("/proc/cpuinfo") as f:
        info = f.read()
    for line in info.splitlines():
        if line.startswith("model name") and "GHz" in line:
            return float(line.rsplit("@", 1)[1].strip().rstrip("GHz")) * 1e9
    for line in info.splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6
    return 1e9

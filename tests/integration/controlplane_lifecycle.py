#!/usr/bin/python3
"""herald-controlplane as an operator meets it: start on defaults, data-dir ownership, clean
stop on SIGTERM and SIGINT, config errors that name the field, --print-config round trip.

Usage: controlplane_lifecycle.py PATH_TO_herald-controlplane
"""
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

BINARY = sys.argv[1]
DEADLINE_S = 20


def start(*args):
    return subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_line(proc, needle):
    """Reads stderr until a line contains `needle`; returns the lines read."""
    lines = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"never saw {needle!r}; got:\n{''.join(lines)}")


def run(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=DEADLINE_S)


def free_port():
    """A port nothing listens on now, so tests running side by side do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp, name):
    """A config whose IPC socket lives in the test's own directory."""
    socket_path = os.path.join(tmp, f"{name}.sock")
    path = os.path.join(tmp, f"{name}.json")
    with open(path, "w") as f:
        f.write('{"controlplane": {"ipc_socket_path": "%s", "admin_port": %d, "public_port": %d, '
                '"public_address": "127.0.0.1"}}' % (socket_path, free_port(), free_port()))
    return path, socket_path


def check_lifecycle(tmp, stop_signal):
    data_dir = os.path.join(tmp, f"data-{stop_signal}")
    config, socket_path = write_config(tmp, f"node-{stop_signal}")
    proc = start("--config", config, "--data-dir", data_dir)
    try:
        wait_for_line(proc, "controlplane.started")
        with open(os.path.join(data_dir, "controlplane.lock")) as f:
            assert f.read().strip() == str(proc.pid), "lock file must name its holder"
        assert (os.stat(data_dir).st_mode & 0o777) == 0o700, "data dir must be private"
        mode = os.stat(socket_path).st_mode
        assert stat.S_ISSOCK(mode) and (mode & 0o777) == 0o600, "IPC socket must be private"

        # A peer on the IPC socket that is not a dataplane is refused; the node keeps running.
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as peer:
            peer.settimeout(DEADLINE_S)
            peer.connect(socket_path)
            peer.send(b"not a flatbuffer hello")
            refusal = b""
            try:
                while chunk := peer.recv(4096):
                    refusal += chunk
            except ConnectionResetError:
                pass
            assert proc.poll() is None, "a bad IPC peer must not stop the control plane"

        second = run("--config", config, "--data-dir", data_dir)
        assert second.returncode == 1, second
        assert "is in use by another herald-controlplane" in second.stderr, second.stderr

        proc.send_signal(stop_signal)
        rest = proc.stderr.read()
        assert proc.wait(timeout=DEADLINE_S) == 0, f"exit {proc.returncode}: {rest}"
        assert "controlplane.stopped" in rest, rest
        assert "ERROR" not in rest, rest
        assert not os.path.exists(socket_path), "a clean stop removes the IPC socket"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # The lock dies with its holder: a new instance takes the directory at once.
    again = start("--config", config, "--data-dir", data_dir)
    try:
        wait_for_line(again, "controlplane.started")
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=DEADLINE_S) == 0


def check_config_errors(tmp):
    cases = {
        '{"limits": {"max_frame_bytes": 100}}': "limits.max_frame_bytes = 100 is below the minimum 1024",
        '{"limits": {"max_frame_bytez": 4096}}': "max_frame_bytez",
        '{"node": {"id": "one"}}': "id",
        '{"node": ': "bad.json",
    }
    for text, expected in cases.items():
        path = os.path.join(tmp, "bad.json")
        with open(path, "w") as f:
            f.write(text)
        result = run("--config", path, "--data-dir", os.path.join(tmp, "unused"))
        assert result.returncode == 2, (text, result)
        assert expected in result.stderr, (text, result.stderr)
        assert not os.path.exists(os.path.join(tmp, "unused")), "a bad config must not start"

    missing = run("--config", os.path.join(tmp, "does-not-exist.json"))
    assert missing.returncode == 2, missing


def check_print_config_round_trip(tmp):
    path = os.path.join(tmp, "custom.json")
    with open(path, "w") as f:
        f.write('{"node": {"id": 7, "name": "edge-7"}, "dataplane": {"chat_port": 5223}}')
    printed = run("--config", path, "--print-config")
    assert printed.returncode == 0, printed
    assert '"id": 7' in printed.stdout and '"chat_port": 5223' in printed.stdout, printed.stdout
    assert '"admin_port": 8080' in printed.stdout, "defaults must be filled in"
    effective = os.path.join(tmp, "effective.json")
    with open(effective, "w") as f:
        f.write(printed.stdout)
    reprinted = run("--config", effective, "--print-config")
    assert reprinted.stdout == printed.stdout, "the printed config must load back unchanged"
    checked = run("--config", effective, "--check-config")
    assert checked.returncode == 0 and "config ok" in checked.stdout, checked


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_lifecycle(tmp, signal.SIGTERM)
        check_lifecycle(tmp, signal.SIGINT)
        check_config_errors(tmp)
        check_print_config_round_trip(tmp)
    print("controlplane lifecycle: ok")


if __name__ == "__main__":
    main()

"""How a stranger on the same host finds a running job's ZeroMQ ports (Python 3 stdlib only).

A Tessera rank's ROUTER listens on 127.0.0.1 (one host) on an ephemeral port. Anyone on the host
can list them: the job's processes are visible in /proc (their command line names the tessera
binary), each socket of a process is a link "socket:[INODE]" in /proc/PID/fd, and
/proc/net/tcp lists the listening sockets (state 0A) with their inodes and local addresses.
Used by auth_test.py and soak_test.py to point tessera_stranger (tests/tools/stranger.cc) at a job.
"""

import concurrent.futures
import os
import socket


def tessera_pids(tessera, marker):
    """Pids of the processes running the binary `tessera` whose command line contains `marker`
    (mpirun itself, whose command line also contains it, is left out)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0].decode(errors="replace")) != os.path.basename(tessera):
            continue
        if any(marker.encode() in a for a in argv):
            pids.append(int(name))
    return sorted(pids)


def listening_ports(pids):
    """{port: (pid, IPv4 address to reach it)} of the TCP sockets in LISTEN state owned by
    `pids` (a wildcard address is reached on 127.0.0.1)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes[int(link[8:-1])] = pid
        except OSError:
            continue
    ports = {}
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            lines = f.readlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if fields[3] == "0A" and int(fields[9]) in inodes:  # 0A: TCP_LISTEN
            address, port = fields[1].split(":")
            host = socket.inet_ntoa(int(address, 16).to_bytes(4, "little"))
            ports[int(port, 16)] = (inodes[int(fields[9])],
                                    "127.0.0.1" if host == "0.0.0.0" else host)
    return ports


def speaks_zmtp(host, port):
    """True when host:port sends a ZMTP signature (0xff, 8 bytes, 0x7f) unprompted, as a ZeroMQ
    socket does on accepting a connection. Nothing is sent: MPI's own listening sockets (silent
    until their peer speaks) are told apart without being disturbed."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            data = b""
            while len(data) < 10:
                chunk = s.recv(10 - len(data))
                if not chunk:
                    break
                data += chunk
            return len(data) == 10 and data[0] == 0xFF and data[9] == 0x7F
    except OSError:
        return False


def zmtp_ports(pids):
    """{port: (pid, address)} of the listening sockets of `pids` that speak ZMTP (probed in
    parallel)."""
    ports = listening_ports(pids)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(ports))) as pool:
        answers = dict(zip(ports, pool.map(lambda p: speaks_zmtp(ports[p][1], p), ports)))
    return {port: where for port, where in ports.items() if answers[port]}

"""How a stranger on the same host finds a running job's ZeroMQ ports (Python 3 stdlib only).

A Tessera rank's ROUTER listens on 127.0.0.1 (one host) on an ephemeral port. Anyone on the host
can list them: the job's processes are visible in /proc (their command line names the tessera
binary), each socket of a process is a link "socket:[INODE]" in /proc/PID/fd, and
/proc/net/tcp lists the listening sockets (state 0A) with their inodes and local addresses.
Used by auth_test.py (and the soak test) to point tests/integration/stranger.cc at a job.
"""

import os


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


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    except OSError:
        pass
    return inodes


def listening_ports(pids, address="127.0.0.1"):
    """The TCP ports the processes `pids` listen on at `address` (IPv4), sorted."""
    inodes = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    want = "".join(f"{int(b):02X}" for b in reversed(address.split(".")))
    ports = set()
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                host, port = local.split(":")
                if state == "0A" and host == want and inode in inodes:
                    ports.add(int(port, 16))
    except OSError:
        pass
    return sorted(ports)

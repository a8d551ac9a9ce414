"""A real systemd-resolved for tests of the agent's "resolved" mode, confined to a network and
mount namespace the test creates: a private /run holds its own system D-Bus and resolved, so
the machine's resolver, bus and /etc/resolv.conf are never touched.

The binaries are the Debian package's, unpacked (never installed) by tools/install-apt.sh and
linked into the stack's bin folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from boundary_devstack.process import ManagedProcess, ensure_system_user

RESOLVED_USER = "systemd-resolve"
"""resolved started as root drops its privileges to this user."""

# Everyone may own and call anything: the bus exists only inside the test's namespace.
_BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""


def ensure_resolved_user() -> None:
    ensure_system_user(RESOLVED_USER)


def private_resolved_script(bin_dir: Path, work: Path) -> str:
    """Shell lines that, run as root in a fresh network and mount namespace (`ip netns exec`
    plus `unshare --mount`), start D-Bus and systemd-resolved there and put resolvectl on PATH.
    resolved logs to work/resolved.log."""
    resolved = bin_dir / "systemd-resolved"
    if not resolved.exists():
        raise FileNotFoundError(f"{resolved} is missing: run `make tools` to unpack it")
    work.mkdir(parents=True, exist_ok=True)
    bus_config = work / "system-bus.conf"
    bus_config.write_text(_BUS_CONFIG)
    resolv_conf = work / "resolv.conf"
    resolv_conf.write_text("nameserver 127.0.0.53\n")
    return f"""\
export PATH={bin_dir}:$PATH
mount -t tmpfs tmpfs /run
mount --bind {resolv_conf} /etc/resolv.conf
mkdir -p /run/dbus /run/systemd/resolve
chown {RESOLVED_USER}:{RESOLVED_USER} /run/systemd/resolve
dbus-daemon --config-file={bus_config} --fork --nopidfile
{resolved} > {work}/resolved.log 2>&1 &
for i in $(seq 50); do resolvectl status > /dev/null 2>&1 && break; sleep 0.1; done
"""


@contextmanager
def host_port_in_netns(netns: str, port: int, work: Path) -> Iterator[None]:
    """The host's 127.0.0.1:port, also at 127.0.0.1:port inside netns: socat carries it over a
    Unix socket, since the namespaces share the filesystem but not the network."""
    socket_path = work / f"port-{port}.sock"
    host_side = ManagedProcess(
        f"socat-host-{port}",
        ["socat", f"UNIX-LISTEN:{socket_path},fork", f"TCP:127.0.0.1:{port}"],
        log_path=work / f"socat-host-{port}.log",
    )
    netns_side = ManagedProcess(
        f"socat-netns-{port}",
        [
            *("ip", "netns", "exec", netns, "socat"),
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
            f"UNIX-CONNECT:{socket_path}",
        ],
        log_path=work / f"socat-netns-{port}.log",
    )
    with ExitStack() as stack:
        for process in (host_side, netns_side):
            process.start()
            stack.callback(process.stop)
        host_side.wait_healthy(socket_path.exists, 10)
        netns_side.wait_healthy(lambda: _listening_in(netns, port), 10)
        yield


def _listening_in(netns: str, port: int) -> bool:
    shown = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(shown.stdout.strip())

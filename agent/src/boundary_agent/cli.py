"""`boundary-agent`: run the daemon, or talk to a running one through its control API."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boundary_agent import kube, memory
from boundary_agent.config import AgentConfig, ConfigError, join_host_port, load_config
from boundary_agent.daemon import Agent
from boundary_agent.dns import DNSListenError
from boundary_agent.logins import LoginStoreError
from boundary_agent.logs import configure_logging

DEFAULT_CONFIG = Path("/etc/boundary-agent/agent.hcl")
"""Where the systemd unit has the agent read its config; the client commands look there for
control_listen_port when not told otherwise."""
log = logging.getLogger("boundary_agent")
PORT_VARIABLE = "BOUNDARY_CLIENT_AGENT_LISTENING_PORT"
"""The official CLI's variable for the agent's port; ours honours it too."""


def control_port(args: argparse.Namespace) -> int:
    """Which port the agent's control API is on: -client-agent-port, else the variable, else
    control_listen_port from -config (or from DEFAULT_CONFIG when it can be read), else 9300."""
    if args.client_agent_port:
        port: int = args.client_agent_port
        return port
    if os.environ.get(PORT_VARIABLE):
        return int(os.environ[PORT_VARIABLE])
    if args.config is not None:
        return load_config(args.config).control_listen_port
    try:
        return load_config(DEFAULT_CONFIG).control_listen_port
    except ConfigError:
        return AgentConfig().control_listen_port


def _call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/v1/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise SystemExit(f"boundary-agent: {detail}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"boundary-agent: no agent answers at {url}: {exc.reason}") from None


def _event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            'event_loop = "uvloop", but uvloop is not installed: install it, or set '
            'event_loop = "asyncio"'
        ) from None
    return uvloop.new_event_loop


def _serve(config_path: Path | None) -> int:
    config = load_config(config_path)
    with asyncio.Runner(loop_factory=_event_loop_factory(config.event_loop)) as runner:
        return runner.run(_run(config_path, config))


async def _run(config_path: Path | None, config: AgentConfig) -> int:
    configure_logging(config)
    log.debug("configuration (%s): %s", config_path or "defaults", config.model_dump_json())
    agent = Agent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(agent, config_path))
    bound = await agent.start()
    memory.release()  # what start-up needed only while starting
    try:
        agent.system_resolver.install(bound)
        log.info(
            "DNS on %s; control API on port %s; event loop %s",
            ", ".join(join_host_port(*b) for b in bound),
            config.control_listen_port,
            # The loop running, not the field: the log proves which one it is.
            type(loop).__module__.partition(".")[0],
        )
        notify_ready()
        token = os.environ.get("BOUNDARY_TOKEN")
        if token and config.boundary_addr:
            await agent.add_token(os.getuid(), config.boundary_addr, token)
        await stop.wait()
    finally:
        agent.system_resolver.restore()
        await agent.stop()
    return 0


def notify_ready() -> None:
    """Tell systemd (Type=notify) that the agent serves: DNS, the control API and the system's
    resolver pointed at it. `systemctl start` returns only then, so a `boundary-agent login`
    right after it finds the agent. Nothing without $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.connect(address)
            notify.sendall(b"READY=1")
    except OSError as exc:
        log.warning("cannot tell systemd the agent is ready (%s): %s", address, exc.strerror)


def _reload(agent: Agent, config_path: Path | None) -> None:
    """SIGHUP: logging as the file now says (the log file reopened), and the agent's
    reloadable fields."""
    try:
        fresh = load_config(config_path)
        configure_logging(fresh)
    except ConfigError as exc:
        agent.health.record_error(f"reload refused: {exc}")
        return
    agent.reload(fresh)


def _print_status(status: dict[str, Any]) -> None:
    print("Status:")
    for key, label in (
        ("status", "Status"),
        ("version", "Version"),
        ("boundary_addr", "Address"),
        ("auth_token_id", "Auth Token Id"),
        ("auth_token_expiry", "Auth Token Expiration"),
    ):
        if status.get(key):
            print(f"  {label + ':':24}{status[key]}")
    for key, label in (("warnings", "Recent warnings"), ("errors", "Recent errors")):
        if status.get(key):
            print(f"  {label}:")
            for line in status[key]:
                print(f"    {line}")


def _print_sessions(sessions: dict[str, Any]) -> None:
    items = sessions.get("items") or []
    if not items:
        print("No active sessions.")
    for item in items:
        auth = item["session_authorization"]
        print(f"Alias {item['alias']} (target {item.get('target_id', '')})")
        print(f"  Session ID:        {auth['session_id']}")
        print(f"  Local address:     {item.get('local_address', '')}")
        print(f"  Expiration:        {item.get('expiration', '')}")
        print(
            f"  Connections used:  {item.get('connections_used', 0)}, left: "
            f"{'unlimited' if item.get('connections_left') == -1 else item.get('connections_left')}"
        )
        for credential in auth.get("credentials") or []:
            values = credential.get("credential") or {}
            print("  Credential:        " + ", ".join(f"{k}={v}" for k, v in values.items()))


def _kube_credential(args: argparse.Namespace, port: int) -> int:
    """kubectl's exec credential plugin: an ExecCredential on stdout; on failure one line on
    stderr (kubectl shows it) and exit 1."""
    answer = _call(port, "POST", "kube-credential", {"alias": args.alias})
    print(json.dumps(kube.exec_credential(answer)))
    return 0


def _plugin_command(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """How kubectl runs this program as its credential plugin: the boundary-agent script if
    that is what runs, else this interpreter with the module; and the options of the
    subcommand: the control port when it was given (a flag or the variable) rather than read
    from the default config."""
    program = Path(sys.argv[0])
    if program.name == "boundary-agent" and program.is_file():
        command = [str(program.resolve())]
    else:
        command = [sys.executable, "-m", "boundary_agent.cli"]
    port = args.client_agent_port or os.environ.get(PORT_VARIABLE)
    if port:
        return command, ["-client-agent-port", str(port)]
    if args.config is not None:
        return command, ["-config", str(args.config.resolve())]
    return command, []


def _kubeconfig_path(args: argparse.Namespace) -> Path:
    """Where contexts are merged: -kubeconfig, else the first file of KUBECONFIG, else
    ~/.kube/config (where kubectl itself writes)."""
    if args.kubeconfig:
        return Path(args.kubeconfig)
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(listed[0]) if listed else Path.home() / ".kube" / "config"


def _kubeconfig(args: argparse.Namespace, port: int) -> int:
    import yaml  # only this command reads and writes YAML; the daemon never loads it

    contexts = _call(port, "POST", "kube-contexts").get("items") or []
    usable = [c for c in contexts if "error" not in c]
    # An alias the user resolves but may not open (a read grant without authorize-session)
    # gets no context; saying why is enough.
    for failed in (c for c in contexts if "error" in c):
        print(f"{failed['alias']}: {failed['error']}", file=sys.stderr)
    if not usable:
        print("No Kubernetes access alias for your login; the kubeconfig is unchanged.")
        return 0 if not contexts else 1
    path = _kubeconfig_path(args)
    try:
        current = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"boundary-agent kubeconfig: cannot read {path}: {exc}") from None
    if current is not None and not isinstance(current, dict):
        raise SystemExit(f"boundary-agent kubeconfig: {path} is not a kubeconfig")
    merged = kube.merge_kubeconfig(current or {}, usable, *_plugin_command(args))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.boundary-agent")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(merged, handle, sort_keys=False)
    temporary.replace(path)
    for context in usable:
        namespace = f", namespace {context['namespace']}" if context.get("namespace") else ""
        print(f"context {kube.CONTEXT_PREFIX}{context['alias']}: {context['server']}{namespace}")
    print(f"Merged into {path}; use: kubectl --context {kube.CONTEXT_PREFIX}<alias> ...")
    return 0


def _login(args: argparse.Namespace, port: int) -> int:
    token = os.environ.get("BOUNDARY_TOKEN", "")
    if not token and args.auth_method_id:
        password = os.environ.get("BOUNDARY_PASSWORD") or getpass.getpass("Password: ")
        token = asyncio.run(
            _password_token(args.addr, args.auth_method_id, args.login_name, password)
        )
    elif not token:
        token = sys.stdin.readline().strip()
    if not token:
        raise SystemExit(
            "boundary-agent login: no token (give -auth-method-id, BOUNDARY_TOKEN "
            "or a token on stdin)"
        )
    _call(port, "POST", "tokens", {"boundary_addr": args.addr, "token": token})
    print("Logged in; the agent now resolves your aliases.")
    return 0


async def _password_token(addr: str, auth_method_id: str, login_name: str, password: str) -> str:
    from boundary_api import BoundaryClient

    async with BoundaryClient(addr) as client:
        token = await client.authenticate_password(auth_method_id, login_name, password)
        return token.token.get_secret_value()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boundary-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent in the foreground")
    run.add_argument("-config", "--config", type=Path)
    clients = [sub.add_parser(name) for name in ("status", "sessions", "pause", "resume")]
    login = sub.add_parser("login", help="hand the agent a token (password, env or stdin)")
    kubeconfig = sub.add_parser(
        "kubeconfig",
        help="merge a kubectl context for each Kubernetes access alias you may use into your "
        "kubeconfig",
    )
    kubeconfig.add_argument(
        "-kubeconfig",
        "--kubeconfig",
        help="the file to merge into (default: the first of KUBECONFIG, else ~/.kube/config)",
    )
    kube_credential = sub.add_parser(
        "kube-credential",
        help="kubectl's exec credential plugin: a session to ALIAS and its token, as an "
        "ExecCredential",
    )
    kube_credential.add_argument("alias")
    for client in [*clients, login, kubeconfig, kube_credential]:
        client.add_argument(
            "-config",
            "--config",
            type=Path,
            help=f"the agent's config, for its control_listen_port (default {DEFAULT_CONFIG})",
        )
        client.add_argument(
            "-client-agent-port",
            "--client-agent-port",
            type=int,
            help=f"the agent's control API port (default ${PORT_VARIABLE}, else from -config)",
        )
    login.add_argument("-addr", "--addr", default=os.environ.get("BOUNDARY_ADDR", ""))
    login.add_argument(
        "-auth-method-id", "--auth-method-id", default=os.environ.get("BOUNDARY_AUTH_METHOD_ID", "")
    )
    login.add_argument(
        "-login-name",
        "--login-name",
        default=os.environ.get("BOUNDARY_LOGIN_NAME", getpass.getuser()),
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "run":
            return _serve(args.config)
        port = control_port(args)
    except ConfigError as exc:
        print(f"boundary-agent: {exc}", file=sys.stderr)
        return 2
    except (DNSListenError, LoginStoreError, RuntimeError) as exc:
        print(f"boundary-agent: {exc}", file=sys.stderr)
        return 1
    if args.command == "status":
        _print_status(_call(port, "GET", "status"))
    elif args.command == "sessions":
        _print_sessions(_call(port, "GET", "sessions"))
    elif args.command in ("pause", "resume"):
        _call(port, "POST", args.command)
        print(f"Agent {args.command}d.")
    elif args.command == "login":
        return _login(args, port)
    elif args.command == "kubeconfig":
        return _kubeconfig(args, port)
    elif args.command == "kube-credential":
        return _kube_credential(args, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The forwarding floor for a CPython asyncio process: the least a DNS forwarder built as the
agent is built can do. Each query goes upstream from one socket as it came; each answer goes
back to whoever sent that id. No random ids or ports, no answer check, no retries or timeouts:
it is not a resolver, only the wake-ups and system calls every asyncio forwarder pays, so that
bench.agent can tell what the agent's own work adds from what CPython's turn of the loop costs.

    python -m bench.python_forwarder HOST PORT UPSTREAM_HOST UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import socket
import sys


async def forward(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    clients = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clients.bind(listen)
    clients.setblocking(False)
    upstream_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream_socket.connect(upstream)
    upstream_socket.setblocking(False)
    asked_by: dict[bytes, tuple[str, int]] = {}

    def query_arrived() -> None:
        while True:
            try:
                query, client = clients.recvfrom(4096)
            except BlockingIOError:
                return
            asked_by[query[:2]] = client
            upstream_socket.send(query)

    def answer_arrived() -> None:
        while True:
            try:
                answer = upstream_socket.recv(4096)
            except BlockingIOError:
                return
            client = asked_by.pop(answer[:2], None)
            if client is not None:
                clients.sendto(answer, client)

    loop = asyncio.get_running_loop()
    loop.add_reader(clients.fileno(), query_arrived)
    loop.add_reader(upstream_socket.fileno(), answer_arrived)
    await asyncio.Event().wait()


if __name__ == "__main__":
    host, port, upstream_host, upstream_port = sys.argv[1:5]
    asyncio.run(forward((host, int(port)), (upstream_host, int(upstream_port))))

"""A plain SMTP-like listener: greets with a banner naming its host and port.

Runs inside a lab node (`python -m lab.listener NAME LOG PORT...`) on IPv4 and
IPv6. It stands in for a real MTA where none runs yet; its banner is the
evidence of which host really answered a connection.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO


async def serve(name: str, log_path: str, ports: list[int]) -> None:
    with open(log_path, "a", buffering=1) as log:
        await _serve(name, log, ports)


async def _serve(name: str, log: TextIO, ports: list[int]) -> None:
    Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

    def handler(port: int) -> Handler:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            log.write(json.dumps({"t": time.time(), "port": port,
                                  "peer": peer[0], "peer_port": peer[1]}) + "\n")
            writer.write(f"220 {name} ESMTP port25lab listener on port {port}\r\n".encode())
            try:
                await writer.drain()
                for _ in range(20):  # a bounded dialogue: enough for EHLO and QUIT
                    line = await asyncio.wait_for(reader.readline(), timeout=5)
                    if not line or line.upper().startswith(b"QUIT"):
                        writer.write(b"221 bye\r\n")
                        break
                    writer.write(b"250 " + name.encode() + b"\r\n")
                    await writer.drain()
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()
        return greet

    servers = []
    for port in ports:
        for host in ("0.0.0.0", "::"):
            servers.append(await asyncio.start_server(handler(port), host, port,
                                                      reuse_address=True))
    log.write(json.dumps({"ready": True}) + "\n")
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> int:
    name, log_path, *ports = sys.argv[1:]
    asyncio.run(serve(name, log_path, [int(p) for p in ports]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

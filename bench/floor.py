"""The floor of an authenticated connect on this machine: ``connection-storm --floor``.

A server with only what every authenticated connect must do, whatever the gateway around it:
accept the TCP connection, the WebSocket handshake (the gateway's own transport,
``gateway/websocket.py``, on websockets' protocol), read the ``authenticate`` frame, verify its
JWT (``convot.tokens.TokenVerifier``: the Ed25519 signature and every claim) and answer
``ready``.  No Redis, no PostgreSQL, no revocation or subject check, no fan-out index, no
metrics.  The storm's generator drives it exactly as it drives the gateways, so the figures
say how far the gateway's own work is from this floor, and what the machine can do at best
with the generator on the same cores.

    python -m bench.floor --port 8765          (started by the scenario, one per --gateways)
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson

from convot.config import load_config
from convot.tokens import TokenError, TokenVerifier
from gateway import websocket
from gateway.protocol import text_frame


class FloorSocket(websocket.WebSocket):
    __slots__ = ()


async def serve(port: int) -> None:
    verifier = TokenVerifier(load_config())
    connections = 0

    async def handler(ws: FloorSocket) -> None:
        nonlocal connections
        try:
            raw = await ws.recv(10.0)
            frame = orjson.loads(raw)
            claims = verifier.verify(frame.get("token"))
        except (websocket.SocketClosed, TimeoutError, orjson.JSONDecodeError, AttributeError):
            ws.close(1008, "bad first frame")
            return
        except TokenError as exc:
            ws.close(4401, exc.reason)
            return
        connections += 1
        ws.transport.write(text_frame(orjson.dumps(
            {"type": "ready", "ref": frame.get("ref"), "org_id": claims.org, "subject": claims.sub,
             "role": claims.role, "expires_at": claims.exp})))
        try:
            while True:
                raw = await ws.recv()
                request = orjson.loads(raw)
                if request.get("type") == "ping":
                    ws.transport.write(text_frame(orjson.dumps({"type": "pong", "ref": request.get("ref")})))
        except (websocket.SocketClosed, orjson.JSONDecodeError):
            pass
        finally:
            connections -= 1

    settings = websocket.Settings(handler=handler, max_size=65536)
    listener = await websocket.serve(lambda: FloorSocket(settings), settings, "127.0.0.1", port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print("ready", flush=True)
    await stop
    await listener.close(1001, "going away", 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    from convot.cli import tune_gc

    tune_gc()
    import uvloop

    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()

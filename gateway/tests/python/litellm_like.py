"""An OpenAI-compatible upstream that reads requests the way LiteLLM does, on Starlette.

It prefers a `?model=` query parameter over the body's model, reads JSON bodies whatever
their Content-Type says, and reads forms with Starlette's own parser (python-multipart).
Every answer says which model it would have run; `GET /_seen` lists them all.

Started by the tests: it binds 127.0.0.1 on a free port and prints the port on stdout.
"""

import json
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SEEN = []


async def models(request: Request):
    data = [{"id": m, "object": "model", "owned_by": "litellm"} for m in ("allowed", "secret")]
    return JSONResponse({"object": "list", "data": data})


async def seen(request: Request):
    return JSONResponse(SEEN)


async def anything(request: Request):
    model = request.query_params.get("model")
    content_type = request.headers.get("content-type", "")
    try:
        if model is None and content_type.startswith("multipart/"):
            form = await request.form()
            value = form.get("model")
            model = value if isinstance(value, str) else None
        elif model is None:
            body = json.loads(await request.body())
            model = body.get("model") if isinstance(body, dict) else None
    except Exception as e:
        return JSONResponse({"error": {"message": f"{type(e).__name__}: {e}"}}, status_code=400)
    SEEN.append({"path": request.url.path, "query": request.url.query, "model": model})
    return JSONResponse({"object": "chat.completion", "model": model, "choices": []})


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/_seen", seen),
        Route("/{path:path}", anything, methods=["POST"]),
    ]
)

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
# Listening before the port is printed: a connection waits in the backlog until uvicorn runs.
sock.listen(128)
print(sock.getsockname()[1], flush=True)
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
server.run(sockets=[sock])

"""The Python peers' applications: "Hello World!" on every path and method.

Raw interfaces, no framework, so that what is measured is the server.
"""
BODY = b"Hello World!"
_ASGI_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")],
}
_ASGI_BODY = {"type": "http.response.body", "body": BODY}


async def asgi_app(scope, receive, send):
    """ASGI 3 app for uvicorn (and granian --interface asgi)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(_ASGI_START)
    await send(_ASGI_BODY)


async def rsgi_app(scope, proto):
    """RSGI app for granian."""
    proto.response_bytes(200, [("content-type", "text/plain")], BODY)

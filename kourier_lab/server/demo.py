"""A small app for tests and the tour: the benchmark catch-all plus Python handlers."""
import json
import os

from .app import App, Response

app = App()
app.route_catch_all(b"Hello World!")
app.route_static("/static", b"static bytes", content_type="text/plain")


@app.get("/path")
def path(req):
    return req.path + ("?" + req.query if req.query is not None else "")


@app.post("/echo")
def echo(req):
    return Response(req.body, content_type="application/octet-stream")


@app.get("/json")
def as_json(req):
    return {"method": req.method, "path": req.path, "user-agent": req.header("User-Agent")}


@app.post("/json")
def json_post(req):
    """The api shape's POST: parse the JSON body, answer a small JSON summary of it."""
    doc = json.loads(req.body)
    keys = sorted(doc) if isinstance(doc, dict) else []
    return {"received": len(req.body), "keys": keys, "id": doc.get("id") if keys else None}


@app.get("/pid")
def pid(req):
    return str(os.getpid())


@app.get("/boom")
def boom(req):
    raise RuntimeError("a handler bug: the client gets a 500 for this request only")

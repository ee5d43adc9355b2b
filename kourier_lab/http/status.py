"""Status lines and canned error responses."""
REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content",
    400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Unknown").encode())


_ERRORS = {}


def error_response(status: int, server: bytes = b"kourier-lab") -> bytes:
    """A complete error response that closes the connection (bytes, cached)."""
    r = _ERRORS.get((status, server))
    if r is None:
        body = REASONS.get(status, "Error").encode()
        r = (status_line(status) + b"Server: " + server + b"\r\nContent-Type: text/plain\r\n"
             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        _ERRORS[(status, server)] = r
    return r

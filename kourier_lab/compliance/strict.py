"""A strict RFC 9112 / RFC 9110 suite: named raw requests and what a server must do.

Expectations follow the RFCs' words:

* MUST and SHOULD are what a strictly compliant server does, so they are
  expected (a SHOULD-violation is reported as a failure, with the clause);
* where the RFC offers a choice (MAY recognise a bare LF, MUST reject *or*
  replace an obs-fold, MAY reject a duplicate identical Content-Length, ...)
  every allowed outcome passes (`EITHER`), and such a case can still fail by
  hanging or by answering more requests than were sent.

Kinds of expectation (judged from the responses read and whether the server
closed the connection):

* ACCEPT        every request answered 2xx, in order;
* ACCEPT_CLOSE  as ACCEPT, then the server closes (HTTP/1.0, Connection: close);
* PROCESS       the message was parsed: the first answer is not a syntax
                rejection (400 411 413 414 431 501 505) and the requests after it
                are answered 2xx - used for POST/OPTIONS, whose status is the
                application's business;
* REJECT        no 2xx at all; a status >= 400, or a close without an answer;
* REJECT_CLOSE  REJECT and the connection closed (framing errors: RFC 9112 6.3
                "MUST respond with 400 and then close");
* ONE_THEN_CLOSE at most one answer (a rejection, or the request processed by
                Transfer-Encoding alone) and then a close - CL+TE and TE in
                HTTP/1.0 (RFC 9112 6.1);
* EITHER        REJECT or ACCEPT/PROCESS, both allowed;
* KEEPALIVE_10  HTTP/1.0 with "Connection: keep-alive": answered 2xx; if the
                answer keeps the connection alive a second request on it is
                answered 2xx, otherwise the server closes.
"""
import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..http import chars
from . import responses as resp_mod

ACCEPT, ACCEPT_CLOSE, PROCESS = "accept", "accept+close", "process"
REJECT, REJECT_CLOSE, ONE_THEN_CLOSE = "reject", "reject+close", "one-then-close"
EITHER, KEEPALIVE_10 = "either", "keepalive-1.0"
SYNTAX_REJECTIONS = frozenset({400, 411, 413, 414, 431, 501, 505})
HUGE = 4 << 20       # 4 MiB: beyond any bound a server should buffer for a head


@dataclass
class Case:
    name: str
    group: str
    expect: str
    data: bytes
    why: str                    # the RFC clause
    requests: int = 1           # requests in `data` a server accepting it must answer
    followup: Optional[bytes] = None   # KEEPALIVE_10: the second request


@dataclass
class Outcome:
    statuses: List[int]
    closed: bool                # the server closed (or reset) the connection
    partial: bool               # bytes of an unfinished response remained
    error: str = ""

    def describe(self) -> str:
        if self.statuses:
            s = ", ".join(str(x) if x else "non-HTTP bytes" for x in self.statuses)
        else:
            s = "no answer"
        if self.partial:
            s += " + incomplete response"
        return s + (", then closed" if self.closed else ", connection left open")


def _b(text: str, host: bytes) -> bytes:
    """Case text (latin-1, `{H}` = host header value) as bytes."""
    return text.encode("latin-1").replace(b"{H}", host)


def cases(host: bytes) -> List[Case]:
    """Every strict case for a server whose Host value is `host` (b'IP:PORT')."""
    H = "{H}"
    get = f"GET /hello HTTP/1.1\r\nHost: {H}\r\n\r\n"
    after = f"GET /after HTTP/1.1\r\nHost: {H}\r\n\r\n"
    post = f"POST /hello HTTP/1.1\r\nHost: {H}\r\n"
    chunked_post = post + "Transfer-Encoding: chunked\r\n\r\n"
    out: List[Case] = []

    def add(name, group, expect, text, why, requests=1, raw=None, followup=None):
        data = raw if raw is not None else _b(text, host)
        out.append(Case(name, group, expect, data, why, requests,
                        _b(followup, host) if followup else None))

    # --- request smuggling vectors -------------------------------------------------
    g = "smuggling"
    add("te-and-cl", g, ONE_THEN_CLOSE,
        post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + "GET /smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 6.1: MAY reject CL+TE or process by TE alone; MUST close after responding")
    add("cl-and-te", g, ONE_THEN_CLOSE,
        post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
        + "GET /smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 6.1: MAY reject CL+TE or process by TE alone; MUST close after responding")
    add("cl-duplicate-differing", g, REJECT_CLOSE,
        post + "Content-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
        "RFC 9112 6.3 (5): invalid Content-Length -> 400 and close")
    add("cl-list-differing", g, REJECT_CLOSE, post + "Content-Length: 3, 5\r\n\r\nhello",
        "RFC 9112 6.3 (5), RFC 9110 8.6")
    add("cl-plus-sign", g, REJECT_CLOSE, post + "Content-Length: +5\r\n\r\nhello",
        "RFC 9110 8.6: Content-Length = 1*DIGIT")
    add("cl-negative", g, REJECT_CLOSE, post + "Content-Length: -5\r\n\r\nhello",
        "RFC 9110 8.6: Content-Length = 1*DIGIT")
    add("cl-hex", g, REJECT_CLOSE, post + "Content-Length: 0x5\r\n\r\nhello",
        "RFC 9110 8.6: Content-Length = 1*DIGIT")
    add("cl-decimal-point", g, REJECT_CLOSE, post + "Content-Length: 5.0\r\n\r\nhello",
        "RFC 9110 8.6: Content-Length = 1*DIGIT")
    add("cl-inner-space", g, REJECT_CLOSE, post + "Content-Length: 1 0\r\n\r\nhelloworld",
        "RFC 9110 8.6: Content-Length = 1*DIGIT (only surrounding OWS is trimmed)")
    add("cl-empty", g, REJECT_CLOSE, post + "Content-Length: \r\n\r\nhello",
        "RFC 9110 8.6: Content-Length = 1*DIGIT")
    add("cl-overflow", g, REJECT, post + "Content-Length: " + "9" * 40 + "\r\n\r\nhello",
        "RFC 9110 8.6: MUST prevent integer overflow; 413 or 400")
    add("te-unknown-xchunked", g, REJECT_CLOSE, post + "Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "RFC 9112 6.3 (4): chunked not final -> 400 and close (6.1: 501 for unknown coding)")
    add("te-identity", g, REJECT_CLOSE, post + "Transfer-Encoding: identity\r\n\r\nhello",
        "RFC 9112 6.3 (4): chunked not final -> 400 and close")
    add("te-chunked-not-last", g, REJECT_CLOSE,
        post + "Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "RFC 9112 6.3 (4): chunked not final -> 400 and close")
    add("te-chunked-twice", g, REJECT,
        post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "RFC 9112 7: chunked MUST NOT be applied twice; decoding twice fails on 'hello'")
    add("te-space-before-colon", g, REJECT,
        post + "Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "RFC 9112 5.1: whitespace before the colon -> MUST 400")
    add("te-vertical-tab", g, REJECT,
        post + "Transfer-Encoding:\x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "RFC 9110 5.6.3: OWS is SP/HTAB only; '\\x0bchunked' is no coding")
    add("te-in-http10", g, ONE_THEN_CLOSE,
        "POST /hello HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        "GET /smuggled HTTP/1.0\r\n\r\n",
        "RFC 9112 6.1: TE in HTTP/1.0 -> framing faulty, close after processing")
    for name, size_line in (("chunk-size-not-hex", "Z"), ("chunk-size-negative", "-5"),
                            ("chunk-size-0x", "0x5"), ("chunk-size-leading-space", " 5"),
                            ("chunk-size-overflow", "F" * 24), ("chunk-ext-empty-name", "5;=x"),
                            ("chunk-ext-nul", "5;a\x00")):
        add(name, g, REJECT_CLOSE, chunked_post + size_line + "\r\nhello\r\n0\r\n\r\n",
            "RFC 9112 7.1: chunk-size = 1*HEXDIG [ chunk-ext ]; bad framing -> 400 and close")
    add("chunk-missing-crlf", g, REJECT_CLOSE, chunked_post + "5\r\nhelloXX0\r\n\r\n",
        "RFC 9112 7.1: chunk-data is followed by CRLF")
    add("chunk-bare-lf-size", g, REJECT_CLOSE, chunked_post + "5\nhello\r\n0\r\n\r\n",
        "RFC 9112 7.1: chunk lines end with CRLF (the bare-LF MAY of 2.2 covers start line and fields only)")
    add("chunk-bare-lf-data", g, REJECT_CLOSE, chunked_post + "5\r\nhello\n0\r\n\r\n",
        "RFC 9112 7.1: chunk-data is followed by CRLF")
    add("trailer-invalid-name", g, REJECT, chunked_post + "5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n",
        "RFC 9112 7.1.2: trailer-section = *( field-line CRLF ); field-name = token")

    # --- field lines ------------------------------------------------------------------
    g = "fields"
    add("space-before-colon", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-Name : v\r\n\r\n",
        "RFC 9112 5.1: MUST reject whitespace between field name and colon with 400")
    add("tab-before-colon", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-Name\t: v\r\n\r\n",
        "RFC 9112 5.1: MUST reject whitespace between field name and colon with 400")
    add("empty-field-name", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\n: v\r\n\r\n",
        "RFC 9110 5.1: field-name = token (1*tchar)")
    add("field-name-bad-char", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX(Y): v\r\n\r\n",
        "RFC 9110 5.1: field-name = token")
    add("field-name-nul", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX\x00Y: v\r\n\r\n",
        "RFC 9110 5.1: field-name = token")
    add("field-name-obs-text", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-\xe9: v\r\n\r\n",
        "RFC 9110 5.1: field-name = token")
    add("field-line-no-colon", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nNoColon\r\n\r\n",
        "RFC 9112 5: field-line = field-name \":\" OWS field-value OWS")
    add("whitespace-before-first-field", g, REJECT, f"GET /hello HTTP/1.1\r\n Host: {H}\r\n\r\n",
        "RFC 9112 2.2: reject, or ignore the line - then Host is missing -> 400")
    add("obs-fold", g, EITHER, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-Folded: a\r\n b\r\n\r\n",
        "RFC 9112 5.2: MUST reject with 400 or replace the obs-fold with SP")
    add("obs-fold-in-host", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\n x\r\n\r\n",
        "RFC 9112 5.2 + 3.2: unfolded, Host is '<host> x' - invalid -> 400")
    add("bare-cr-line-end", g, REJECT, f"GET /hello HTTP/1.1\rHost: {H}\r\n\r\n",
        "RFC 9112 2.2: bare CR is invalid or becomes SP - either way the request line is invalid")
    add("bare-cr-in-value", g, EITHER, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX: a\rb\r\n\r\n",
        "RFC 9112 2.2: a bare CR MUST make the element invalid or be replaced by SP")
    add("bare-lf-request-line", g, EITHER, f"GET /hello HTTP/1.1\nHost: {H}\r\n\r\n",
        "RFC 9112 2.2: a recipient MAY recognise a bare LF as line terminator")
    add("bare-lf-field-line", g, EITHER, f"GET /hello HTTP/1.1\r\nHost: {H}\nX: y\r\n\r\n",
        "RFC 9112 2.2: a recipient MAY recognise a bare LF as line terminator")
    add("bare-lf-everywhere", g, EITHER, f"GET /hello HTTP/1.1\nHost: {H}\n\n",
        "RFC 9112 2.2: a recipient MAY recognise a bare LF as line terminator")
    add("nul-in-value", g, EITHER, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX: a\x00b\r\n\r\n",
        "RFC 9110 5.5: NUL in a value MUST be rejected or replaced with SP")
    add("ctl-in-value", g, EITHER, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX: a\x01b\r\n\r\n",
        "RFC 9110 5.5: other CTLs are invalid but recipients MAY retain them")

    # --- Host ---------------------------------------------------------------------------
    g = "host"
    add("host-missing", g, REJECT, "GET /hello HTTP/1.1\r\nX: y\r\n\r\n",
        "RFC 9112 3.2: MUST 400 an HTTP/1.1 request without Host")
    add("host-duplicate-same", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2: MUST 400 more than one Host field line")
    add("host-duplicate-differing", g, REJECT,
        f"GET /hello HTTP/1.1\r\nHost: {H}\r\nHost: evil.example\r\n\r\n",
        "RFC 9112 3.2: MUST 400 more than one Host field line")
    add("host-list", g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {H}, evil.example\r\n\r\n",
        "RFC 9112 3.2: Host = uri-host [ \":\" port ]; invalid value -> MUST 400")
    for name, value in (("host-space", "a b"), ("host-slash", "a/b"), ("host-userinfo", "user@" + H),
                        ("host-bad-port", "127.0.0.1:8x"), ("host-unclosed-ipv6", "[::1")):
        add(name, g, REJECT, f"GET /hello HTTP/1.1\r\nHost: {value}\r\n\r\n",
            "RFC 9112 3.2 / RFC 3986 3.2.2: invalid Host value -> MUST 400")
    add("host-absolute-form-missing", g, REJECT, f"GET http://{H}/hello HTTP/1.1\r\n\r\n",
        "RFC 9112 3.2: Host is required in HTTP/1.1 even with an absolute-form target")
    add("host-empty", g, EITHER, "GET /hello HTTP/1.1\r\nHost:\r\n\r\n",
        "RFC 9112 3.3: an empty authority for http 'can' be rejected or replaced by a configured default")
    add("host-empty-port", g, ACCEPT, "GET /hello HTTP/1.1\r\nHost: example.com:\r\n\r\n",
        "RFC 3986 3.2.3: port = *DIGIT (may be empty)")
    add("host-reg-name", g, ACCEPT, "GET /hello HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
        "RFC 9112 3.2: any valid uri-host")
    add("host-ipv6", g, ACCEPT, "GET /hello HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "RFC 3986 3.2.2: IP-literal")
    add("host-http10-absent", g, ACCEPT_CLOSE, "GET /hello HTTP/1.0\r\n\r\n",
        "RFC 9112 3.2: Host is required of HTTP/1.1 requests only; 1.0 closes after the response")

    # --- versions and request lines -------------------------------------------------------
    g = "request-line"
    for name, version in (("version-http2", "HTTP/2.0"), ("version-http3", "HTTP/3.0")):
        add(name, g, REJECT, f"GET /hello {version}\r\nHost: {H}\r\n\r\n",
            "RFC 9110 15.6.6: major version not supported -> 505")
    for name, version in (("version-lowercase", "http/1.1"), ("version-two-digit-minor", "HTTP/1.10"),
                          ("version-leading-zero", "HTTP/01.1"), ("version-no-minor", "HTTP/1"),
                          ("version-suffix", "HTTP/1.1x"), ("version-empty", "HTTP/"),
                          ("version-nul", "HTTP/1.\x001")):
        add(name, g, REJECT, f"GET /hello {version}\r\nHost: {H}\r\n\r\n",
            "RFC 9112 2.3: HTTP-version = \"HTTP\" \"/\" DIGIT \".\" DIGIT (case-sensitive)")
    add("version-http12", g, ACCEPT, f"GET /hello HTTP/1.2\r\nHost: {H}\r\n\r\n",
        "RFC 9110 2.5: a higher minor version SHOULD be processed as the highest one implemented")
    add("http09-request", g, REJECT, "GET /hello\r\n\r\n",
        "RFC 9112 2.3/3: HTTP/0.9 simple requests are not HTTP/1.1 request lines")
    add("double-space", g, EITHER, f"GET  /hello HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3: recipients MAY parse on whitespace boundaries")
    add("tab-separators", g, EITHER, f"GET\t/hello\tHTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3: recipients MAY treat HTAB as the SP separator")
    add("trailing-space", g, EITHER, f"GET /hello HTTP/1.1 \r\nHost: {H}\r\n\r\n",
        "RFC 9112 3: recipients MAY ignore trailing whitespace")
    add("space-in-target", g, REJECT, f"GET /a b HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2: invalid request-line SHOULD get 400 or 301, SHOULD NOT be autocorrected")
    add("empty-method", g, REJECT, f" /hello HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3: method = token")
    add("method-bad-char", g, REJECT, f"GE(T /hello HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.1: method = token")
    add("method-nul", g, REJECT, f"G\x00T /hello HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.1: method = token")
    add("nul-before-request", g, REJECT, f"\x00GET /hello HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 2.2/3: only CRLF may precede the request line")
    add("target-missing", g, REJECT, f"GET HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3: request-line = method SP request-target SP HTTP-version")
    add("target-relative", g, REJECT, f"GET hello HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2: no such request-target form")
    add("target-fragment", g, REJECT, f"GET /hello#frag HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2.1: origin-form = absolute-path [ \"?\" query ] (no fragment)")
    add("target-nul", g, REJECT, f"GET /hel\x00lo HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 3986 3.3: NUL is no pchar")
    add("asterisk-with-get", g, REJECT, f"GET * HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2.4: asterisk-form only for OPTIONS")
    add("authority-form-with-get", g, REJECT, f"GET 127.0.0.1:80 HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2.3: authority-form only for CONNECT")
    for name, target in (("pct-alnum-not-hex-path", "/hello%GZ"), ("pct-alnum-not-hex-query", "/hello?%zz"),
                         ("pct-truncated-path", "/hello%4"), ("pct-truncated-query", "/hello?a=%")):
        add(name, g, REJECT, f"GET {target} HTTP/1.1\r\nHost: {H}\r\n\r\n",
            "RFC 3986 2.1: pct-encoded = \"%\" HEXDIG HEXDIG (not in the published set)")

    # --- limits -----------------------------------------------------------------------------
    g = "limits"
    add("overlong-request-line", g, REJECT, "", raw=b"GET /" + b"a" * HUGE + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
        why="RFC 9112 3: a target longer than the server wishes to parse MUST get 414")
    fill = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"v" * 8000) for i in range(HUGE // 8000))
    add("overlong-header-section", g, REJECT, "",
        raw=b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\n" + fill + b"\r\n",
        why="RFC 6585 5: 431 for a header section larger than the server accepts")
    add("overlong-field-value", g, REJECT, "",
        raw=b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\nX-Big: " + b"v" * HUGE + b"\r\n\r\n",
        why="RFC 6585 5: 431 for a field larger than the server accepts")

    # --- valid requests that MUST be accepted ------------------------------------------------
    g = "valid"
    add("simple-get", g, ACCEPT, get, "RFC 9112 3")
    add("path-every-pchar", g, ACCEPT,
        "GET /" + bytes(sorted(chars.PATH_CHAR)).decode("latin-1") + f" HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 3986 3.3: path = *( \"/\" segment ), segment = *pchar")
    add("query-every-char", g, ACCEPT,
        "GET /hello?" + bytes(sorted(chars.QUERY_CHAR)).decode("latin-1") + f" HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 3986 3.4: query = *( pchar / \"/\" / \"?\" )")
    add("query-slash-and-question", g, ACCEPT, f"GET /hello?a=/b?c=d HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 3986 3.4: \"/\" and \"?\" are query characters")
    add("pct-valid-path", g, ACCEPT, f"GET /h%41%6c%6C%c3%A9%20%7e HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 3986 2.1: HEXDIG is case-insensitive")
    hexdig = "0123456789ABCDEFabcdef"
    add("pct-every-hexdig-pair-query", g, ACCEPT,
        "GET /hello?" + "".join("%" + a + b for a in hexdig for b in hexdig) + f" HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 3986 2.1: every %HEXDIG HEXDIG")
    add("field-name-every-tchar", g, ACCEPT,
        f"GET /hello HTTP/1.1\r\nHost: {H}\r\n" + bytes(sorted(chars.TCHAR)).decode("latin-1") + ": v\r\n\r\n",
        "RFC 9110 5.6.2: token = 1*tchar")
    add("obs-text-in-value", g, ACCEPT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-Obs: caf\xe9 \x80\xff\r\n\r\n",
        "RFC 9110 5.5: field-vchar = VCHAR / obs-text")
    add("value-htab-and-ows", g, ACCEPT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-Tab:\t a\tb \t\r\n\r\n",
        "RFC 9110 5.5: HTAB inside a value; OWS around it")
    add("value-empty", g, ACCEPT, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nX-Empty:\r\n\r\n",
        "RFC 9110 5.5: field-value = *field-content")
    add("leading-crlf", g, ACCEPT, "\r\n" + get, "RFC 9112 2.2: SHOULD ignore at least one empty line before the request line")
    add("absolute-form", g, ACCEPT, f"GET http://{H}/hello?x=1 HTTP/1.1\r\nHost: {H}\r\n\r\n",
        "RFC 9112 3.2.2: a server MUST accept the absolute-form")
    add("absolute-form-host-differs", g, ACCEPT,
        f"GET http://{H}/hello HTTP/1.1\r\nHost: other.example\r\n\r\n",
        "RFC 9112 3.2.2: the origin server MUST ignore Host and use the target's authority")
    add("options-asterisk", g, PROCESS, f"OPTIONS * HTTP/1.1\r\nHost: {H}\r\n\r\n" + after,
        "RFC 9112 3.2.4: asterisk-form", requests=2)
    add("connection-close", g, ACCEPT_CLOSE, f"GET /hello HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n",
        "RFC 9112 9.6: MUST close after the response to a 'close' request")
    add("http10-keep-alive", g, KEEPALIVE_10, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "RFC 9112 9.3 / appendix C.2.2: HTTP/1.0 persistence by the keep-alive option",
        followup="GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    add("content-length-body", g, PROCESS, post + "Content-Length: 5\r\n\r\nhello" + after,
        "RFC 9112 6.2", requests=2)
    add("content-length-ows", g, PROCESS, post + "Content-Length: \t 5 \t\r\n\r\nhello" + after,
        "RFC 9110 5.5: OWS around a field value is not part of it", requests=2)
    add("content-length-zero", g, PROCESS, post + "Content-Length: 0\r\n\r\n" + after,
        "RFC 9112 6.2", requests=2)
    add("cl-duplicate-same", g, EITHER, post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + after,
        "RFC 9110 8.6: MAY reject or replace by one valid Content-Length", requests=2)
    add("cl-list-same", g, EITHER, post + "Content-Length: 5, 5\r\n\r\nhello" + after,
        "RFC 9110 8.6: MAY reject or replace by one valid Content-Length", requests=2)
    add("chunked-body", g, PROCESS, chunked_post + "5\r\nhello\r\n0\r\n\r\n" + after,
        "RFC 9112 7.1", requests=2)
    add("chunk-ext-tokens", g, PROCESS,
        chunked_post + "5;name=value;flag\r\nhello\r\n0;last\r\n\r\n" + after,
        "RFC 9112 7.1.1: chunk-ext = *( BWS \";\" BWS name [ BWS \"=\" BWS value ] )", requests=2)
    add("chunk-ext-quoted", g, PROCESS,
        chunked_post + "5;q=\"a \\\"b\\\" ;c\"\r\nhello\r\n0\r\n\r\n" + after,
        "RFC 9112 7.1.1: chunk-ext-val = token / quoted-string (quoted-pair and ';' inside)", requests=2)
    add("chunk-ext-bws", g, PROCESS, chunked_post + "5 ; name = value\r\nhello\r\n0\r\n\r\n" + after,
        "RFC 9112 7.1.1 + RFC 9110 5.6.3: recipients MUST accept BWS", requests=2)
    add("chunked-trailers", g, PROCESS,
        chunked_post + "5\r\nhello\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n" + after,
        "RFC 9112 7.1.2: trailer-section", requests=2)
    add("chunk-size-upper-hex", g, PROCESS, chunked_post + "A\r\n0123456789\r\n0\r\n\r\n" + after,
        "RFC 9112 7.1: chunk-size = 1*HEXDIG", requests=2)
    add("chunk-size-lower-hex", g, PROCESS, chunked_post + "a\r\n0123456789\r\n0\r\n\r\n" + after,
        "RFC 9112 7.1: chunk-size = 1*HEXDIG (case-insensitive, RFC 5234 2.3)", requests=2)
    add("chunk-size-leading-zeros", g, PROCESS, chunked_post + "0005\r\nhello\r\n000\r\n\r\n" + after,
        "RFC 9112 7.1: chunk-size = 1*HEXDIG, last-chunk = 1*(\"0\")", requests=2)
    add("te-chunked-mixed-case", g, PROCESS, post + "Transfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + after,
        "RFC 9112 7: transfer-coding names are case-insensitive", requests=2)
    add("te-htab-ows", g, PROCESS, post + "Transfer-Encoding:\tchunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + after,
        "RFC 9110 5.6.3: OWS includes HTAB", requests=2)
    pipeline = "".join(f"GET /p{i} HTTP/1.1\r\nHost: {H}\r\n\r\n" for i in range(7))
    add("pipelined-gets", g, ACCEPT_CLOSE,
        pipeline + f"GET /p7 HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n",
        "RFC 9112 9.3.2: a server MUST answer pipelined requests in the order received", requests=8)
    add("pipelined-mixed", g, PROCESS,
        f"GET /a HTTP/1.1\r\nHost: {H}\r\n\r\n" + post + "Content-Length: 5\r\n\r\nhello"
        + chunked_post + "3\r\nabc\r\n0\r\n\r\n" + after,
        "RFC 9112 9.3.2: pipelined requests with bodies, answered in order", requests=4)
    return out


def liveness_case(host: bytes) -> Case:
    return Case("liveness-after-all", "liveness", ACCEPT,
                _b("GET /hello HTTP/1.1\r\nHost: {H}\r\n\r\n", host),
                "the server still serves after every case above")


# --- running ---------------------------------------------------------------------------------

async def _read_until(loop, sock, buf: bytearray, deadline: float, want: int, grace: float,
                      wait_close: bool) -> bool:
    """Read into buf until the server closes (-> True), or `want` responses are in
    and then `grace` seconds pass quietly (or, with wait_close, the deadline passes)."""
    while True:
        rs, partial = resp_mod.split(bytes(buf), closed=False)
        now = loop.time()
        if now >= deadline:
            return False
        have_all = len(rs) >= want and not partial
        limit = deadline if (wait_close or not have_all) else min(deadline, now + grace)
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), max(0.0, limit - now))
        except asyncio.TimeoutError:
            if have_all and not wait_close:
                return False
            continue
        except OSError:          # reset: whatever was queued before it has been read
            return True
        if not chunk:
            return True
        buf += chunk


async def _send(loop, sock, data: bytes) -> str:
    """Send everything; a server that stops reading (closes, resets) is no error here."""
    try:
        await loop.sock_sendall(sock, data)
        return ""
    except OSError as e:
        return f"send stopped: {e.__class__.__name__}"


async def run_case(case: Case, host: str, port: int, timeout: float = 5.0, grace: float = 0.3):
    """Send one case on a new connection; (Outcome, parsed responses).

    Raw non-blocking sockets rather than streams: when a server answers early
    (e.g. 414 after the first kilobytes of a 4 MiB line) and closes, our send
    fails, yet its answer is still in the receive queue and must be read; the
    sender runs beside the reader for that reason.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    buf = bytearray()
    closed = False
    sender = None
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            return Outcome([], False, False, error=f"connect failed: {e!r}"), []
        sender = asyncio.ensure_future(_send(loop, sock, case.data))
        deadline = loop.time() + timeout
        wait_close = case.expect in (REJECT_CLOSE, ONE_THEN_CLOSE, ACCEPT_CLOSE)
        want = 1 if case.expect in (REJECT, REJECT_CLOSE, ONE_THEN_CLOSE, KEEPALIVE_10) else case.requests
        closed = await _read_until(loop, sock, buf, deadline, want, grace, wait_close)
        if case.expect == KEEPALIVE_10 and not closed:
            rs, _ = resp_mod.split(bytes(buf), closed=False)
            if rs and b"keep-alive" in rs[0].connection_tokens():
                await _send(loop, sock, case.followup)
                closed = await _read_until(loop, sock, buf, loop.time() + timeout, 2, grace, False)
            elif rs:
                closed = await _read_until(loop, sock, buf, loop.time() + timeout, 99, grace, True)
        error = ""
        if sender.done():
            error = sender.result()
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()
    rs, partial = resp_mod.split(bytes(buf), closed=closed)
    return Outcome([r.status for r in rs], closed, partial, error), rs


def judge(case: Case, outcome: Outcome, rs) -> Tuple[bool, str]:
    """(passed, reason) for one case's outcome."""
    st = outcome.statuses
    ok2 = [200 <= s < 300 for s in st]

    def rejected() -> bool:
        if any(ok2):
            return False
        if st:
            return st[0] >= 400 or st[0] == 301
        return outcome.closed

    def accepted(n: int, process: bool) -> bool:
        if len(st) != n or outcome.partial:
            return False
        if not process:
            return all(ok2)
        # POST/OPTIONS: any application status but a syntax rejection; the
        # GET sent after them must be answered 2xx.
        parsed = all(s != 0 and s not in SYNTAX_REJECTIONS for s in st)
        return parsed and (n == 1 or ok2[-1])

    k = case.expect
    if k == ACCEPT:
        passed = accepted(case.requests, False)
    elif k == ACCEPT_CLOSE:
        passed = accepted(case.requests, False) and outcome.closed
    elif k == PROCESS:
        passed = accepted(case.requests, True)
    elif k == REJECT:
        passed = rejected()
    elif k == REJECT_CLOSE:
        passed = rejected() and outcome.closed
    elif k == ONE_THEN_CLOSE:
        passed = len(st) <= 1 and outcome.closed and not outcome.partial and (not st or st[0] != 0)
    elif k == EITHER:
        passed = rejected() or accepted(case.requests, True)
    elif k == KEEPALIVE_10:
        if not st or not ok2[0]:
            passed = False
        elif b"keep-alive" in rs[0].connection_tokens():
            passed = len(st) == 2 and ok2[1]
        else:
            passed = len(st) == 1 and outcome.closed
    else:  # pragma: no cover - a typo in a case table
        raise ValueError(f"unknown expectation {k!r}")
    return passed, outcome.describe() + (f" ({outcome.error})" if outcome.error else "")


async def run_all(host: str, port: int, concurrency: int = 8, timeout: float = 5.0,
                  selected: Optional[List[str]] = None):
    """Run every case (at most `concurrency` at a time), then the liveness probe.

    Returns a list of (case, passed, observed)."""
    hostport = f"{host}:{port}".encode()
    todo = cases(hostport)
    if selected:
        unknown = set(selected) - {c.name for c in todo}
        if unknown:
            raise ValueError(f"unknown strict case(s): {', '.join(sorted(unknown))}")
        todo = [c for c in todo if c.name in selected]
    sem = asyncio.Semaphore(concurrency)

    async def one(case):
        async with sem:
            outcome, rs = await run_case(case, host, port, timeout)
            passed, observed = judge(case, outcome, rs)
            return case, passed, observed

    results = list(await asyncio.gather(*(one(c) for c in todo)))
    live = liveness_case(hostport)
    outcome, rs = await run_case(live, host, port, timeout)
    results.append((live, *judge(live, outcome, rs)))
    return results

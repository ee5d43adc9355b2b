"""Character classes of RFC 9110 and RFC 3986, as frozensets of byte values.

They are the single source of truth: the Python parser compiles its regular
expressions from them, the C build generates its lookup tables from them
(native/gen_tables.py), and the compliance suites derive their invalid-byte sets
from them.
"""
ALPHA = frozenset(range(0x41, 0x5B)) | frozenset(range(0x61, 0x7B))
DIGIT = frozenset(range(0x30, 0x3A))
HEXDIG = DIGIT | frozenset(b"ABCDEFabcdef")
# RFC 9110 5.6.2: tchar
TCHAR = ALPHA | DIGIT | frozenset(b"!#$%&'*+-.^_`|~")
# RFC 3986 2.3 / 2.2
UNRESERVED = ALPHA | DIGIT | frozenset(b"-._~")
SUB_DELIMS = frozenset(b"!$&'()*+,;=")
# pchar without pct-encoded; '%' is checked separately (must start %HH)
PCHAR = UNRESERVED | SUB_DELIMS | frozenset(b":@")
# bytes allowed in an absolute path (segments and '/')
PATH_CHAR = PCHAR | frozenset(b"/")
# RFC 3986 3.4: query = *( pchar / "/" / "?" )
QUERY_CHAR = PCHAR | frozenset(b"/?")
# RFC 9110 5.5: field-vchar = VCHAR / obs-text; field-value adds SP and HTAB inside
VCHAR = frozenset(range(0x21, 0x7F))
OBS_TEXT = frozenset(range(0x80, 0x100))
FIELD_VCHAR = VCHAR | OBS_TEXT
FIELD_CONTENT = FIELD_VCHAR | frozenset(b" \t")
# reg-name / IPv4 (RFC 3986 3.2.2) plus '%' for pct-encoded; IP-literal handled apart
REG_NAME = UNRESERVED | SUB_DELIMS
SCHEME_CHAR = ALPHA | DIGIT | frozenset(b"+-.")


def regex_class(chars, extra=b""):
    """A regular-expression character class (bytes) matching exactly `chars`."""
    out = []
    for b in sorted(set(chars) | set(extra)):
        out.append(b"\\x%02x" % b)
    return b"[" + b"".join(out) + b"]"

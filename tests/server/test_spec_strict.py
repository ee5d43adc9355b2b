"""The strict compliance suite's cases in the spec corpus (tests/spec/strict/,
spec.load_strict_cases) and how compliance.strict.cases reads them."""
import pytest

from kourier_lab import spec
from kourier_lab.compliance import strict


def test_strict_fixtures_load():
    loaded = spec.load_strict_cases()
    names = [c.name for c in loaded]
    assert len(names) == len(set(names)) and len(loaded) > 100
    assert set(spec.STRICT_EXPECTS) == set(strict.KINDS)
    assert {c.expect for c in loaded} == set(strict.KINDS)
    files = {p.stem for p in (spec.spec_folder() / "strict").glob("*.txt")}
    assert {c.group for c in loaded} == files == set(strict.GROUPS)
    for c in loaded:
        assert c.clause.startswith("RFC "), c.source
        assert c.data and c.requests >= 1, c.source
        assert (c.followup is not None) == (c.expect == strict.KEEPALIVE_10), c.source
        file, _, line = c.source.partition(":")
        assert file == c.group + ".txt" and line.isdigit()
    # the host goes in at run time, as the one of the server under test
    assert sum(b"{H}" in c.data for c in loaded) > 100


def test_cases_put_the_host_in_and_keep_the_group_order():
    cases = strict.cases(b"10.0.0.1:99")
    assert not any(b"{H}" in c.data or (c.followup and b"{H}" in c.followup) for c in cases)
    assert list(dict.fromkeys(c.group for c in cases)) == list(strict.GROUPS)
    by = {c.name: c for c in cases}
    assert by["host-userinfo"].data == b"GET /hello HTTP/1.1\r\nHost: user@10.0.0.1:99\r\n\r\n"
    assert by["cl-overflow"].data.endswith(b"Content-Length: " + b"9" * 40 + b"\r\n\r\nhello")


def _write(folder, name, text):
    (folder / "strict").mkdir(exist_ok=True)
    (folder / "strict" / name).write_text(text)


GOOD = "## a\nclause: RFC 9112 3\nexpect: accept\nrequest: GET / HTTP/1.1\\r\\nHost: {H}\\r\\n\\r\\n\n"


@pytest.mark.parametrize("text,error", [
    (GOOD + "colour: red\n", r"x.txt:5: unknown key 'colour'"),
    ("## a\nclause: RFC 9112 3\nexpect: maybe\nrequest: GET\n", r"x.txt:3: expect is one of accept, "),
    ("## a\nexpect: reject\nrequest: GET\n", r"x.txt:1: case 'a' needs clause:, expect: and request:"),
    (GOOD.replace("expect: accept", "expect: reject\nrequests: two"), r"x.txt:4: requests takes a positive"),
    (GOOD + "followup: GET /again HTTP/1.0\\r\\n\\r\\n\n", r"x.txt:1: case 'a': followup: goes with"),
    (GOOD.replace("accept", "keepalive-1.0"), r"x.txt:1: case 'a': followup: goes with"),
    (GOOD + "request: \\xZZ\n", r"x.txt:5: bad escaped bytes"),
    ("stray\n" + GOOD, r"x.txt:1: a line outside a case"),
])
def test_malformed_strict_fixture_names_the_line(tmp_path, text, error):
    _write(tmp_path, "x.txt", text)
    with pytest.raises(spec.SpecError, match=error):
        spec.load_strict_cases(tmp_path)


def test_a_name_used_twice_names_both_places(tmp_path):
    _write(tmp_path, "a.txt", GOOD)
    _write(tmp_path, "b.txt", "# b\n" + GOOD)
    with pytest.raises(spec.SpecError, match=r"b.txt:2: case name 'a' already used at a.txt:1"):
        spec.load_strict_cases(tmp_path)


def test_kourier_lab_spec_names_the_folder(tmp_path, monkeypatch):
    _write(tmp_path, "aa-extra.txt", GOOD.replace("## a", "## late"))
    _write(tmp_path, "valid.txt", GOOD + "\n## b\nclause: RFC 9112 9.3\nexpect: keepalive-1.0\n"
           "request: GET / HTTP/1.0\\r\\n\nrequest: \\r\\n\n"
           "followup: GET /again HTTP/1.0\\r\\n\nfollowup: Host: {H}\\r\\n\\r\\n\n")
    monkeypatch.setenv("KOURIER_LAB_SPEC", str(tmp_path))
    cases = strict.cases(b"h:1")
    # a group strict.GROUPS does not name comes after the named ones
    assert [(c.name, c.group) for c in cases] == [("a", "valid"), ("b", "valid"), ("late", "aa-extra")]
    assert cases[0].data == b"GET / HTTP/1.1\r\nHost: h:1\r\n\r\n" and cases[0].why == "RFC 9112 3"
    # one value over several lines is their concatenation, {H} in the followup too
    assert cases[1].data == b"GET / HTTP/1.0\r\n\r\n"
    assert cases[1].followup == b"GET /again HTTP/1.0\r\nHost: h:1\r\n\r\n"

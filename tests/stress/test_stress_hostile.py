"""`kourier-lab hostile`: rows with the answer and the server's CPU per input.

The figures themselves (CPU per byte, linearity) are read from the rows and the
closing notes, never asserted here: these tests check that each input gets a
strict server's answer and that the rows say what was sent and measured."""
import pytest

from kourier_lab.stress import hostile


def test_inputs_are_what_they_say():
    head = hostile._valid_head(16000)
    assert len(head) == 16000 and head.endswith(b"\r\n\r\n") and head.count(b"\r\n") - 1 <= 100
    assert len(hostile._valid_head(4000)) == 4000
    body = hostile._chunked(60 << 10, 64)
    assert body.count(b"\r\n40\r\n") == (60 << 10) // 64 and body.endswith(b"\r\n0\r\n\r\n")
    assert set(hostile.QUICK_INPUTS) <= set(hostile.BY_NAME)
    assert all(a in hostile.BY_NAME and b in hostile.BY_NAME for a, b in hostile.SIZE_PAIRS)


@pytest.mark.timeout(300)
def test_quick_run_answers_every_input_and_records_the_cost(tmp_path):
    df = hostile.run_hostile(["python/python/python"], quick=True, repetitions=1, out=tmp_path, echo=None)
    assert list(df["shape"]) == list(hostile.QUICK_INPUTS)
    assert (df["status"] == "ok").all(), df["note"].tolist()
    assert df["answered_as_expected"].all(), df[["shape", "answer_status"]].to_dict("records")
    assert (df["sent_bytes"] > 0).all() and (df["server_cpu_s"] >= 0).all()
    # a trickle is many writes; the CRLF flood is answered before most of it is sent
    assert int(df.loc[df["shape"] == "head_trickle_4k", "writes"].iloc[0]) > 1000
    assert (tmp_path / df.attrs["batch_id"] / "rows.parquet").exists()
    table = hostile.format_hostile_table(df)
    assert "head_trickle_4k" in table and "ns/byte" in table


def test_cli_rejects_bad_arguments_in_one_line(capsys):
    from kourier_lab.cli import main
    assert main(["hostile", "--inputs", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown input 'nope'" in err[0]
    assert main(["hostile", "--stacks", "no/such/stack", "--inputs", "crlf_flood"]) == 2
    assert "not a runnable stack" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_an_input_over_the_head_limit_is_a_skipped_row_naming_the_flag(tmp_path):
    df = hostile.run_hostile(["python/python/python"], inputs=["head_trickle_60k"], repetitions=1,
                             out=tmp_path, echo=None)
    assert list(df["status"]) == ["skipped"]
    assert "--max-header-bytes >= 60000" in df["note"].iloc[0]
    assert "skipped: needs --max-header-bytes" in hostile.format_hostile_table(df)


@pytest.mark.timeout(120)
def test_a_server_that_does_not_start_is_a_failed_row_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(hostile, "server_args", lambda max_header_bytes: ["--no-such-option"])
    said = []
    df = hostile.run_hostile(["python/python/python"], inputs=["crlf_flood", "chunked_1"],
                             repetitions=1, out=tmp_path, echo=said.append)
    assert list(df["status"]) == ["failed", "failed"]
    note = df["note"].iloc[0]
    assert note.startswith("start: ") and "\n" not in note and "--no-such-option" in note
    assert any("the server did not start" in s for s in said)
    assert "crlf_flood" in hostile.format_hostile_table(df)

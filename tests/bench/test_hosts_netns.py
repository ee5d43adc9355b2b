"""The [hosts] path end to end: network namespaces as hosts, Debian's sshd in each, asyncssh.

The fixture builds its own little network: a namespace "sw" holding a bridge,
and one veth pair from it to each of the server and two client namespaces and
to this (root) namespace, all in one /24 of its own.  No namespace has a
default route and nothing is forwarded anywhere: the bridge has no uplink.
Each host namespace runs sshd (throwaway host and client keys, strict
known_hosts), and the experiment drives them exactly as it would drive three
machines.  Everything is removed afterwards, also when a test fails.
"""
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kourier_lab.paths import repo_root
from kourier_lab.bench.hosts.remote import merge_distributions, read_distribution
from kourier_lab.bench.experiment import parse_experiment

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ROLES = ("srv", "c1", "c2")


def _sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def _why_no_netns():
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    if not os.path.exists(SSHD):
        return "sshd is not installed (Debian: apt-get install openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen is not installed (Debian: apt-get install openssh-client)"
    probe = f"klprobe{os.getpid()}"
    r = _sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    _sh("ip", "netns", "del", probe, check=False)
    return None


def _free_subnet():
    """A 10.213.N.0/24 no interface of this machine uses."""
    used = _sh("ip", "-4", "-o", "addr").stdout
    for n in range((os.getpid() % 200) + 20, 255):
        if f"10.213.{n}." not in used:
            return f"10.213.{n}"
    pytest.skip("no free 10.213.N.0/24 subnet for the test network")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = _why_no_netns()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("netlab")
    tag = f"kl{os.getpid() % 100000}"
    net = _free_subnet()
    names = {role: f"{tag}-{role}" for role in ("sw", *ROLES)}
    addr = {"root": f"{net}.1", "srv": f"{net}.2", "c1": f"{net}.3", "c2": f"{net}.4"}
    sshds = []
    made = []
    try:
        for ns in names.values():
            _sh("ip", "netns", "add", ns)
            made.append(ns)
        sw = names["sw"]
        _sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", sw, "link", "set", "br0", "up")
        for i, role in enumerate(("root", *ROLES)):
            port = f"p{i}"
            inner = f"{tag}r" if role == "root" else "eth0"
            # the peer goes to the host's namespace (ours, by pid, for the root one)
            target = ["netns", str(os.getpid()) if role == "root" else names[role]]
            _sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", inner, *target)
            _sh("ip", "-n", sw, "link", "set", port, "master", "br0")
            _sh("ip", "-n", sw, "link", "set", port, "up")
            run_in = [] if role == "root" else ["-n", names[role]]
            _sh("ip", *run_in, "addr", "add", f"{addr[role]}/24", "dev", inner)
            _sh("ip", *run_in, "link", "set", inner, "up")
            if role != "root":
                _sh("ip", *run_in, "link", "set", "lo", "up")
        # throwaway keys: one host key for all three sshds, one client key
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "host_key"))
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "id_ed25519"))
        shutil.copy(tmp / "id_ed25519.pub", tmp / "authorized_keys")
        host_pub = (tmp / "host_key.pub").read_text().split()[:2]
        (tmp / "known_hosts").write_text("".join(f"{addr[r]} {host_pub[0]} {host_pub[1]}\n"
                                                 for r in ROLES))
        os.makedirs("/run/sshd", exist_ok=True)     # sshd's privilege-separation directory
        for role in ROLES:
            conf = tmp / f"sshd-{role}.conf"
            conf.write_text(
                f"ListenAddress {addr[role]}\nPort 22\nHostKey {tmp / 'host_key'}\n"
                f"PidFile {tmp / f'sshd-{role}.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "Subsystem sftp internal-sftp\nMaxStartups 50\nMaxSessions 50\n")
            log = open(tmp / f"sshd-{role}.log", "wb")
            sshds.append(subprocess.Popen(["ip", "netns", "exec", names[role], SSHD, "-D", "-e",
                                           "-f", str(conf)], stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        for role in ROLES:
            while True:
                try:
                    socket.create_connection((addr[role], 22), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"sshd in {names[role]} did not listen: "
                                    f"{(tmp / f'sshd-{role}.log').read_text()[-300:]}")
                    time.sleep(0.05)
        yield {"tmp": tmp, "addr": addr, "names": names}
    finally:
        for p in sshds:
            p.terminate()
        for p in sshds:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in made:
            # anything of ours still running in a namespace goes with it
            for pid in _sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            _sh("ip", "netns", "del", ns, check=False)
        left = set(_sh("ip", "netns", "list", check=False).stdout.split()) & set(made)
        assert not left, f"namespaces left behind: {left}"


def _hosts_table(lab, **extra):
    a, tmp = lab["addr"], lab["tmp"]
    table = {"server": f"ssh://root@{a['srv']}", "clients": [f"ssh://root@{a['c1']}",
                                                             f"ssh://root@{a['c2']}"],
             "address": a["srv"], "identity": str(tmp / "id_ed25519"),
             "known_hosts": str(tmp / "known_hosts"), "workdir": str(repo_root()),
             "python": sys.executable}
    table.update(extra)
    return table


def _experiment(lab, hosts, name="hosts_netns", stacks=("c/c/c",)):
    return parse_experiment({
        "name": name, "stacks": list(stacks), "shapes": ["pipelined"], "repetitions": 2,
        "duration": 1, "warmup": 0, "pause": 0.1,
        "shape": {"pipelined": {"connections": 16, "pipeline": 16}},
        "hosts": hosts}, "netns.toml")


def test_server_and_two_clients_over_ssh(lab, tmp_path):
    from kourier_lab.bench.run import run_experiment
    exp = _experiment(lab, _hosts_table(lab))
    df = run_experiment(exp, out=tmp_path, progress=False, summary=False, echo=lambda s: None)
    batch_dir = Path(df.attrs["batch_dir"])
    assert set(df["server"]) == {"ceiling", "c/c/c"}
    assert (df["status"] == "ok").all(), df[["server", "status", "note"]].to_string()
    a = lab["addr"]
    for _, row in df.iterrows():
        # the SSH path and the address binding: wrk dialled the server's namespace address
        assert row["wrk_url"].startswith(f"http://{a['srv']}:")
        assert row["server_host"] == a["srv"] and row["client_hosts"] == f"{a['c1']};{a['c2']}"
        assert row["server_pinned"] and row["server_cpus"] == row["server_host_cpus"]
        # per-host metadata
        for col in ("server_host_cpu_model", "server_host_kernel", "server_host_smt_siblings",
                    "client_host_cpu_model", "server_host_nic"):
            assert row[col], col
        assert "eth0" in row["server_host_nic"]
        assert len(row["client_host_cpu_model"].split(";")) == 2
        # the merge: requests and req/s summed over the two clients ...
        per_client = [float(v) for v in row["client_req_per_s"].split(";")]
        assert len(per_client) == 2 and all(v > 0 for v in per_client)
        assert row["req_per_s"] == pytest.approx(sum(per_client), rel=1e-6)
        assert row["requests"] == sum(int(v) for v in row["client_requests"].split(";"))
        assert row["connections"] == 16 and row["connections_reported"] == 16
        # ... latency from the merged distributions of both clients' raw outputs
        raws = [batch_dir.parent / p for p in row["raw_paths"].split(";")]
        assert len(raws) == 2 and all(p.is_file() for p in raws)
        dists = [read_distribution(p.with_suffix(".latency")) for p in raws]
        assert all(len(d) for d in dists)
        merged = merge_distributions(dists)
        assert row["latency_samples"] == int(merged[:, 1].sum())
        assert row["latency_max_ms"] == pytest.approx(merged[-1, 0] / 1e3)
        assert row["latency_hdr"]
        # the server host sampled the server's tree
        assert row["server_cpu_s"] > 0 and row["server_vmhwm_kb"] > 0
        assert row["cpu_us_per_req"] > 0
        # the aligned windows: measured, and within the harness's slack
        assert 0 <= row["window_start_spread_ms"] < 1000
        assert row["clock_uncertainty_ms"] >= 0
        # one kernel here: namespaces are one machine, whose CPUs are split as the profile says
        assert not (set(row["server_cpus"].split(",")) & set(
            row["client_cpus"].replace(";", ",").split(",")))
    # clean-up: the server is gone and the hosts' scratch folders removed
    port = int(df["server_port"].iloc[-1])
    with pytest.raises(OSError):
        socket.create_connection((a["srv"], port), timeout=1).close()
    assert not (repo_root() / "data" / "remote" / df.attrs["batch_id"]).exists()


def test_wrong_commit_is_one_clear_line(lab, tmp_path):
    from kourier_lab.bench.hosts.remote import RemoteError
    from kourier_lab.bench.run import run_experiment
    fake = tmp_path / "fake-checkout"
    (fake / "kourier_lab").mkdir(parents=True)
    # a "checkout" whose agent reports another commit: the package, with .kourier-commit
    shutil.copytree(repo_root() / "kourier_lab", fake / "kourier_lab", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (fake / "native").mkdir()
    (fake / ".kourier-commit").write_text("0" * 40 + "\n")
    exp = _experiment(lab, _hosts_table(lab, workdir=str(fake)))
    with pytest.raises(RemoteError, match=r"runs commit 0{40}, this checkout .*prepare = \"ship\""):
        run_experiment(exp, out=tmp_path / "out", progress=False, summary=False,
                       echo=lambda s: None)


def test_sweep_over_two_host_pairs_writes_one_batch(lab, tmp_path):
    pytest.importorskip("distributed")
    from kourier_lab.bench.run import run_experiment
    a = lab["addr"]
    hosts = _hosts_table(lab)
    del hosts["server"], hosts["clients"], hosts["address"]
    # both pairs use the server namespace: the sweep must never load it twice at once
    hosts["pairs"] = [{"server": f"ssh://root@{a['srv']}", "clients": [f"ssh://root@{a['c1']}"],
                       "address": a["srv"]},
                      {"server": f"ssh://root@{a['srv']}", "clients": [f"ssh://root@{a['c2']}"],
                       "address": a["srv"]}]
    # the ceiling alone (always measured): one task per pair, two tasks
    exp = dataclasses.replace(_experiment(lab, hosts, "hosts_sweep", stacks=()), repetitions=1)
    df = run_experiment(exp, out=tmp_path, progress=False, summary=False, echo=lambda s: None)
    assert len(list(tmp_path.iterdir())) == 1                     # one batch
    assert df["batch_id"].nunique() == 1
    assert (df["status"] == "ok").all(), df[["server", "status", "note"]].to_string()
    assert set(df["host_pair"]) == {f"{a['srv']}<-{a['c1']}", f"{a['srv']}<-{a['c2']}"}
    assert len(df) == 2 and set(df["server"]) == {"ceiling"}      # 2 pairs x 1 run
    assert df["dask_task"].nunique() == 2
    # the two pairs share the server host: their tasks' windows never overlapped
    spans = sorted(zip(df["task_start"], df["task_end"]))
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s1 >= e0, spans


def test_ship_puts_the_commit_on_a_fresh_host(lab, tmp_path):
    """prepare = "ship": git archive over SFTP into an empty workdir, the set-up command, a run."""
    from kourier_lab.bench.run.machine import git_commit
    from kourier_lab.bench.run import run_experiment
    commit = git_commit()
    if commit.endswith("+dirty") or commit == "unknown":
        pytest.skip("this checkout has uncommitted changes: only a commit can be shipped")
    fresh = tmp_path / "shipped"
    hosts = _hosts_table(lab, workdir=str(fresh), prepare="ship", setup="touch set-up-ran")
    hosts["clients"] = hosts["clients"][:1]
    exp = dataclasses.replace(_experiment(lab, hosts, "hosts_ship", stacks=()), repetitions=1)
    df = run_experiment(exp, out=tmp_path / "out", progress=False, summary=False,
                        echo=lambda s: None)
    assert (df["status"] == "ok").all(), df[["server", "status", "note"]].to_string()
    assert (fresh / ".kourier-commit").read_text().strip() == commit
    assert (fresh / "set-up-ran").exists() and (fresh / "kourier_lab" / "bench" / "hosts" / "agent.py").exists()
    assert not (fresh / ".git").exists()

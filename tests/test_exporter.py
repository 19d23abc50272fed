"""pmaps exporter against a real Prometheus (Debian's `prometheus`, tests/setup-system.sh installs it):
Prometheus scrapes the exporter on loopback and its query API must return a known child's
smaps_rollup figures. Also promtool's lint, bounded series under process churn, TLS + bcrypt basic
auth (whose timing does not tell user names), bad --listen and config files (exit codes), clean
SIGTERM, /metrics on its path only, and a server that idle, slow or flooding clients cannot exhaust."""
from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import NOBODY, ROOT, pmaps_cmd
from memchild import MemChild
from test_swap import swapfile  # noqa: F401  (the fixture: make, enable, then remove a swap file)

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def exporter(*args: str, user: bool = False) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A real `pmaps exporter` subprocess on a free loopback port; SIGTERM at the end must exit 0."""
    port = free_port()
    argv = [sys.executable, "-m", "pmaps", "exporter", "--listen", f"127.0.0.1:{port}", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen((NOBODY if user else []) + argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = p.stderr.readline()  # type: ignore[union-attr]  # written once the port is bound
        assert "serving" in first, first
        yield p, port
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError("the exporter did not stop on SIGTERM") from None
    assert p.returncode == 0, err
    assert "Traceback" not in err and "stopped (SIGTERM)" in err, err


def scrape(port: int, wait_for, what: str = "a completed scan", **kw: object) -> str:
    """/metrics once it holds a completed scan."""

    def get() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5, **kw) as r:  # type: ignore[arg-type]
                text = r.read().decode()
        except OSError:
            return None
        return text if "\npmaps_scan_processes " in text else None

    return str(wait_for(get, what, timeout=30))


def series(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def prometheus(tmp_path):
    """Start a real Prometheus on a free loopback port scraping the given target every second."""
    if not shutil.which("prometheus"):
        pytest.skip("no prometheus binary (tests/setup-system.sh installs Debian's package)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> str:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
                       f"  - job_name: pmaps\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
        procs.append(subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path}/data",
                                       f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def query(base: str, expr: str) -> list[dict]:
    try:
        with urllib.request.urlopen(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5) as r:
            doc = json.load(r)
    except OSError:
        return []
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


@pytest.mark.root
def test_prometheus_sees_smaps_rollup(prometheus, swapfile, wait_for):  # noqa: F811
    """Through Prometheus' query API: the child's RSS, PSS (within 1 kB), USS and Swap equal its smaps_rollup."""
    with MemChild(["a:anon:2M", "f:file:1M", "s:shared:512K", "sw:anon:1M"]) as mc:
        for _ in range(50):
            mc.cmd("pageout sw 0 256")
            if _rollup(mc.pid)["Swap"] >= 64 * 4096:
                break
        assert _rollup(mc.pid)["Swap"] > 0, "MADV_PAGEOUT pushed nothing out"
        # --include-self: smaps_rollup, the oracle, is read while the exporter maps its libraries too.
        with exporter("--interval", "0.5", "--max-cpu", "100", "--by", "pid", "--top", "3",
                      "--pids", str(mc.pid), "--include-self") as (exp, port):
            base = prometheus(port)
            pid = str(mc.pid)
            wait_for(lambda: query(base, f'pmaps_rss_bytes{{pid="{pid}"}}'), "the first sample in Prometheus", 30)
            assert query(base, 'up{job="pmaps"}')[0]["value"][1] == "1"

            def agree() -> dict | None:
                k = _rollup(mc.pid)
                got = {}
                for name in ("rss", "pss", "uss", "swap"):
                    r = query(base, f'pmaps_{name}_bytes{{pid="{pid}"}}')
                    got[name] = int(float(r[0]["value"][1])) if r else None
                want = {"rss": k["Rss"], "pss": k["Pss"], "uss": k["Private_Clean"] + k["Private_Dirty"],
                        "swap": k["Swap"]}
                agree.last = (got, want)  # type: ignore[attr-defined]
                ok = all(got[n] == want[n] for n in ("rss", "uss", "swap")) and got["pss"] is not None \
                    and abs(got["pss"] - want["pss"]) <= 1024
                return got if ok else None

            # Library map counts move as other processes come and go: wait for a scan of a quiet moment.
            try:
                got = wait_for(agree, "Prometheus to agree with smaps_rollup", 30)
            except pytest.fail.Exception:
                raise AssertionError(f"Prometheus (got) vs smaps_rollup (want): {agree.last}") from None  # type: ignore[attr-defined]
            assert got["swap"] > 0 and got["rss"] > 3 << 20
            assert query(base, "pmaps_scans_total")[0]["value"][1] != "0"


def _rollup(pid: int) -> dict[str, int]:
    from pmaps.kernel.smaps import read_rollup

    return read_rollup(pid)


def test_promtool_and_no_addresses(wait_for):
    if not shutil.which("promtool"):
        pytest.skip("no promtool (tests/setup-system.sh installs Debian's prometheus)")
    with MemChild(["a:anon:256K", "t:thp:4M"]) as mc, exporter("--interval", "0.5", "--max-cpu", "100") as (p, port):
        text = scrape(port, wait_for)
        # No THP of its own: khugepaged's work on the exporter would stop every process's reuse.
        assert "THP_enabled:\t0" in Path(f"/proc/{p.pid}/status").read_text()
        # From the second scan on, what stopped reuse since the one before is there too.
        wait_for(lambda: series(scrape(port, wait_for))["pmaps_scans_total"][0][1] >= 2, "a second scan")
        text = scrape(port, wait_for)
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        s = series(text)
        names = {n for n in s}
        for want in ("pmaps_rss_bytes", "pmaps_pss_bytes", "pmaps_uss_bytes", "pmaps_swap_pss_bytes",
                     "pmaps_anon_thp_bytes", "pmaps_shmem_bytes", "pmaps_locked_bytes", "pmaps_pages",
                     "pmaps_processes", "pmaps_scan_duration_seconds", "pmaps_exporter_rss_bytes",
                     "pmaps_scan_interval_seconds", "pmaps_scan_skipped_total", "pmaps_scan_cache_bytes",
                     "pmaps_scan_reuse_blocked"):
            assert want in names, want
        states = {lab["state"] for lab, _ in s["pmaps_pages"]}
        assert {"active_anon", "inactive_file", "thp", "mlocked", "zero", "unevictable"} <= states
        # The child's THP region (MADV_HUGEPAGE, THP "madvise" here) counts in its program's anon_thp.
        if _rollup(mc.pid)["AnonHugePages"] > 0:
            prog = Path(f"/proc/{mc.pid}/comm").read_text().strip()
            thp = {lab["program"]: v for lab, v in s["pmaps_anon_thp_bytes"]}
            assert thp[prog] >= 2 << 20
        # Never a PFN or an address: no label holds a hex number, no label name speaks of them.
        for fam in s.values():
            for lab, _ in fam:
                assert not set(lab) & {"pfn", "addr", "address", "start"}
                assert not any(v.startswith("0x") for v in lab.values())


def test_unprivileged_says_what_it_cannot_know(wait_for):
    """As nobody: no PSS series at all, and pmaps_unknown{what="pss"} says why."""
    with exporter("--interval", "0.5", user=True) as (_, port):
        s = series(scrape(port, wait_for))
        assert "pmaps_pss_bytes" not in s and "pmaps_pages" not in s
        why = {lab["what"]: lab["reason"] for lab, _ in s["pmaps_unknown"]}
        assert "CAP_SYS_ADMIN" in why["pss"] and "ksm" in why and "pages" in why


def test_series_bounded_under_churn(wait_for):
    """500 short-lived processes while scanning every 0.2 s: never more than top+1 series per metric,
    no scan error, the exporter alive."""
    top = 4
    with exporter("--interval", "0.2", "--max-cpu", "100", "--by", "pid", "--top", str(top)) as (exp, port):
        scrape(port, wait_for)
        # Waves of 100 processes until at least 500 have lived and died and 3 scans overlapped them
        # (a scan of the whole machine can take seconds when it is busy).
        waves, deadline = 0, time.monotonic() + 120
        most, saw_other, scans = 0, False, set()
        churn = None
        while waves < 5 or len(scans) < 3:
            if churn is None or churn.poll() is not None:
                if churn is not None:
                    assert churn.returncode == 0
                    waves += 1
                if time.monotonic() > deadline:
                    break
                churn = subprocess.Popen(["sh", "-c", "for i in $(seq 100); do sleep 0.3 & done; wait"])
            s = series(scrape(port, wait_for))
            for name, rows in s.items():
                if rows and "pid" in rows[0][0]:
                    pids = [lab["pid"] for lab, _ in rows if "state" not in lab]
                    most = max(most, len(pids) if pids else len({lab["pid"] for lab, _ in rows}))
                    saw_other |= "other" in pids
            scans.add(s["pmaps_scans_total"][0][1])
            assert s["pmaps_scan_errors_total"][0][1] == 0
            time.sleep(0.05)
        if churn is not None:
            churn.wait()
        assert exp.poll() is None
    assert len(scans) >= 3, "the scans did not overlap the churn"
    assert saw_other and 0 < most <= top + 1


@pytest.mark.parametrize("listen, msg", [("nope", "HOST:PORT"), ("127.0.0.1:99999", "HOST:PORT"),
                                         ("192.0.2.254:9475", "cannot listen")])
def test_bad_listen(run, listen, msg):
    r = run("exporter", "--listen", listen)
    assert r.code == 2 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1 and msg in r.err, r.err


def test_port_in_use_and_by_pid_needs_top(run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run("exporter", "--listen", f"127.0.0.1:{s.getsockname()[1]}")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "in use" in r.err, r.err
    r = run("exporter", "--by", "pid")
    assert r.code == 2 and "--top" in r.err and len(r.err.strip().splitlines()) == 1
    # An exporter that never served leaves its caller's THPs alone (PR_SET_THP_DISABLE is for good).
    assert "THP_enabled:\t1" in Path("/proc/self/status").read_text()


def test_non_loopback_warns(wait_for):
    """0.0.0.0 is served (asked for explicitly) with a warning on stderr."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen([sys.executable, "-m", "pmaps", "exporter", "--listen", f"0.0.0.0:{port}", "--pids", "1"],
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stderr.readline()  # type: ignore[union-attr]
        assert "warning" in line and "not loopback" in line, line
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=15)
    assert p.returncode == 0 and "stopped (SIGINT)" in err


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a test certificate")
    bcrypt = pytest.importorskip("bcrypt")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    # Cost 4: the test is about the check, not the cost.
    (d / "users").write_text("basic_auth_users:\n  scraper: " + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
                             + "\n")
    return d


def test_tls_and_basic_auth(tls_files, wait_for):
    d = tls_files
    ctx = ssl.create_default_context(cafile=str(d / "cert.pem"))
    with exporter("--interval", "0.5", "--pids", "1", "--tls-cert", str(d / "cert.pem"), "--tls-key",
                  str(d / "key.pem"), "--basic-auth-file", str(d / "users")) as (_, port):
        url = f"https://127.0.0.1:{port}/metrics"
        # An idle TCP client must not stall the server (the handshake runs in the request thread).
        idle = socket.create_connection(("127.0.0.1", port))

        def get(auth: str | None) -> tuple[int, str]:
            req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, ""

        def basic(user: str, pw: str) -> str:
            return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

        assert get(None)[0] == 401
        assert get(basic("scraper", "wrong"))[0] == 401
        assert get(basic("nobody", "s3cret"))[0] == 401
        assert get(basic("scraper", "x" * 100))[0] == 401
        code, text = wait_for(lambda: (r := get(basic("scraper", "s3cret")))[0] == 200 and "pmaps_scans_total" in r[1]
                              and r, "an authenticated scrape")  # type: ignore[misc]
        assert code == 200 and "pmaps_scan_interval_seconds" in text
        with pytest.raises(OSError):  # plain HTTP to the TLS port: refused by the handshake
            urllib.request.urlopen(url.replace("https", "http"), timeout=5).read()
        idle.close()


def test_bad_tls_and_auth_files(run, tmp_path):
    bad = tmp_path / "users"
    bad.write_text("alice:plaintext\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"#" * (2 << 20))
    # docs/formats.md, "Exit codes": a file that cannot be read 1; one that is a FIFO, a device, a
    # directory or over the size cap 6; a file whose content is not what the option needs 2 (usage).
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xffscraper: $2b$04$x\n")
    for argv, msg, code in [(["--basic-auth-file", str(bad)], "BCRYPT", 2),
                            (["--basic-auth-file", str(binary)], "not UTF-8 text", 2),
                            (["--basic-auth-file", str(tmp_path / "none")], "--basic-auth-file: cannot read", 1),
                            (["--tls-cert", str(bad)], "go together", 2),
                            (["--tls-cert", str(bad), "--tls-key", str(bad)], "cannot load", 2),
                            (["--tls-cert", str(tmp_path / "none"), "--tls-key", str(bad)], "--tls-cert: cannot read",
                             1),
                            (["--tls-cert", str(bad), "--tls-key", str(tmp_path / "none")], "--tls-key: cannot read",
                             1),
                            # Never read without end nor blocked on: /dev/zero, a FIFO, a directory.
                            (["--basic-auth-file", "/dev/zero"], "a character device, not a credentials file", 6),
                            (["--basic-auth-file", str(fifo)], "a FIFO, not a credentials file", 6),
                            (["--basic-auth-file", str(tmp_path)], "a directory, not a credentials file", 6),
                            (["--basic-auth-file", str(big)], "more than a credentials file can be", 6),
                            (["--tls-cert", "/dev/zero", "--tls-key", str(bad)], "--tls-cert: /dev/zero: a character",
                             6),
                            (["--tls-cert", str(bad), "--tls-key", str(fifo)], "--tls-key: " + str(fifo) + ": a FIFO",
                             6)]:
        r = run("exporter", "--listen", "127.0.0.1:0", *argv)
        assert r.code == code and len(r.err.strip().splitlines()) == 1 and msg in r.err, (argv, r.code, r.err)


def test_unreadable_auth_and_key_files_exit_1(tls_files):
    """A root-only --basic-auth-file or --tls-key (as keys usually are), the exporter run as another
    user: exit 1, "a file that cannot be read" (docs/formats.md), not 2."""
    with tempfile.TemporaryDirectory() as t:  # under /tmp: another user can reach it (pytest's are 0700)
        os.chmod(t, 0o755)
        for name in ("users", "key.pem", "cert.pem"):
            shutil.copy(tls_files / name, Path(t, name))
            os.chmod(Path(t, name), 0o644 if name == "cert.pem" else 0o600)
        user = os.geteuid() == 0  # as root, nobody is the other user; else the files are made unreadable
        if not user:
            os.chmod(Path(t, "users"), 0)
            os.chmod(Path(t, "key.pem"), 0)
        for argv, msg in [(["--basic-auth-file", f"{t}/users"], "--basic-auth-file: cannot read"),
                          (["--tls-cert", f"{t}/cert.pem", "--tls-key", f"{t}/key.pem"], "--tls-key: cannot read")]:
            r = pmaps_cmd("exporter", "--listen", "127.0.0.1:0", *argv, user=user, check=False)
            assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, (argv, r.stderr)


def test_cpu_budget_stretches_interval(wait_for):
    """--max-cpu 0.05 (% of one core): a scan costing C s of CPU moves the next one C / 0.0005 s away."""
    with exporter("--interval", "0.1", "--max-cpu", "0.05", "--pids", "1") as (_, port):
        s = series(scrape(port, wait_for))
        cpu = s["pmaps_scan_cpu_seconds"][0][1]
        interval = s["pmaps_scan_interval_seconds"][0][1]
        assert cpu > 0 and interval == pytest.approx(max(0.1, cpu / 0.0005))
        assert interval > 0.1


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_metrics_on_metrics_only_and_head(wait_for):
    """/metrics only (it was served on every path): / points there, anything else is 404; HEAD is
    GET without the body (it was 405)."""
    with exporter("--interval", "60", "--pids", "1") as (_, port):
        scrape(port, wait_for)
        code, head, body = _request(port, "GET", "/metrics")
        assert code == 200 and b"\npmaps_scans_total 1.0\n" in body
        code, hhead, hbody = _request(port, "HEAD", "/metrics")
        assert code == 200 and hbody == b"" and int(hhead["content-length"]) == len(body)
        assert hhead["content-type"] == head["content-type"]
        code, _, body = _request(port, "GET", "/")
        assert code == 200 and b"/metrics" in body and b"pmaps_" not in body
        for path in ("/anything", "/metrics/", "/metricsx", "/favicon.ico"):
            code, _, body = _request(port, "GET", path)
            assert code == 404 and b"pmaps_" not in body, path
        assert _request(port, "HEAD", "/anything")[0] == 404
        code, h, _ = _request(port, "POST", "/metrics")
        assert code == 405 and "GET" in h["allow"] and "HEAD" in h["allow"]


def test_idle_and_slow_clients_bounded(wait_for):
    """300 connections that send half a request and wait: the handler threads stay bounded (they
    were a thread each) and a scrape is answered at once; the listen backlog is not socketserver's 5;
    a client that sends half a request, or trickles it, is cut off after REQUEST_TIMEOUT (one was
    still served 45 s later)."""
    from pmaps.commands._http import MAX_CONNECTIONS, REQUEST_TIMEOUT

    with exporter("--interval", "60", "--pids", "1") as (exp, port):
        scrape(port, wait_for)
        base, fds = _threads(exp.pid), len(os.listdir(f"/proc/{exp.pid}/fd"))
        if shutil.which("ss"):
            line = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
            assert int(line[2]) >= 128, line  # Send-Q of a listening socket: its backlog
        held = []
        try:
            for _ in range(300):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /metrics HTTP/1.1\r\nX: ")
                held.append(s)
            time.sleep(0.5)
            assert _threads(exp.pid) <= base + 2 * MAX_CONNECTIONS, _threads(exp.pid)
            t0 = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                assert r.status == 200 and b"pmaps_scans_total" in r.read()
            assert time.monotonic() - t0 < 5
        finally:
            for s in held:
                s.close()
        wait_for(lambda: _threads(exp.pid) <= base, "the held connections' threads to end", 10)
        wait_for(lambda: len(os.listdir(f"/proc/{exp.pid}/fd")) <= fds, "the held connections to be closed", 10)

        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /metrics HTTP/1.1\r\n")
        trickled: list[object] = []

        def trickle() -> None:
            """A header byte every 0.2 s: without a deadline on the whole request, never cut off."""
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
                end = time.monotonic() + REQUEST_TIMEOUT + 10
                try:
                    while time.monotonic() < end:
                        s.sendall(b"X")
                        time.sleep(0.2)
                except OSError as e:
                    trickled.append(e)

        t = threading.Thread(target=trickle)
        t.start()
        try:
            half.settimeout(REQUEST_TIMEOUT + 10)
            try:
                got = half.recv(100)
            except ConnectionResetError:
                got = b""
            except TimeoutError:
                raise AssertionError("half a request held its connection open") from None
            assert got == b""  # closed without an answer
        finally:
            half.close()
            t.join()
        assert trickled, "a trickled request held its connection open"


def test_exposition_serialized_once_per_scan(monkeypatch):
    """A real server (in this process, to count): each scan's figures are serialized once per format,
    whatever the number of scrapes (200 half requests that hung up were 200 serializations), and
    again after the next scan."""
    from pmaps.commands import _http as E
    from pmaps.render.metrics import families

    made: list[str] = []
    encode = E.encode
    monkeypatch.setattr(E, "encode", lambda fams, fmt: (made.append(fmt), encode(fams, fmt))[1])
    published = [(1, families(None, {"scan_interval": 1.0}, {}, 0, 1))]
    httpd = E.make_server("127.0.0.1", 0, E.metrics_app(E.Exposition(lambda: published[0])))
    server = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    server.start()
    try:
        port = httpd.server_address[1]

        def get(accept: str = "", encoding: str = "") -> bytes:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Accept": accept, "Accept-Encoding": encoding})
            with urllib.request.urlopen(req, timeout=5) as r:
                return bytes(r.read())

        for _ in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nX: ")
        om = "application/openmetrics-text; version=1.0.0"
        texts = {get() for _ in range(20)}
        oms = {get(om) for _ in range(20)}
        gz = {get(encoding="gzip") for _ in range(5)}
        assert len(texts) == len(oms) == len(gz) == 1
        assert b"pmaps_scans_total 1.0" in next(iter(texts)) and next(iter(oms)).endswith(b"# EOF\n")
        assert gzip.decompress(next(iter(gz))) == next(iter(texts))
        wait_for_idle = time.monotonic() + 10
        while httpd.slots.live and time.monotonic() < wait_for_idle:
            time.sleep(0.01)
        assert sorted(made) == ["openmetrics", "text"], made
        published[0] = (2, families(None, {"scan_interval": 1.0}, {}, 0, 2))
        assert b"pmaps_scans_total 2.0" in get() and b"pmaps_scans_total 2.0" in get()
        assert sorted(made) == ["openmetrics", "text", "text"], made
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.join()


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def _auth_app(users: dict[str, bytes]):
    from pmaps.commands._auth import basic_auth

    def ok(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    app = basic_auth(ok, users)

    def call(auth: str, client: str = "127.0.0.1") -> str:
        got = []
        app({"HTTP_AUTHORIZATION": auth, "REQUEST_METHOD": "GET", "REMOTE_ADDR": client},
            lambda status, headers: got.append(status))
        return got[0]

    return call


def test_basic_auth_unknown_user_checks_a_dummy_hash(monkeypatch):
    """An unknown user costs a bcrypt check too, of a hash of the same cost (it answered in 1.4 ms
    where a known user's wrong password took 276 ms: which names exist showed); only good checks
    are cached."""
    bcrypt = pytest.importorskip("bcrypt")
    h = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5))
    checked: list[bytes] = []
    checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, hh: (checked.append(hh), checkpw(pw, hh))[1])
    call = _auth_app({"scraper": h})
    assert call(_basic("nobody", "s3cret")).startswith("401")
    assert len(checked) == 1 and checked[0] != h and checked[0][:7] == h[:7]  # $2b$05$: the same cost
    assert call(_basic("scraper", "wrong")).startswith("401") and call(_basic("scraper", "wrong")).startswith("401")
    assert checked[1:] == [h, h]  # failures are not cached
    assert call(_basic("scraper", "s3cret")).startswith("200") and call(_basic("scraper", "s3cret")).startswith("200")
    assert checked[3:] == [h]  # a good pair is, once checked
    assert call(_basic("scrape", "s3cret")).startswith("401") and call(_basic("scraperx", "s3cret")).startswith("401")


def test_basic_auth_one_check_at_a_time_cached_logins_not_held(monkeypatch):
    """Wrong passwords from three addresses: their bcrypt checks run one at a time (all at once, 20
    such clients kept both CPUs busy and a good login waited 2.5-3 s), and a login already proven
    good is answered while a check runs (no lock around bcrypt holds it)."""
    bcrypt = pytest.importorskip("bcrypt")
    call = _auth_app({"scraper": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4))})
    good = _basic("scraper", "s3cret")
    assert call(good).startswith("200")  # checked once, remembered
    inside, most, calls = [0], [0], [0]
    lock, entered, release = threading.Lock(), threading.Event(), threading.Event()

    def slow(pw: bytes, h: bytes) -> bool:
        with lock:
            inside[0] += 1
            calls[0] += 1
            most[0] = max(most[0], inside[0])
        entered.set()
        release.wait(10)
        with lock:
            inside[0] -= 1
        return False

    monkeypatch.setattr(bcrypt, "checkpw", slow)
    got: list[str] = []
    clients = [threading.Thread(target=lambda a=a: got.append(call(_basic("scraper", "wrong"), a)))
               for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3")]
    for c in clients:
        c.start()
    assert entered.wait(10)
    assert call(good).startswith("200")  # while a check is under way
    release.set()
    for c in clients:
        c.join()
    assert calls[0] == 3 and most[0] == 1, (calls, most)
    assert sorted(got) == ["401 Unauthorized"] * 3


def test_auth_gate_clean_first_and_bounded_wait():
    """The gate lets one check in; among the waiting, the client with fewer failures first (a
    clean address's login passes an attacker's queued retries); the line is bounded (a newcomer
    ranked worse than all is refused at once, a better one pushes the worst out); a wait past its
    bound gives up."""
    from pmaps.commands._auth import Gate

    gate = Gate(most=2)
    assert gate.enter(0, 1)
    order: list[tuple[str, bool]] = []

    def wait(name: str, rank: int) -> None:
        entered = gate.enter(rank, 10)
        order.append((name, entered))
        if entered:
            gate.leave()

    def queue(name: str, rank: int, waiting: int) -> threading.Thread:
        t = threading.Thread(target=wait, args=(name, rank))
        t.start()
        while len(gate.waiting) < waiting:
            time.sleep(0.01)
        return t

    threads = [queue("attacker", 3, 1)]
    assert not gate.enter(0, 0.05) and len(gate.waiting) == 1  # gave up, and left the line
    threads.append(queue("clean", 0, 2))
    t0 = time.monotonic()
    assert not gate.enter(5, 10) and time.monotonic() - t0 < 5  # refused at once: the line is full
    threads.append(queue("second", 1, 2))
    threads[0].join(10)
    assert order == [("attacker", False)]  # pushed out by a better-ranked one
    gate.leave()
    for t in threads:
        t.join()
    assert order == [("attacker", False), ("clean", True), ("second", True)]
    assert not gate.waiting and not gate.busy and not gate.dropped


def test_auth_failures_per_address_bounded():
    """Failures count per IPv4 address or IPv6 /64, up to FAIL_LIMIT a window; a good login forgives
    them; at most TRACKED_MAX addresses are followed."""
    from pmaps.commands._auth import FAIL_LIMIT, FAIL_WINDOW, Failures, client_of

    assert client_of("2001:db8::1") == client_of("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_of("::ffff:192.0.2.7") == "192.0.2.7" and client_of("") == ""
    f = Failures(most=3)
    assert [f.begin("a", 0.0) for _ in range(FAIL_LIMIT + 1)] == [*range(FAIL_LIMIT), None]
    assert f.begin("b", 1.0) == 0 and f.retry_after("a", 1.0) == int(FAIL_WINDOW) - 1
    assert f.begin("a", FAIL_WINDOW) == 0  # a new window
    f.forget("a")
    assert f.begin("a", FAIL_WINDOW) == 0
    for c in "cde":
        f.begin(c, FAIL_WINDOW + 1)
    assert len(f.seen) == 3 and "b" not in f.seen


def test_basic_auth_time_does_not_tell_user_names(tmp_path):
    """Through the server: an unknown user's 401 takes as long as a known user's wrong password (a
    cost-11 hash, ~0.1 s; the unknown user's took ~1 ms). Medians, with a margin of 2x. Each request
    from its own loopback address: one address is refused after a few failures, whatever the name."""
    bcrypt = pytest.importorskip("bcrypt")
    users = tmp_path / "users"
    users.write_text("scraper: " + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(11)).decode() + "\n")
    sources = (f"127.0.1.{i}" for i in range(1, 11))
    with exporter("--interval", "60", "--pids", "1", "--basic-auth-file", str(users)) as (_, port):

        def took(user: str) -> float:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(next(sources), 0))
            try:
                t0 = time.perf_counter()
                c.request("GET", "/metrics", headers={"Authorization": _basic(user, "wrong")})
                r = c.getresponse()
                r.read()
                assert r.status == 401
                return time.perf_counter() - t0
            finally:
                c.close()

        known = sorted(took("scraper") for _ in range(5))[2]
        unknown = sorted(took("nobody") for _ in range(5))[2]
        assert unknown > known / 2, (unknown, known)

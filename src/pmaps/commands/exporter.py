"""pmaps exporter: Prometheus metrics of every process's memory, scanned in the background."""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import threading
import time
from typing import Any, TextIO

from ..analysis.exporter import BY, Export
from ..errors import MissingExtra, PmapsError, UsageError
from ..render.metrics import Family, families
from . import Command, budget_interval, percent, positive, seconds, size
from ._auth import basic_auth
from ._common import parse_pids, user_namer
from ._http import Exposition, make_server, metrics_app

DEFAULT_LISTEN = "127.0.0.1:9475"
def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen needs HOST:PORT (port 0-65535): {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


CONFIG_CAP = 1 << 20  # bytes: a credentials or PEM file is a few kB


def _for_option(opt: str, e: PmapsError) -> PmapsError:
    """The same error (the same exit code), its message naming the option that gave the file."""
    e.args = (f"{opt}: {e.args[0]}", *e.args[1:])
    return e


def load_users(path: str) -> dict[str, bytes]:
    """bcrypt users: htpasswd lines `user:$2y$...`, or Prometheus' web config `basic_auth_users:` map."""
    from ..store.files import read_regular

    try:
        # A regular file under a cap, never blocking (a FIFO) nor read without end (/dev/zero).
        text = read_regular(path, CONFIG_CAP, "credentials file").decode()
    except UnicodeDecodeError as e:  # its content: the option's value is wrong (usage)
        raise UsageError(f"--basic-auth-file {path}: not UTF-8 text (byte {e.start})") from None
    except PmapsError as e:  # the file itself (missing, unreadable, a FIFO...): its own exit code, 1 or 6
        raise _for_option("--basic-auth-file", e) from e.__cause__
    users: dict[str, bytes] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#") or s == "basic_auth_users:":
            continue
        user, sep, h = s.partition(":")
        user, h = user.strip().strip("'\""), h.strip().strip("'\"")
        if not sep or not user or not h.startswith(("$2a$", "$2b$", "$2y$")):
            raise UsageError(f"{path}:{n}: expected USER: BCRYPT-HASH ($2a$/$2b$/$2y$)")
        users[user] = h.encode()
    if not users:
        raise UsageError(f"{path}: no users")
    return users


def comm_kept(pid: int, comm: str) -> str:
    """The comm with its bytes that are not UTF-8 kept (surrogateescape, shown as \\xNN in the
    labels): the scan's Ident has them as U+FFFD (kernel.status.decode_comm), and 0xff and 0x9b made
    one series of two programs. Read again only for a comm holding U+FFFD; kept as scanned when the
    process is gone or its comm changed since (a new name, or a reused PID's other one)."""
    if "\ufffd" not in comm:
        return comm
    from ..kernel import procfs
    from ..kernel.status import decode_comm

    try:
        raw = procfs.read_file(pid, "comm")
    except PmapsError:
        return comm
    return raw.decode("utf-8", "surrogateescape").strip() if decode_comm(raw) == comm else comm


class Scanner:
    """The background scans: the last completed one, as metric families, is all a scrape reads."""

    def __init__(self, args: argparse.Namespace, err: TextIO) -> None:
        self.args, self.err = args, err
        self.stop = threading.Event()
        # (generation, families): one value, replaced whole by each completed scan, so that a scrape
        # never pairs one scan's figures with another's generation (Exposition caches by generation).
        self.published: tuple[int, list[Family]] = (0, families(None, {"scan_interval": args.interval}, {}, 0, 0))
        self.skipped: dict[str, int] = {}
        self.errors = self.scans = 0
        # The last completed scan's figures, published again with the counters when a scan fails.
        self.last: tuple[Export | None, dict[str, float]] = (None, {"scan_interval": args.interval})
        self.interval = args.interval
        self.user_of = user_namer()
        self.pids = parse_pids(args.pids) if args.pids else None
        from ..collector.scan_cache import ScanCache

        # Unchanged processes are not read again page by page (collector.scan_cache.ScanCache).
        self.cache = ScanCache(max_bytes=args.cache_max)

    def scan_once(self) -> None:
        from ..analysis.exporter import export
        from ..collector import scan_system
        from ..kernel.libc import malloc_trim
        from ..kernel.smaps import read_rollup

        t0, c0 = time.monotonic(), time.process_time()
        ex = export(scan_system(self.pids, include_self=self.args.include_self, cache=self.cache), self.args.by,
                    self.args.top, self.user_of, comm_kept)
        malloc_trim()  # the scan's columns are garbage now: between scans the exporter stays small
        # Process CPU time, so the scan's worker threads (and scrapes) count against the budget.
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        self.interval = budget_interval(self.args.interval, cpu, self.args.max_cpu)
        for k, v in ex.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v
        self.scans += 1
        me = {"scan_duration": wall, "scan_cpu": cpu, "scan_interval": self.interval, "last_scan": time.time(),
              "scan_reused_processes": self.cache.reused, "scan_reused_pages": self.cache.reused_pages,
              "scan_cache": self.cache.nbytes,
              **{f"reuse_blocked:{k}": float(v) for k, v in self.cache.moved.items()}}
        try:
            me["exporter_rss"] = read_rollup(os.getpid()).get("Rss", 0)
        except PmapsError:
            pass
        self.last = (ex, me)
        self.publish()

    def publish(self) -> None:
        """The last completed scan's figures and the counters as they stand, as the next generation."""
        ex, me = self.last
        self.published = (self.published[0] + 1, families(ex, me, self.skipped, self.errors, self.scans))

    def loop(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                self.scan_once()
            except Exception as e:  # one bad scan must not end the exporter: count it, say it, go on
                self.errors += 1
                # Published now: only after the next good scan, a failing exporter showed 0 errors.
                self.publish()
                self.err.write(f"pmaps: scan failed: {e}\n")
                self.err.flush()
            self.stop.wait(max(0.0, start + self.interval - time.monotonic()))


class Exporter(Command):
    """Serve Prometheus metrics of every process's memory (PSS, USS, swap, THP, page states) at /metrics.

    Scans run in the background every --interval; a scrape only serializes the last completed scan.
    Series are bounded: the top N groups by PSS, the rest summed into `other`. Loopback only unless
    --listen says otherwise (with a warning); --tls-cert/--tls-key and --basic-auth-file (bcrypt) for
    that case. PFNs and addresses are never exported.
    """

    name = "exporter"
    order = 60

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                       help=f"address to serve on (default {DEFAULT_LISTEN}; non-loopback warns)")
        p.add_argument("--interval", type=seconds, default=30.0, metavar="S", help="seconds between scans (default 30)")
        p.add_argument("--max-cpu", type=percent, default=5.0, metavar="PCT",
                       help="CPU budget in %% of one core, averaged: a costlier scan stretches the interval "
                            "(default 5)")
        p.add_argument("--by", choices=BY, default="program",
                       help="label series by program (comm), user, cgroup or pid (pid needs --top)")
        p.add_argument("--top", type=positive, metavar="N", help="keep the N largest groups by PSS, sum the rest "
                       "into `other` (default 50)")
        p.add_argument("--pids", metavar="PIDS", help="scan only these PIDs (comma-separated)")
        p.add_argument("--cache-max", type=size, default=256 << 20, metavar="SIZE",
                       help="memory kept between scans to skip re-reading unchanged processes, 26 bytes a page, "
                            "smallest processes first (default 256M; 0: read everything at every scan)")
        p.add_argument("--include-self", action="store_true",
                       help="keep the exporter's own mappings in map counts and PSS (the raw kernel view, as "
                            "smaps_rollup shows it while the exporter runs)")
        p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
        p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
        p.add_argument("--basic-auth-file", metavar="FILE",
                       help="require HTTP basic auth: lines USER: BCRYPT-HASH (as Prometheus' web config)")

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        if args.by == "pid" and args.top is None:
            raise UsageError("--by pid needs --top N (one series per process would grow without bound)")
        args.top = args.top or 50
        if bool(args.tls_cert) != bool(args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        host, port = parse_listen(args.listen)
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise MissingExtra("the exporter needs prometheus-client: pip install 'pmaps[exporter]'") from None
        users = load_users(args.basic_auth_file) if args.basic_auth_file else None
        if users is not None:
            try:
                import bcrypt  # noqa: F401
            except ImportError:
                raise MissingExtra("--basic-auth-file needs bcrypt: pip install 'pmaps[exporter]'") from None
        ctx = self._tls(args) if args.tls_cert else None
        scanner = Scanner(args, err)
        app = metrics_app(Exposition(lambda: scanner.published))
        if users is not None:
            app = basic_auth(app, users)
        try:
            httpd = make_server(host, port, app, ctx)
        except OSError as e:
            raise UsageError(f"cannot listen on {args.listen}: {e.strerror or e}") from None
        stop = scanner.stop
        got: list[str] = []

        def on_signal(signum: int, frame: object) -> None:
            got.append(signal.Signals(signum).name)
            stop.set()

        # Installed before the first line on stderr: a caller may signal as soon as it reads it.
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        server = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        worker = threading.Thread(target=scanner.loop, daemon=True)
        try:
            if not is_loopback(host):
                err.write(f"pmaps: warning: serving on {host}, not loopback: anyone who can reach it reads process "
                          "names and memory sizes" + ("" if users else " (consider --basic-auth-file and --tls-cert)")
                          + "\n")
            scheme = "https" if ctx else "http"
            shown = host if ":" not in host else f"[{host}]"
            err.write(f"pmaps: serving {scheme}://{shown}:{httpd.server_address[1]}/metrics, "
                      f"scanning every {args.interval:g} s by {args.by} (top {args.top})\n")
            err.flush()
            from ..kernel.libc import disable_thp

            # The exporter's own columns must not give khugepaged work: its collapses and splits are
            # machine-wide counters that stop the reuse of every other process's pages (ScanCache).
            # Only once it serves: the setting stays with the process (and its children) for good.
            disable_thp()
            server.start()
            worker.start()
            while not stop.wait(1.0):
                pass
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            stop.set()
            if server.is_alive():
                httpd.shutdown()  # blocks until serve_forever returns: only when it runs
            httpd.server_close()
            if worker.is_alive():
                worker.join(timeout=5)  # a scan in progress finishes, or is abandoned with the daemon thread
        err.write(f"pmaps: exporter stopped ({', '.join(got) or 'done'}) after {scanner.scans} scans\n")
        return 0

    @staticmethod
    def _tls(args: argparse.Namespace) -> Any:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        from ..store.files import read_regular

        for opt, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
            try:
                # Read once here, where errors name the file (exit 1 unreadable, 6 not a regular file or
                # too big): ssl opens it by name after, and a FIFO would hang it, /dev/zero exhaust it.
                read_regular(path, CONFIG_CAP, "PEM file")
            except PmapsError as e:
                raise _for_option(opt, e) from e.__cause__
        try:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except ssl.SSLError as e:  # its content: not PEM, or a key that is not the certificate's (usage)
            raise UsageError(f"cannot load --tls-cert/--tls-key: {e}") from None
        except OSError as e:  # gone or unreadable since: a file that cannot be read
            raise PmapsError(f"cannot read --tls-cert/--tls-key: {e.strerror or e}") from e
        return ctx

"""The exporter's basic auth (bcrypt), bounded so that wrong passwords can neither take the CPU nor
hold a good login up: one check at a time, clean addresses first (Gate); a client address that
keeps failing refused without a check (Failures); a login that succeeded not checked again
(GoodLogins). The server is _http.py's."""
from __future__ import annotations

import base64
import heapq
import hmac
import ipaddress
import itertools
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

BCRYPT_MAX = 72  # bcrypt hashes at most 72 bytes of password; bcrypt >= 5 raises beyond that
# Logins not proven good (failed, or being checked) that one client address may try within
# FAIL_WINDOW seconds of its first; beyond, it is answered 429 without a check until the window
# ends. A person mistyping gets a few tries, a scraper with a wrong password (one a scrape, every
# 15-60 s) still sees its 401s, and an attacker's address costs at most 5 checks a minute (1.2 s of
# CPU at cost 12, 2 % of a core). Counted before the check: 14 connections at once from one
# address were 14 checks under way before the first failed.
FAIL_LIMIT = 5
FAIL_WINDOW = 60.0
# Client addresses followed at once (an entry is ~150 bytes: 0.6 MB at most). Beyond, the one whose
# window began first is forgotten: it may try again, and the gate still bounds the CPU.
TRACKED_MAX = 4096
# Checks waiting for the gate, at most (2 s of checks at cost 12): a newcomer beyond is answered 429
# at once, or takes the place of a waiting check of a client that failed more. Each waiting request
# holds one of the server's MAX_CONNECTIONS (32): the others stay free for the logins that need no
# check. And how long a check waits at most (a scraper's timeout is 10 s by default).
GATE_QUEUE = 8
GATE_WAIT = 5.0
# Logins that succeeded, remembered by their Authorization header (HMAC-SHA-256 under a key of this
# process, never the password): a cost-12 check is ~0.25 s of CPU, once per scrape would blow the
# --max-cpu budget. A few scrapers (an HA pair, a federation, a curl by hand) each send one header:
# 16 of them, each forgotten after an hour unused (then checked once more).
GOOD_MAX = 16
GOOD_IDLE = 3600.0


def _cost(hashes: Iterable[bytes]) -> int:
    """The highest bcrypt cost among the hashes ($2b$12$...: 12; 12 if none can be read), in 4-31."""
    costs = []
    for h in hashes:
        try:
            costs.append(int(h.split(b"$")[2]))
        except (IndexError, ValueError):
            pass
    return min(max(max(costs, default=12), 4), 31)


def client_of(addr: str) -> str:
    """Whose failures a request counts in: its IPv4 address, or its IPv6 /64 (the least a host is
    given: one address each would let a single attacker try 2^64 times)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Failures:
    """Per client: the attempts not proven good within a window, and whether it may try again."""

    def __init__(self, limit: int = FAIL_LIMIT, window: float = FAIL_WINDOW, most: int = TRACKED_MAX) -> None:
        self.limit, self.window, self.most = limit, window, most
        self.lock = threading.Lock()
        self.seen: OrderedDict[str, list[float]] = OrderedDict()  # client -> [window start, attempts]

    def begin(self, client: str, now: float) -> int | None:
        """Count one attempt: the number before it in the window (0: a clean client), or None when
        the client is refused (no check) until the window ends."""
        with self.lock:
            rec = self.seen.get(client)
            if rec is None or now - rec[0] >= self.window:
                self.seen.pop(client, None)
                rec = self.seen[client] = [now, 0]  # at the end: the oldest window is the first out
                while len(self.seen) > self.most:
                    self.seen.popitem(last=False)
            if rec[1] >= self.limit:
                return None
            rec[1] += 1
            return int(rec[1]) - 1

    def retry_after(self, client: str, now: float) -> int:
        """Seconds until the client's window ends (at least 1)."""
        with self.lock:
            rec = self.seen.get(client)
            return max(1, math.ceil(rec[0] + self.window - now)) if rec else 1

    def forget(self, client: str) -> None:
        """A good login: the client's failures are forgiven."""
        with self.lock:
            self.seen.pop(client, None)


class Gate:
    """One bcrypt check at a time (wrong passwords take one CPU at most, whatever their number);
    among those waiting (`most` at most), the one whose client failed least first, then the first
    come: a clean address's login passes an attacker's queued retries."""

    def __init__(self, most: int = GATE_QUEUE) -> None:
        self.most = most
        self.cond = threading.Condition()
        self.busy = False
        self.waiting: list[tuple[int, int]] = []  # a heap of (rank, arrival)
        self.dropped: set[tuple[int, int]] = set()  # pushed out of the line by a better-ranked newcomer
        self.arrivals = itertools.count()

    def _leave_line(self, who: tuple[int, int]) -> None:
        self.waiting.remove(who)
        heapq.heapify(self.waiting)
        self.cond.notify_all()  # (it may have been first in line)

    def enter(self, rank: int, timeout: float) -> bool:
        """Wait for the turn of a check of this rank; False (not entered) when the line is full of
        better-ranked ones, when pushed out of it, or after `timeout` seconds."""
        end = time.monotonic() + timeout
        with self.cond:
            me = (rank, next(self.arrivals))
            if len(self.waiting) >= self.most:
                worst = max(self.waiting)
                if worst < me:
                    return False
                self._leave_line(worst)
                self.dropped.add(worst)
            heapq.heappush(self.waiting, me)
            while True:
                if me in self.dropped:
                    self.dropped.discard(me)
                    return False
                if not self.busy and self.waiting[0] == me:
                    break
                left = end - time.monotonic()
                if left <= 0:
                    self._leave_line(me)
                    return False
                self.cond.wait(left)
            heapq.heappop(self.waiting)
            self.busy = True
            return True

    def leave(self) -> None:
        with self.cond:
            self.busy = False
            self.cond.notify_all()  # the first in line goes; the others wait again


class GoodLogins:
    """Authorization headers that bcrypt accepted, at most `most`, each forgotten `idle` seconds
    after its last use. Kept as an HMAC under a key of this process: the memory holds no password."""

    def __init__(self, most: int = GOOD_MAX, idle: float = GOOD_IDLE) -> None:
        self.most, self.idle = most, idle
        self.key = os.urandom(32)
        self.lock = threading.Lock()  # held for a few comparisons, never around bcrypt
        self.seen: OrderedDict[bytes, float] = OrderedDict()  # HMAC -> last use, least recent first

    def _mac(self, header: str) -> bytes:
        return hmac.digest(self.key, header.encode("utf-8", "surrogatepass"), "sha256")

    def known(self, header: str, now: float) -> bool:
        mac = self._mac(header)
        with self.lock:
            for k in [k for k, used in self.seen.items() if now - used >= self.idle]:
                del self.seen[k]
            found = None
            for k in self.seen:  # every one compared, in constant time
                if hmac.compare_digest(k, mac):
                    found = k
            if found is None:
                return False
            self.seen[found] = now
            self.seen.move_to_end(found)
            return True

    def add(self, header: str, now: float) -> None:
        mac = self._mac(header)
        with self.lock:
            self.seen[mac] = now
            self.seen.move_to_end(mac)
            while len(self.seen) > self.most:
                self.seen.popitem(last=False)


def basic_auth(app: Callable[..., Any], users: dict[str, bytes]) -> Callable[..., Any]:
    """WSGI middleware: 401 unless the Authorization header matches a bcrypt hash; 429 (Retry-After)
    without a check for a client address that failed FAIL_LIMIT times within FAIL_WINDOW, or when
    the check waited GATE_WAIT for its turn.

    Which user names exist must not show: every name is compared in constant time, and an unknown
    user's password is checked against a dummy hash of the same cost (it answered in 1.4 ms, a known
    user's wrong password in 276 ms); the refusals depend on the address, never on the name.
    Wrong passwords are bounded: every check running at once, 20 clients with wrong passwords kept
    both CPUs busy and a good login waited 2.4-2.9 s. Now the checks run one at a time (Gate), a
    failing address is refused after a few, a clean one goes first in line (the good login: 0.3-0.8
    s); a header that succeeded is served without a check (GoodLogins), from any address, while
    checks run."""
    import bcrypt

    names = [(u.encode(), h) for u, h in users.items()]
    dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(_cost(users.values())))
    good, failures, gate = GoodLogins(), Failures(), Gate()

    def check(header: str, client: str) -> tuple[bool, int]:
        """(good, 0), or (False, seconds to wait) when refused without a check."""
        if not header.startswith("Basic "):
            return False, 0
        try:
            user, sep, pw = base64.b64decode(header[6:], validate=True).partition(b":")
        except ValueError:
            return False, 0
        if not sep or len(pw) > BCRYPT_MAX:
            return False, 0
        now = time.monotonic()
        if good.known(header, now):
            return True, 0
        h, known = dummy, False
        for name, uh in names:  # all of them, whatever matches: the time must not tell where
            if hmac.compare_digest(name, user):
                h, known = uh, True
        rank = failures.begin(client, now)
        if rank is None:
            return False, failures.retry_after(client, now)
        if not gate.enter(rank, GATE_WAIT):
            return False, math.ceil(GATE_WAIT)
        try:
            ok = bcrypt.checkpw(pw, h) and known
        except ValueError:
            ok = False
        finally:
            gate.leave()
        if ok:  # the address is forgiven; a failure stays counted (begin counted it), until refused
            good.add(header, time.monotonic())
            failures.forget(client)
        return ok, 0

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        ok, wait = check(environ.get("HTTP_AUTHORIZATION", ""), client_of(environ.get("REMOTE_ADDR", "")))
        if ok:
            return app(environ, start_response)
        if wait:
            status, body = "429 Too Many Requests", b"too many failed logins: retry later\n"
            headers = [("Retry-After", str(wait))]
        else:
            status, body = "401 Unauthorized", b"unauthorized\n"
            headers = [("WWW-Authenticate", 'Basic realm="pmaps"')]
        start_response(status, [*headers, ("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return wrapped

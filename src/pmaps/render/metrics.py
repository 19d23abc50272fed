"""The exporter's view-model: metric families (name, help, type, labels, samples) following the
Prometheus conventions (pmaps_ prefix, base units, _bytes / _seconds / _total suffixes). Pure:
commands/exporter.py hands these to prometheus_client, which writes the exposition text."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..analysis.exporter import BYTES, Export
from ..safetext import printable

HELP = {
    "rss": "Resident memory (smaps Rss: zero page and hugetlb excluded)",
    "pss": "Proportional set size (smaps Pss: each page divided by its map count)",
    "uss": "Unique set size: resident pages mapped once (smaps Private_Clean + Private_Dirty)",
    "swap": "Swapped-out anonymous memory (smaps Swap)",
    "swap_pss": "Swap divided among the processes sharing each swap entry (smaps SwapPss)",
    "anon": "Resident anonymous pages (PageAnon; status RssAnon)",
    "file": "Resident page-cache pages, not shmem (status RssFile)",
    "shmem": "Resident shmem/tmpfs pages: swap-backed, not anonymous (status RssShmem)",
    "anon_thp": "Anonymous memory mapped by PMD-sized transparent huge pages (smaps AnonHugePages)",
    "ksm": "Resident pages merged by KSM (smaps KSM)",
    "hugetlb": "hugetlbfs pages mapped (smaps Shared_Hugetlb + Private_Hugetlb)",
    "dirty": "Resident pages with no clean copy: PG_dirty, or anonymous and not in the swap cache",
    "writeback": "Resident pages under writeback (PG_writeback)",
    "locked": "Resident mlocked pages (PG_mlocked)",
    "zero_page": "Virtual memory backed by the shared zero page (not counted in rss)",
}


def label_text(name: str) -> str:
    """A group's name (a comm, a user or cgroup name: anyone's text) as a label value, escaped as
    pmaps escapes such text everywhere (safetext.printable). A byte that is not UTF-8 (a
    surrogateescape surrogate) as \\xNN: names differing in such bytes stay apart (0xff and 0x9b
    were one U+FFFD), and a surrogate, which UTF-8 cannot encode, would fail the whole scrape.
    Control characters too: the exposition escapes only backslash, quote and newline, and a curl
    of /metrics on a terminal ran a comm's ESC sequence. A name that spells \\xff is not told from
    the byte: its owner could as well take the very same name, which grouping by program merges."""
    return printable(name)


@dataclass
class Family:
    name: str
    help: str
    kind: str  # "gauge" or "counter" (name without _total)
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def families(ex: Export | None, me: dict[str, float], skipped_total: dict[str, int], errors: int,
             scans: int) -> list[Family]:
    """Families for the last completed scan (None before the first) and the exporter's own figures."""
    out: list[Family] = []
    if ex is not None:
        lab = (ex.by,)
        names = [label_text(g.name) for g in ex.groups]
        for k in BYTES:
            f = Family(f"pmaps_{k}_bytes", HELP[k] + f", per {ex.by}", "gauge", lab)
            f.samples = [((n,), float(v)) for n, g in zip(names, ex.groups) if (v := g.fig.get(k)) is not None]
            if f.samples:
                out.append(f)
        out.append(Family("pmaps_processes", f"Processes scanned, per {ex.by}", "gauge", lab,
                          [((n,), float(g.procs)) for n, g in zip(names, ex.groups)]))
        pages = Family("pmaps_pages", f"Resident pages per kpageflags class, per {ex.by}", "gauge", (*lab, "state"))
        pages.samples = [((n, st), float(c)) for n, g in zip(names, ex.groups) if g.pages for st, c in g.pages.items()]
        if pages.samples:
            out.append(pages)
        out.append(Family("pmaps_unknown", "1 for each figure this host cannot tell; `reason` says why", "gauge",
                          ("what", "reason"), [((w, r), 1.0) for w, r in ex.unknown.items()]))
        rec = ex.reconcile
        if rec is not None:
            out += [Family("pmaps_host_pss_bytes", "Sum of the PSS of every scanned mm", "gauge", (),
                           [((), float(rec["pss_total"]))]),
                    Family("pmaps_host_meminfo_mapped_bytes", "/proc/meminfo AnonPages + Mapped", "gauge", (),
                           [((), float(rec["meminfo_anon_plus_mapped"]))]),
                    Family("pmaps_host_unexplained_bytes",
                           "meminfo AnonPages+Mapped minus the PSS sum (and the exporter's own PSS)", "gauge", (),
                           [((), float(rec["difference"]))])]
        out += [Family("pmaps_scan_pages", "Pages looked up by the last scan", "gauge", (),
                       [((), float(ex.pages_scanned))]),
                Family("pmaps_scan_processes", "Processes read by the last scan", "gauge", (),
                       [((), float(ex.processes))]),
                Family("pmaps_scan_skipped_processes", "Processes the last scan could not read, by reason", "gauge",
                       ("reason",), [((r, ), float(n)) for r, n in sorted(ex.skipped.items())])]
    out += [Family("pmaps_scan_skipped", "Processes skipped since start, by reason", "counter", ("reason",),
                   [((r,), float(n)) for r, n in sorted(skipped_total.items())]),
            Family("pmaps_scan_errors", "Scans that failed since start", "counter", (), [((), float(errors))]),
            Family("pmaps_scans", "Scans completed since start", "counter", (), [((), float(scans))])]
    for name, (help_, unit) in SELF.items():
        if name in me:
            out.append(Family(f"pmaps_{name}{unit}", help_, "gauge", (), [((), float(me[name]))]))
    blocked = sorted((k.split(":", 1)[1], v) for k, v in me.items() if k.startswith("reuse_blocked:"))
    if blocked:
        out.append(Family("pmaps_scan_reuse_blocked", "1 for each kind of kernel event between the last two scans "
                          "that made it read unchanged processes again: reclaim (kpageflags), thp_split (pagemap "
                          "and kpageflags), migration (pagemap), collapse (the processes whose PMDs changed)",
                          "gauge", ("event",),
                          [((k,), float(v)) for k, v in blocked]))
    return out


SELF = {
    "scan_duration": ("Wall time of the last completed scan", "_seconds"),
    "scan_cpu": ("CPU time of the last completed scan", "_seconds"),
    "scan_interval": ("Seconds between scans: --interval, stretched to keep the --max-cpu budget", "_seconds"),
    "last_scan": ("When the last completed scan ended (Unix time)", "_timestamp_seconds"),
    "exporter_rss": ("The exporter's own resident memory (its smaps_rollup Rss)", "_bytes"),
    "scan_reused_processes": ("Processes whose maps and pagemap the last scan took from the one before (unchanged)",
                              ""),
    "scan_reused_pages": ("Pages whose pagemap entry and kpageflags the last scan took from the one before "
                          "(no reclaim since)", ""),
    "scan_cache": ("Memory the exporter keeps from one scan to the next to reuse unchanged processes "
                   "(at most --cache-max)", "_bytes"),
}

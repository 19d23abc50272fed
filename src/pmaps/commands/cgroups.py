"""pmaps cgroups: pages charged to each memory cgroup (kpagecgroup) beside its memory.stat."""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from . import Command, add_output_options, positive

# As analysis.cgroups.SORT_KEYS (not imported here: that module needs numpy, help should not).
SORT_FIELDS = ("charged", "anon", "file", "shmem", "kernel", "mapped", "thp", "dirty", "writeback", "active_anon",
               "inactive_anon", "active_file", "inactive_file", "unevictable", "here", "elsewhere", "from_others",
               "not_mapped", "path")


class Cgroups(Command):
    """Per memory cgroup: pages charged (anon, file, shmem, kernel...) next to memory.stat, and
    page cache charged to one cgroup but mapped by the processes of others (root)."""

    name = "cgroups"
    order = 26

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--cgroup", metavar="PATH", help="only this cgroup and those below it (path as in "
                                                        "/proc/PID/cgroup)")
        p.add_argument("--detail", metavar="CGROUP",
                       help="also list the files and processes behind CGROUP's pages mapped across cgroups")
        p.add_argument("--no-mapped", action="store_true",
                       help="skip the scan of every process (no ELSEWHERE / FROM_OTHERS columns; faster)")
        p.add_argument("--all", action="store_true", help="also cgroups with nothing charged")
        p.add_argument("--sort", default="charged", metavar="FIELD", choices=SORT_FIELDS,
                       help="order of the rows: " + ", ".join(SORT_FIELDS) + " (sizes largest first; default charged)")
        p.add_argument("--lru", action="store_true",
                       help="text: the LRU columns (active/inactive anon and file, unevictable, each beside its "
                            "difference from memory.stat) instead of anon/file/shmem")
        p.add_argument("-n", "--limit", type=positive, default=0, metavar="N", help="the first N rows (--sort order)")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        from ..analysis import cgroups as C
        from ..errors import Unsupported, UsageError
        from ..kernel import cgroup as K
        from ..kernel.kpage import iter_kpageflags_cgroup
        from ..numeric import PAGE_SIZE
        from ..render import write
        from ..render.cgroups import CgroupsView

        if args.detail and args.no_mapped:
            raise UsageError("--detail needs the process scan: drop --no-mapped")
        if args.sort in C.NEEDS_SCAN and args.no_mapped:
            raise UsageError(f"--sort {args.sort} needs the process scan: drop --no-mapped")
        h = K.find_memory_hierarchy()
        if h is None:
            raise Unsupported("no memory cgroup controller here (neither v1 'memory' nor v2 with memory)")
        names = K.memcg_dirs(h)
        if args.cgroup and K.memcg_exists(args.cgroup) is False:  # before the passes, not after
            raise UsageError(f"--cgroup: no memory cgroup {args.cgroup!r}")
        scanning = None
        if not args.no_mapped:
            # The processes are scanned on their own thread during the pass over physical memory:
            # both spend their time in the kernel (pread, the ioctl), which releases the GIL.
            from ..collector.mapped import scan_mapped
            from ..collector.parallel import background

            scanning = background(scan_mapped)
        charged = C.charged_pages(iter_kpageflags_cgroup(), keep=not args.no_mapped, inodes=names)
        # memory.stat right after the pass, so that both describe nearly the same moment
        stats = {p: K.read_memory_stat(h, p) for p in names.values()}
        mapped = None
        if scanning is not None and charged.by_pfn is not None:
            from ..render.notes import skipped_line

            scan = scanning()
            line = skipped_line(scan)
            if line and not args.quiet:  # as top's report_scan
                err.write(f"pmaps: {line}\n")
            mapped = C.mapped_by(scan, charged.by_pfn, names)
        lru_gen = K.lru_gen_enabled()
        rows = C.rows(charged, names, stats, h.version, mapped, lru_gen=lru_gen)
        if args.cgroup:
            base = args.cgroup.rstrip("/") or "/"
            rows = [r for r in rows if base == "/" or r["path"] == base or r["path"].startswith(base + "/")]
            if not rows:
                raise UsageError(f"--cgroup: no memory cgroup {args.cgroup!r}")
        if not args.all:
            rows = [r for r in rows if r["charged"] or r["compare"]["anon"]["kernel"] or r["compare"]["file"]["kernel"]]
        rows = C.sort_rows(rows, args.sort)
        if args.limit:
            rows = rows[: args.limit]
        detail = None
        if args.detail:
            if args.detail not in names.values():
                raise UsageError(f"--detail: no memory cgroup {args.detail!r}")
            assert mapped is not None
            detail = self._detail(mapped, args.detail, PAGE_SIZE)
        view = CgroupsView(rows, h.version, detail, args.detail or "", PAGE_SIZE, lru=args.lru)
        if args.lru:
            view.notes.append("# pmaps minus memory.stat (D_): active_anon, inactive_anon (anon and shmem), "
                              "active_file, inactive_file, unevictable (the kernel's LRU lists)"
                              + ("; the multi-gen LRU is on: kpageflags cannot tell active from inactive ('?')"
                                 if lru_gen else ""))
        elif h.version == 1:
            view.notes.append("# pmaps minus memory.stat (D_): ANON vs rss, FILE (page cache and shmem) vs cache, "
                              "SHMEM vs shmem, MAPPED vs mapped_file (total_* less the children's); "
                              "ELSEWHERE: file/shmem charged here, mapped only by other cgroups; "
                              "FROM_OTHERS: mapped here, charged elsewhere")
        else:
            view.notes.append("# pmaps minus memory.stat (D_): ANON vs anon, FILE vs file, SHMEM vs shmem, MAPPED vs "
                              "file_mapped; ELSEWHERE: file/shmem charged here, mapped only by other cgroups; "
                              "FROM_OTHERS: mapped here, charged elsewhere")
        write(view, out, args.format, args.unit)
        return 0

    @staticmethod
    def _detail(mapped: Any, cg: str, page: int) -> list[dict[str, Any]]:
        out = [{"charged_to": c, "mapped_by": m, "pid": pid, "comm": comm, "mapping": path, "bytes": n * page}
               for (c, m, pid, comm, path), n in mapped.detail.items() if cg in (c, m)]
        out.sort(key=lambda d: (-d["bytes"], d["pid"], d["mapping"]))
        return out

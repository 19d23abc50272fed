"""The only code that opens /proc and /sys files or calls an ioctl: one module per kernel file or
interface (maps, pagemap + PAGEMAP_SCAN, kpage, idle, smaps, clear_refs, status, cgroup, meminfo,
damon), pure `decode_*` functions beside thin readers; OS errors become pmaps errors in procfs."""

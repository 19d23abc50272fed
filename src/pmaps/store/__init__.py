"""Every file format pmaps writes or reads: snapshots (.npz), system scans (.npz), recordings
(Parquet samples + manifest). One VMA/Known codec, atomic writes, one file-error translation."""
from .files import load_bytes, save_bytes, write_atomic
from .snapshot import load, save

__all__ = ["load", "load_bytes", "save", "save_bytes", "write_atomic"]

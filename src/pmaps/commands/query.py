"""pmaps query ROOT SQL: SQL over a fleet dataset with DuckDB, the dataset being the views `samples`
and `ranges`."""
from __future__ import annotations

import argparse
import datetime as dt
import decimal
from typing import Any, TextIO

from ..errors import MissingExtra, PmapsError, UsageError
from ..render import write
from ..render.rows import Col, RowsView
from . import Command, add_output_options

SCHEMA = "pmaps-query/1"
SIZES = {"rss", "pss", "uss", "shared", "swap", "swap_pss", "dirty", "referenced", "ksm", "zero_page", "hugetlb", "thp",
         "vma_size"}


def _plain(v: Any) -> Any:
    """DuckDB's Python values -> what pmaps' formats print (JSON-safe)."""
    if isinstance(v, dt.datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


class Query(Command):
    """Run SQL over a fleet dataset (record --dataset) with DuckDB: the views `samples` and `ranges`.

    `samples`: one row per VMA per sample; `ranges`: one row per page range per sample, written by
    record --dataset (docs/dataset.md). Byte columns (rss, pss, ... and any column
    named *_bytes) take -k/-m/-g/--bytes; the default shows them human-readable.
    """

    name = "query"
    order = 62

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("root", metavar="ROOT", help="the dataset's root directory")
        p.add_argument("sql", metavar="SQL", help="the query; the dataset is the views `samples` and `ranges`")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        try:
            import duckdb
        except ImportError:
            raise MissingExtra("pmaps query needs duckdb: pip install 'pmaps[query]'") from None
        from ..store.dataset import duckdb_ranges, duckdb_source

        if "://" in args.root and not args.root.startswith("file://"):
            raise UsageError("pmaps query reads a local dataset; for s3:// or gs:// load DuckDB's httpfs yourself")
        root = args.root[len("file://"):] if args.root.startswith("file://") else args.root
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"CREATE VIEW samples AS SELECT * FROM {duckdb_source(root)}")
            con.execute(f"CREATE VIEW ranges AS {duckdb_ranges(root)}")
            cur = con.execute(args.sql)
            names = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        except duckdb.IOException as e:
            first = str(e).splitlines()[0]
            if "No files found" in first:
                raise PmapsError(f"{root}: no dataset files (ROOT/host=*/date=*/part-*.parquet)") from None
            raise PmapsError(f"{root}: {first}") from None
        except duckdb.Error as e:
            raise UsageError(f"query failed: {str(e).splitlines()[0]}") from None
        finally:
            con.close()
        recs = [{n: _plain(v) for n, v in zip(names, r)} for r in rows]
        cols = [Col(n, n.upper(), size=n in SIZES or n.endswith("_bytes"),
                    left=any(isinstance(r[n], str) for r in recs)) for n in names]
        write(RowsView(SCHEMA, cols, recs), out, args.format, args.unit)
        return 0

"""pmaps query ROOT SQL: SQL over a fleet dataset with DuckDB, the dataset being the views `samples`
and `ranges` (Arrow datasets that pyarrow reads, locally or from an object store)."""
from __future__ import annotations

import argparse
import datetime as dt
import decimal
import math
import re
from collections.abc import Iterable
from typing import Any, TextIO

from ..errors import BadSnapshot, MissingExtra, PmapsError, UsageError
from ..render import write
from ..render.rows import Col, RowsView
from . import Command, add_output_options

SCHEMA = "pmaps-query/1"
# Values (rows x columns) a result may hold: each becomes a Python object, then a cell of the
# table (~100 bytes each, the view-model's text included), so 8 M values take about 1 GB. DuckDB
# streams the result, fetched FETCH_ROWS rows at a time, so the refusal comes once this many are
# held, whatever the query would return: more than anyone reads in a terminal; a program that
# needs more reads the Parquet files itself (docs/dataset.md, "Reading hostile datasets").
MAX_CELLS = 1 << 23
FETCH_ROWS = 1 << 12
SIZES = {"rss", "pss", "uss", "shared", "swap", "swap_pss", "dirty", "referenced", "ksm", "zero_page", "hugetlb", "thp",
         "vma_size"}


def _plain(v: Any) -> Any:
    """DuckDB's Python values -> what pmaps' formats print (JSON-safe): also those of columns a
    newer pmaps added (lists, structs, ...) and of SQL expressions (an interval). NaN and
    infinities are no number to print: None (JSON has no literal for them; json.dumps would write
    NaN, which JSON readers refuse)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dt.datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)  # a time of day, a UUID, ...: as text rather than a JSON writer's TypeError


def _numbers(values: Iterable[Any]) -> bool:
    """Whether a column's values are all numbers (or null): what the byte formatters take."""
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values)


class Query(Command):
    """Run SQL over a fleet dataset (record/top --dataset) with DuckDB: the views `samples` and `ranges`.

    `samples`: one row per VMA per sample; `ranges`: one row per page range per sample
    (docs/dataset.md). ROOT is a directory or a pyarrow.fs URL (s3://bucket/prefix?endpoint_override=...),
    read with pyarrow. Byte columns (rss, pss, ... and any column
    named *_bytes) take -k/-m/-g/--bytes; the default shows them human-readable.
    """

    name = "query"
    order = 62

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("root", metavar="ROOT", help="the dataset's root: a directory, or a pyarrow.fs URL "
                       "(s3://bucket/prefix, gs://...; docs/dataset.md)")
        p.add_argument("sql", metavar="SQL", help="the query; the dataset is the views `samples` and `ranges`")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        try:
            import duckdb
        except ImportError:
            raise MissingExtra("pmaps query needs duckdb: pip install 'pmaps[query]'") from None
        from ..store.dataset import TABLES, arrow_tables
        from ._dataset import check_root

        check_root(args.root)

        con = duckdb.connect(":memory:")
        tables: dict[str, Any] = {}
        try:
            try:
                empty = not con.extract_statements(args.sql)
            except duckdb.Error:  # a syntax error: execute's to report
                empty = False
            if empty:  # '', ';', a comment: checked before the dataset's files are opened
                raise UsageError("the SQL is empty: give a query (SELECT ... FROM samples)")
            # Only the views the SQL names are opened (all when it names none: SHOW TABLES): each
            # costs a read of its files' footers, and a damaged table stays out of the others' way.
            try:
                named = {t.lower() for t in con.get_table_names(args.sql)} & set(TABLES)
            except duckdb.Error:  # it binds some clauses (JOIN ... USING) to views not registered yet
                named = set()  # all views; a real syntax error is execute's to report
            # pyarrow reads the files (local or any pyarrow.fs URL: s3://, gs://, without DuckDB's
            # httpfs extension, which it would download); DuckDB scans them as Arrow datasets, with
            # its filters and column choices pushed down into the scan.
            tables, nfiles = arrow_tables(args.root, named or TABLES)
            if not nfiles:
                raise PmapsError(f"{args.root}: no dataset files (ROOT/host=*/date=*/part-*.parquet)")
            for name, t in tables.items():
                con.register(name, t)
            cur = con.execute(args.sql)
            if cur is None:  # DuckDB's answer to no statement (should extract_statements have missed it)
                raise UsageError("the SQL is empty: give a query (SELECT ... FROM samples)")
            names = [d[0] for d in cur.description or []]
            rows = _fetch(cur, len(names))
        except (duckdb.IOException, duckdb.InvalidInputException) as e:
            _failure(tables)
            # "Invalid Input Error: reading the stream registered as 'samples' failed: Invalid: <arrow's>"
            why = re.sub(r"^.*? failed: (\w+: )?", "", str(e).splitlines()[0])
            raise BadSnapshot(f"{args.root}: corrupt dataset file ({why[:300]})", path=args.root) from None
        except duckdb.Error as e:
            _failure(tables)
            raise UsageError(f"query failed: {str(e).splitlines()[0]}") from None
        finally:
            con.close()
        recs = [{n: _plain(v) for n, v in zip(names, r)} for r in rows]
        # A size column by its name, and only while it holds numbers: `SELECT path AS rss` is text.
        cols = [Col(n, n.upper(), size=(n in SIZES or n.endswith("_bytes")) and _numbers(r[n] for r in recs),
                    left=any(isinstance(r[n], str) for r in recs)) for n in names]
        write(RowsView(SCHEMA, cols, recs), out, args.format, args.unit)
        return 0


def _fetch(cur: Any, ncols: int) -> list[Any]:
    """The result's rows, fetched FETCH_ROWS at a time; UsageError past MAX_CELLS values."""
    rows: list[Any] = []
    while chunk := cur.fetchmany(FETCH_ROWS):
        rows += chunk
        if len(rows) * max(1, ncols) > MAX_CELLS:
            raise UsageError(f"the query returns more than {MAX_CELLS // max(1, ncols)} rows of {ncols} columns "
                             f"({MAX_CELLS} values, what pmaps query prints at most): add a LIMIT, aggregate "
                             "(GROUP BY), choose fewer columns or narrow it (WHERE host = ..., date BETWEEN ..., "
                             "pid = ...)")
    return rows


def _failure(tables: dict[str, Any]) -> None:
    """Raise what a dataset's scan failed on (kept by store.dataset's bounded scan: DuckDB's message
    of it is a Python traceback), if it did."""
    for t in tables.values():
        if getattr(t, "failure", None) is not None:
            raise t.failure

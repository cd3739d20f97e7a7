"""The TimescaleDB SQL of the migrations, checked without a TimescaleDB server.

TimescaleDB cannot be installed where the suite runs, so the TimescaleDB branches of
``store/migrations/versions/*.py`` (hypertables, continuous aggregates and their refresh
policies, compression and retention, 0008's compression dance) never execute here.
This module checks what can be checked without the server:

1. **What runs.** Each migration's ``upgrade()``/``downgrade()`` is executed against a
   recording stand-in for Alembic's ``op`` in both storage modes. The statements only
   the TimescaleDB mode executes must be exactly the migration's
   ``timescale_statements()`` (and migrations without that function must have no
   TimescaleDB-only statement), so everything below looks at what really runs.
2. **Syntax.** Every statement of both modes parses with pglast (libpg_query, the
   PostgreSQL server's own parser).
3. **API.** Every TimescaleDB function call matches the documented signature
   (:data:`SIGNATURES`): known name, positional count, named arguments, required
   arguments, argument kinds (relation names, INTERVAL literals). ``timescaledb.*``
   options of ``ALTER TABLE ... SET`` and ``CREATE MATERIALIZED VIEW ... WITH`` are
   known ones.
4. **Rules TimescaleDB enforces** (a model of the schema is built from the whole
   TimescaleDB-mode statement stream, 0001..head): unique keys of a hypertable include
   its partitioning column; compression segmentby/orderby columns exist, do not
   overlap and cover every unique-key column; ALTER TABLE on a hypertable with
   compression enabled only uses commands TimescaleDB allows there; compression is
   disabled only after its policy is removed and the chunks are decompressed;
   continuous aggregates read one hypertable, bucket its time column with
   ``time_bucket``, use supported aggregates only, are created ``WITH NO DATA`` (the
   migrations run in a transaction) and get no UNIQUE index; refresh windows cover at
   least two buckets; retention never drops what a refresh window still reads.
5. **Against the real PostgreSQL** (the migrated test database of ``conftest``): the
   continuous aggregates' queries with ``time_bucket`` replaced by ``date_bin`` are
   planned, have the columns of the plain aggregate tables and give exactly the rows
   the plain refresher computes; the model agrees with the catalog (columns, unique
   keys of the hypertables); the continuous aggregates' indexes can be built on the
   same columns; PostgreSQL reads every INTERVAL literal as the model does.
6. **The refresher's statements** (``store.aggregates``): the ``CALL
   refresh_continuous_aggregate`` statements it issues for forced refreshes and for
   recorded ranges (late rows, the current hour, ranges across and beyond raw
   retention) match the documented signature, name a continuous aggregate of the
   model, give both window ends as ``TIMESTAMPTZ`` literals on bucket boundaries, start
   no earlier than the retention policy of the hypertable keeps rows and end no later
   than the start of the current bucket (left to the real-time part); a late hour is
   covered in every aggregate although it lies outside every policy's window. The
   TimescaleDB statements of ``tests/support/database.py`` match the API too.

A set of deliberately broken variants (:data:`MUTANTS`, :data:`REFRESH_MUTANTS`) shows
each rule catches what it is meant to catch.

Not verifiable without a TimescaleDB server: that the extension accepts the calls at
run time in a given version (behaviour that differs between 2.x releases), background
jobs (policies actually refreshing, compressing, dropping), the real-time union of
continuous aggregates (also after the refresher materialised an old window), and 0007's
generated ``series_key`` column on a hypertable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from types import ModuleType
from typing import Any, TypeVar

import psycopg
import pytest
from alembic.script import ScriptDirectory
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError
from pglast.stream import RawStream
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import TextClause

from store import aggregates
from store.db import MIGRATIONS_DIR

TIMESCALEDB = "timescaledb"
POSTGRESQL = "postgresql"

# ---------------------------------------------------------------------------------------
# The documented TimescaleDB 2.x API (parameter names in positional order).
#
# Sources: the TimescaleDB API reference pages "create_hypertable()" (the generalized
# form of 2.13+, and the older form), "by_range()" / "by_hash()" (dimension builders),
# "add_continuous_aggregate_policy()", "add_compression_policy()" (renamed
# add_columnstore_policy() in 2.18, the old name kept), "add_retention_policy()",
# "remove_compression_policy()", "decompress_chunk()", "show_chunks()", "time_bucket()",
# "ALTER TABLE (Compression)" and "CREATE MATERIALIZED VIEW (Continuous Aggregate)";
# cross-checked with the CREATE FUNCTION definitions in the timescale/timescaledb
# repository (sql/policy_api.sql, sql/ddl_api.sql, the compression API). Parameters added by
# later 2.x releases are listed so that using them is not flagged; ``required`` is the
# conservative reading (e.g. compress_after/drop_after have a NULL default only in newer
# releases, where exactly one of them or the created_before variant must be given).
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    params: tuple[str, ...]
    required: int
    max_positional: int | None = None

    @property
    def positional_limit(self) -> int:
        return len(self.params) if self.max_positional is None else self.max_positional


SIGNATURES: dict[str, Signature] = {
    # create_hypertable(relation, dimension => by_range(...), ...) -- TimescaleDB >= 2.13
    "create_hypertable": Signature(
        ("relation", "dimension", "create_default_indexes", "if_not_exists", "migrate_data"), 2
    ),
    "by_range": Signature(
        ("column_name", "partition_interval", "partition_func", "partition_origin"), 1
    ),
    "by_hash": Signature(("column_name", "number_partitions", "partition_func"), 2),
    "add_continuous_aggregate_policy": Signature(
        (
            "continuous_aggregate",
            "start_offset",
            "end_offset",
            "schedule_interval",
            "if_not_exists",
            "initial_start",
            "timezone",
            "include_tiered_data",
            "buckets_per_batch",
            "max_batches_per_execution",
            "refresh_newest_first",
        ),
        4,
    ),
    "add_compression_policy": Signature(
        (
            "hypertable",
            "compress_after",
            "if_not_exists",
            "schedule_interval",
            "initial_start",
            "timezone",
            "compress_created_before",
        ),
        2,
    ),
    "add_retention_policy": Signature(
        (
            "relation",
            "drop_after",
            "if_not_exists",
            "schedule_interval",
            "initial_start",
            "timezone",
            "drop_created_before",
        ),
        2,
    ),
    "remove_compression_policy": Signature(("hypertable", "if_exists"), 1),
    "remove_retention_policy": Signature(("relation", "if_exists"), 1),
    "remove_continuous_aggregate_policy": Signature(
        ("continuous_aggregate", "if_not_exists", "if_exists"), 1
    ),
    "decompress_chunk": Signature(("uncompressed_chunk", "if_compressed"), 1),
    "compress_chunk": Signature(("uncompressed_chunk", "if_not_compressed", "recompress"), 1),
    "show_chunks": Signature(
        ("relation", "older_than", "newer_than", "created_before", "created_after"), 1
    ),
    # CALL refresh_continuous_aggregate(cagg, window_start, window_end [, force]) --
    # store.aggregates; ``force`` from 2.22, ``options`` in later releases.
    "refresh_continuous_aggregate": Signature(
        ("continuous_aggregate", "window_start", "window_end", "force", "options"), 3
    ),
    # alter_job(job_id, ..., scheduled => ...) -- the test database pauses its jobs.
    "alter_job": Signature(
        (
            "job_id",
            "schedule_interval",
            "max_runtime",
            "max_retries",
            "retry_period",
            "scheduled",
            "config",
            "next_start",
            "if_exists",
            "check_config",
            "fixed_schedule",
            "initial_start",
            "timezone",
            "job_name",
        ),
        1,
    ),
    # time_bucket(bucket_width, ts [, offset | origin | timezone [, origin [, offset]]])
    "time_bucket": Signature(("bucket_width", "ts", "offset", "origin", "timezone"), 2, 5),
}
# The older create_hypertable(relation, time_column_name, ...) form.
OLD_CREATE_HYPERTABLE = Signature(
    (
        "relation",
        "time_column_name",
        "partitioning_column",
        "number_partitions",
        "associated_schema_name",
        "associated_table_prefix",
        "chunk_time_interval",
        "create_default_indexes",
        "if_not_exists",
        "partitioning_func",
        "migrate_data",
        "chunk_target_size",
        "chunk_sizing_func",
        "time_partitioning_func",
    ),
    2,
)
# Plain PostgreSQL functions the TimescaleDB statements may use.
POSTGRES_FUNCTIONS = frozenset({"count", "sum", "avg", "min", "max"})

# ``ALTER TABLE | MATERIALIZED VIEW ... SET (timescaledb.<option> ...)``
COMPRESSION_OPTIONS = frozenset(
    {"compress", "compress_segmentby", "compress_orderby", "compress_chunk_time_interval"}
)
# ``CREATE MATERIALIZED VIEW ... WITH (timescaledb.<option> ...)``
CAGG_OPTIONS = frozenset(
    {
        "continuous",
        "materialized_only",
        "create_group_indexes",
        "finalized",
        "compress",
        "chunk_interval",
        "invalidate_using",
    }
)
# Aggregates every 2.x continuous aggregate accepts (parallel-safe, with a combine
# function: the only ones before the finalized form of 2.7; conservative on purpose).
CAGG_AGGREGATES = frozenset(
    {
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "first",
        "last",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "bool_and",
        "bool_or",
        "bit_and",
        "bit_or",
        "every",
    }
)
# ALTER TABLE subcommands TimescaleDB allows on a hypertable with compression enabled
# (its process_utility.c whitelist); ADD/DROP CONSTRAINT are refused there.
ALTER_ON_COMPRESSED = frozenset(
    {
        AlterTableType.AT_AddIndex,
        AlterTableType.AT_ReAddIndex,
        AlterTableType.AT_ResetRelOptions,
        AlterTableType.AT_ReplaceRelOptions,
        AlterTableType.AT_SetRelOptions,
        AlterTableType.AT_ClusterOn,
        AlterTableType.AT_DropCluster,
        AlterTableType.AT_ChangeOwner,
        AlterTableType.AT_SetTableSpace,
        AlterTableType.AT_SetStatistics,
        AlterTableType.AT_AddColumn,
        AlterTableType.AT_ColumnDefault,
        AlterTableType.AT_DropColumn,
    }
)
ORDERBY_DIRECTIONS = frozenset(
    {
        "",
        "ASC",
        "DESC",
        "ASC NULLS FIRST",
        "ASC NULLS LAST",
        "DESC NULLS FIRST",
        "DESC NULLS LAST",
        "NULLS FIRST",
        "NULLS LAST",
    }
)
TIME_TYPES = frozenset({"timestamptz", "timestamp", "date", "int2", "int4", "int8"})

_UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    # PostgreSQL's own conventions for EXTRACT(EPOCH FROM interval)
    "month": 30 * 86400,
    "year": 365.25 * 86400,
}


def interval_seconds(text: str) -> float:
    """``'2 hours'``, ``'1 day 6 hours'`` -> seconds (raises ValueError otherwise)."""
    tokens = text.split()
    if not tokens or len(tokens) % 2:
        raise ValueError(f"not an interval this test understands: {text!r}")
    total = 0.0
    for number, unit in zip(tokens[::2], tokens[1::2], strict=True):
        name = unit.lower()
        name = name[:-1] if name.endswith("s") else name
        if name not in _UNIT_SECONDS:
            raise ValueError(f"unknown interval unit in {text!r}")
        total += float(number) * _UNIT_SECONDS[name]
    return total


# ---------------------------------------------------------------------------------------
# Running the migrations against a recording ``op``
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Executed:
    sql: str  # what the server would receive (bind parameters rendered)
    template: str  # the text passed to op.execute (same statement in both modes)


class _Result:
    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self._row = row

    def first(self) -> tuple[Any, ...] | None:
        return self._row


class _Bind:
    """Answers the two questions the migrations ask the database."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def execute(self, clause: Any) -> _Result:
        sql = str(clause)
        if "pg_available_extensions" in sql:
            return _Result((1,) if self.mode == TIMESCALEDB else None)
        if "chargeflow_meta" in sql and sql.lstrip().upper().startswith("SELECT"):
            return _Result((self.mode,))
        raise AssertionError(f"a migration asked the database something new: {sql}")


class RecordingOp:
    """Stands in for ``alembic.op``: records what ``op.execute`` is given."""

    def __init__(self, mode: str) -> None:
        self.executed: list[Executed] = []
        self._bind = _Bind(mode)

    def get_bind(self) -> _Bind:
        return self._bind

    def execute(self, sql: str | TextClause) -> None:
        if isinstance(sql, TextClause):
            rendered = str(
                sql.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            self.executed.append(Executed(rendered, str(sql)))
        else:
            self.executed.append(Executed(sql, sql))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"op.{name}: the recorder knows execute and get_bind only")


@cache
def migrations() -> tuple[tuple[str, ModuleType], ...]:
    """(revision, module) from the first migration to the head."""
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    return tuple((s.revision, s.module) for s in reversed(list(scripts.walk_revisions())))


@cache
def run(revision: str, mode: str, step: str) -> tuple[Executed, ...]:
    module: Any = dict(migrations())[revision]  # a migration script, its ``op`` swapped
    recorder = RecordingOp(mode)
    saved = module.op
    module.op = recorder
    try:
        getattr(module, step)()
    finally:
        module.op = saved
    return tuple(recorder.executed)


def timescale_only(revision: str, step: str) -> list[str]:
    plain = {e.template for e in run(revision, POSTGRESQL, step)}
    return [e.template for e in run(revision, TIMESCALEDB, step) if e.template not in plain]


def declared(revision: str) -> tuple[str, ...]:
    module = dict(migrations())[revision]
    function = getattr(module, "timescale_statements", None)
    return () if function is None else tuple(function())


@dataclass(frozen=True)
class Statement:
    where: str  # "0006 upgrade #3"
    sql: str  # this one statement's text
    node: ast.Node


def split(where: str, sql: str) -> list[Statement]:
    """One :class:`Statement` per statement of ``sql`` (libpg_query offsets are bytes)."""
    data = sql.encode()
    out = []
    for i, raw in enumerate(parse_sql(sql)):
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(data)
        text = data[start:end].decode().strip()
        out.append(Statement(f"{where}.{i}" if i else where, text, present(raw.stmt)))
    return out


def stream(mode: str, steps: Sequence[tuple[str, str]] | None = None) -> list[Statement]:
    """Every statement ``mode`` executes, in order; by default all upgrades."""
    if steps is None:
        steps = [(revision, "upgrade") for revision, _ in migrations()]
    out: list[Statement] = []
    for revision, step in steps:
        for i, executed in enumerate(run(revision, mode, step)):
            out.extend(split(f"{revision} {step} #{i}", executed.sql))
    return out


@cache
def timescale_upgrade_stream() -> tuple[Statement, ...]:
    return tuple(stream(TIMESCALEDB))


def timescale_statement_ids() -> list[tuple[str, str]]:
    return [(revision, sql) for revision, _ in migrations() for sql in declared(revision)]


# ---------------------------------------------------------------------------------------
# The schema model and the rules
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


@dataclass
class Table:
    name: str
    columns: dict[str, str] = field(default_factory=dict)  # name -> type
    unique: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key name -> columns
    time_column: str | None = None  # set once it is a hypertable
    segmentby: tuple[str, ...] | None = None  # set while compression is enabled
    orderby: tuple[str, ...] = ()
    compress_after: float | None = None  # the compression policy
    drop_after: float | None = None  # the retention policy
    decompressed: bool = False  # every chunk decompressed since the policy went

    @property
    def compressed(self) -> bool:
        return self.segmentby is not None


@dataclass
class Cagg:
    name: str
    hypertable: str
    width: float
    columns: tuple[str, ...]
    query: ast.SelectStmt
    sql: str
    refresh: tuple[float, float, float] | None = None  # start, end, schedule
    drop_after: float | None = None
    indexes: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


@dataclass
class Model:
    tables: dict[str, Table] = field(default_factory=dict)
    caggs: dict[str, Cagg] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # TimescaleDB functions called
    intervals: list[str] = field(default_factory=list)  # INTERVAL literals seen
    extension: bool = False


def walk(node: Any) -> Iterator[ast.Node]:
    if isinstance(node, ast.Node):
        yield node
        for name in node:
            yield from walk(getattr(node, name))
    elif isinstance(node, tuple):
        for item in node:
            yield from walk(item)


T = TypeVar("T")


def present(field: T | None) -> T:
    """A parse-tree field the grammar always fills: pglast types every field optional."""
    if field is None:
        raise ValueError("a required field of the parse tree is empty")
    return field


def relation_name(relation: ast.RangeVar | None) -> str:
    return present(present(relation).relname)


def func_name(call: ast.FuncCall) -> str:
    return str(present(call.funcname)[-1].sval)


def type_name(type_node: ast.TypeName | None) -> str:
    return str(present(present(type_node).names)[-1].sval)


def string_const(node: Any) -> str | None:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return str(node.val.sval)
    return None


def interval_literal(node: Any) -> str | None:
    if isinstance(node, ast.TypeCast) and type_name(node.typeName) == "interval":
        return string_const(node.arg)
    return None


def bool_const(node: Any) -> bool | None:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Boolean):
        return bool(node.val.boolval)
    return None


def column_ref(node: Any) -> str | None:
    if isinstance(node, ast.ColumnRef) and isinstance(last := present(node.fields)[-1], ast.String):
        return str(last.sval)
    return None


def bind_arguments(call: ast.FuncCall, signature: Signature) -> tuple[dict[str, Any], list[str]]:
    """Arguments by parameter name, and what is wrong with the call."""
    errors: list[str] = []
    bound: dict[str, Any] = {}
    name = func_name(call)
    if call.agg_star or call.agg_distinct or call.agg_order or call.agg_filter or call.over:
        errors.append(f"{name}() called with aggregate/window syntax")
    if call.func_variadic:
        errors.append(f"{name}() called with VARIADIC")
    funcname = present(call.funcname)
    if len(funcname) > 1 and funcname[0].sval not in ("public", TIMESCALEDB):
        errors.append(f"{name}() qualified with schema {funcname[0].sval!r}")
    args = call.args or ()
    positional = [a for a in args if not isinstance(a, ast.NamedArgExpr)]
    named = [a for a in args if isinstance(a, ast.NamedArgExpr)]
    first_named = next(
        (i for i, a in enumerate(args) if isinstance(a, ast.NamedArgExpr)), len(args)
    )
    if len(positional) > first_named:
        errors.append(f"{name}(): positional argument after a named one")
    if len(positional) > signature.positional_limit:
        errors.append(
            f"{name}() takes at most {signature.positional_limit} positional arguments, "
            f"got {len(positional)}"
        )
    for param, value in zip(signature.params, positional, strict=False):
        bound[param] = value
    for arg in named:
        if arg.name not in signature.params:
            errors.append(f"{name}() has no parameter {arg.name!r} (has {signature.params})")
        elif arg.name in bound:
            errors.append(f"{name}(): {arg.name!r} given twice")
        else:
            bound[arg.name] = arg.arg
    missing = [p for p in signature.params[: signature.required] if p not in bound]
    if missing:
        errors.append(f"{name}() is missing {missing}")
    return bound, errors


class Checker:
    """Applies a statement stream to a :class:`Model`, noting every rule broken."""

    def __init__(self) -> None:
        self.model = Model()
        self._where = ""

    # -- helpers -------------------------------------------------------------------
    def problem(self, rule: str, message: str) -> None:
        self.model.problems.append(Problem(rule, self._where, message))

    def table(self, name: str | None, what: str) -> Table | None:
        if name is None or name not in self.model.tables:
            self.problem("relation", f"{what}: no table {name!r}")
            return None
        return self.model.tables[name]

    def hypertable(self, name: str | None, what: str) -> Table | None:
        table = self.table(name, what)
        if table is not None and table.time_column is None:
            self.problem("hypertable", f"{what}: {name!r} is not a hypertable")
            return None
        return table

    def interval(self, node: Any, what: str) -> float | None:
        text = interval_literal(node)
        if text is None:
            self.problem("signature", f"{what} must be an INTERVAL literal")
            return None
        self.model.intervals.append(text)
        try:
            return interval_seconds(text)
        except ValueError as exc:
            self.problem("signature", f"{what}: {exc}")
            return None

    def add_unique(self, table: Table, name: str, columns: tuple[str, ...]) -> None:
        for column in columns:
            if column not in table.columns:
                self.problem("relation", f"key {name} on {table.name}: no column {column!r}")
        if table.time_column is not None:
            if table.time_column not in columns:
                self.problem(
                    "unique-key",
                    f"unique key {name} {columns} on hypertable {table.name} lacks its "
                    f"partitioning column {table.time_column!r}",
                )
            if table.compressed:
                self.problem(
                    "compression",
                    f"unique key {name} on {table.name}: TimescaleDB refuses unique indexes "
                    "and constraints on hypertables that have compression enabled",
                )
        table.unique[name] = columns

    # -- statements ----------------------------------------------------------------
    def apply(self, statements: Sequence[Statement]) -> Model:
        for statement in statements:
            self._where = statement.where
            handler = getattr(self, "on_" + type(statement.node).__name__, None)
            if handler is not None:
                handler(statement.node, statement.sql)
        self._where = "end of stream"
        self.final_checks()
        return self.model

    def on_CreateExtensionStmt(self, node: ast.CreateExtensionStmt, sql: str) -> None:
        if node.extname == TIMESCALEDB:
            self.model.extension = True

    def on_CreateStmt(self, node: ast.CreateStmt, sql: str) -> None:
        table = Table(relation_name(node.relation))
        self.model.tables[table.name] = table
        keys: list[tuple[str, tuple[str, ...]]] = []
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                colname = present(element.colname)
                table.columns[colname] = type_name(element.typeName)
                for constraint in element.constraints or ():
                    if constraint.contype == ConstrType.CONSTR_PRIMARY:
                        keys.append((constraint.conname or f"{table.name}_pkey", (colname,)))
                    elif constraint.contype == ConstrType.CONSTR_UNIQUE:
                        keys.append(
                            (constraint.conname or f"{table.name}_{colname}_key", (colname,))
                        )
            elif isinstance(element, ast.Constraint):
                keys.extend(self._key(table.name, element))
        for name, columns in keys:
            self.add_unique(table, name, columns)

    @staticmethod
    def _key(table: str, constraint: ast.Constraint) -> list[tuple[str, tuple[str, ...]]]:
        columns = tuple(str(k.sval) for k in constraint.keys or ())
        if constraint.contype == ConstrType.CONSTR_PRIMARY:
            return [(constraint.conname or f"{table}_pkey", columns)]
        if constraint.contype == ConstrType.CONSTR_UNIQUE:
            return [(constraint.conname or f"{table}_{'_'.join(columns)}_key", columns)]
        return []

    def on_IndexStmt(self, node: ast.IndexStmt, sql: str) -> None:
        relation = relation_name(node.relation)
        # An expression has no column name; PostgreSQL names an unnamed index itself.
        columns = tuple(e.name for e in present(node.indexParams))
        key = tuple(str(c) for c in columns)
        index = str(node.idxname)
        if relation in self.model.caggs:
            cagg = self.model.caggs[relation]
            if node.unique:
                self.problem(
                    "cagg",
                    f"continuous aggregates do not support UNIQUE indexes "
                    f"({node.idxname} on {relation})",
                )
            for column in columns:
                if column not in cagg.columns:
                    self.problem(
                        "cagg", f"index {node.idxname}: {relation} has no column {column!r}"
                    )
            cagg.indexes.append((index, key))
            return
        table = self.table(relation, f"index {node.idxname}")
        if table is None:
            return
        if any(c is None for c in columns):
            if node.unique and table.time_column is not None:
                self.problem(
                    "unique-key",
                    f"expression in unique index {node.idxname} on hypertable {relation}",
                )
            return
        for column in columns:
            if column not in table.columns:
                self.problem("relation", f"index {node.idxname}: no column {column!r}")
        if node.unique:
            self.add_unique(table, index, key)

    # Complexity over the limit on purpose: one branch per statement option.
    def on_AlterTableStmt(self, node: ast.AlterTableStmt, sql: str) -> None:  # noqa: C901
        relation = relation_name(node.relation)
        if node.objtype == ObjectType.OBJECT_MATVIEW:
            if relation not in self.model.caggs:
                self.problem(
                    "relation", f"ALTER MATERIALIZED VIEW: no continuous aggregate {relation!r}"
                )
                return
            for cmd in present(node.cmds):
                if cmd.subtype == AlterTableType.AT_SetRelOptions:
                    self._set_options(
                        relation, cmd.def_, self.model.caggs[relation].columns, (), None
                    )
            return
        table = self.table(relation, "ALTER TABLE")
        if table is None:
            return
        for cmd in present(node.cmds):
            if table.compressed and cmd.subtype not in ALTER_ON_COMPRESSED:
                self.problem(
                    "compression",
                    f"ALTER TABLE {relation} {cmd.subtype.name}: operation not supported on "
                    "hypertables that have compression enabled",
                )
            if cmd.subtype == AlterTableType.AT_AddColumn:
                column = cmd.def_
                table.columns[column.colname] = type_name(column.typeName)
                if table.compressed:
                    self._check_added_column(table, column)
                for constraint in column.constraints or ():
                    if constraint.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE):
                        self.add_unique(
                            table,
                            constraint.conname or f"{relation}_{column.colname}_key",
                            (column.colname,),
                        )
            elif cmd.subtype == AlterTableType.AT_DropColumn:
                table.columns.pop(cmd.name, None)
                if cmd.name == table.time_column:
                    self.problem("hypertable", f"dropping the partitioning column {cmd.name}")
            elif cmd.subtype == AlterTableType.AT_AddConstraint:
                for name, columns in self._key(relation, cmd.def_):
                    self.add_unique(table, name, columns)
            elif cmd.subtype == AlterTableType.AT_DropConstraint:
                table.unique.pop(cmd.name, None)
            elif cmd.subtype == AlterTableType.AT_SetRelOptions:
                self._set_options(
                    relation, cmd.def_, tuple(table.columns), tuple(table.unique.values()), table
                )

    def _check_added_column(self, table: Table, column: ast.ColumnDef) -> None:
        kinds = {c.contype for c in column.constraints or ()}
        allowed = {ConstrType.CONSTR_NULL, ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_DEFAULT}
        if kinds - allowed:
            self.problem(
                "compression",
                f"ADD COLUMN {column.colname} with constraints on "
                f"{table.name}, which has compression enabled",
            )
        if ConstrType.CONSTR_NOTNULL in kinds and ConstrType.CONSTR_DEFAULT not in kinds:
            self.problem(
                "compression",
                f"ADD COLUMN {column.colname} NOT NULL without a "
                f"default on {table.name} (compression enabled)",
            )

    def _timescale_settings(self, options: Sequence[ast.DefElem]) -> dict[str, str | None]:
        settings: dict[str, str | None] = {}
        for option in options:
            if option.defnamespace != TIMESCALEDB:
                continue
            if option.defname not in COMPRESSION_OPTIONS:
                self.problem("signature", f"unknown option timescaledb.{option.defname}")
                continue
            settings[option.defname] = (
                None if option.arg is None else str(getattr(option.arg, "sval", option.arg))
            )
        return settings

    def _disable_compression(
        self, relation: str, settings: dict[str, str | None], table: Table | None
    ) -> None:
        if len(settings) > 1:
            self.problem("compression", "timescaledb.compress = false with other settings")
        if table is None:
            return
        if table.compress_after is not None:
            self.problem(
                "compression",
                f"compression disabled on {relation} while its compression policy still exists",
            )
        if not table.decompressed:
            self.problem(
                "compression",
                f"compression disabled on {relation} without "
                "decompressing its chunks first (TimescaleDB: "
                "cannot disable compression on hypertable with "
                "compressed chunks)",
            )
        table.segmentby = None
        table.orderby = ()

    def _orderby_columns(self, setting: str | None) -> list[str]:
        orderby: list[str] = []
        for item in (setting or "").split(","):
            words = item.split()
            if not words:
                continue
            if " ".join(words[1:]).upper() not in ORDERBY_DIRECTIONS:
                self.problem("compression", f"compress_orderby item {item.strip()!r}")
            orderby.append(words[0])
        return orderby

    def _check_compression_columns(
        self,
        relation: str,
        segmentby: tuple[str, ...],
        orderby: list[str],
        columns: Sequence[str],
        keys: Sequence[tuple[str, ...]],
    ) -> None:
        for column in (*segmentby, *orderby):
            if column not in columns:
                self.problem(
                    "compression", f"compression column {column!r} does not exist in {relation}"
                )
        for column in set(segmentby) & set(orderby):
            self.problem("compression", f"{column!r} is both a segmentby and an orderby column")
        for key in keys:
            for column in key:
                if column not in segmentby and column not in orderby:
                    self.problem(
                        "compression",
                        f"column {column!r} of unique key {key} on {relation} should be used "
                        "for segmenting or ordering (TimescaleDB warns: the key cannot be "
                        "checked cheaply against compressed rows)",
                    )

    def _set_options(
        self,
        relation: str,
        options: Sequence[ast.DefElem],
        columns: Sequence[str],
        keys: Sequence[tuple[str, ...]],
        table: Table | None,
    ) -> None:
        settings = self._timescale_settings(options)
        if not settings:
            return
        if table is not None and table.time_column is None:
            self.problem("hypertable", f"compression settings on {relation}, not a hypertable")
            return
        enable = "compress" in settings and (settings["compress"] or "true").lower() in (
            "true",
            "on",
            "1",
        )
        disable = "compress" in settings and not enable
        if disable:
            self._disable_compression(relation, settings, table)
            return
        if not enable and (table is None or not table.compressed):
            self.problem(
                "compression", f"segmentby/orderby on {relation} without timescaledb.compress"
            )
        segmentby = tuple(
            c.strip() for c in (settings.get("compress_segmentby") or "").split(",") if c.strip()
        )
        orderby = self._orderby_columns(settings.get("compress_orderby"))
        self._check_compression_columns(relation, segmentby, orderby, columns, keys)
        if table is not None:
            table.segmentby = segmentby
            table.orderby = tuple(orderby)
            table.decompressed = False

    def on_CreateTableAsStmt(self, node: ast.CreateTableAsStmt, sql: str) -> None:
        if node.objtype != ObjectType.OBJECT_MATVIEW:
            return
        into = present(node.into)
        name = relation_name(into.rel)
        options = {o.defname: o for o in into.options or () if o.defnamespace == TIMESCALEDB}
        for option in options:
            if option not in CAGG_OPTIONS:
                self.problem("signature", f"unknown option timescaledb.{option}")
        if "continuous" not in options:
            return
        self._check_calls(present(node.query), None)
        if not into.skipData:
            self.problem(
                "cagg",
                f"{name}: CREATE MATERIALIZED VIEW ... WITH DATA cannot run "
                "in the migration's transaction; use WITH NO DATA",
            )
        cagg = self._cagg(name, node.query, sql)
        if cagg is not None:
            self.model.caggs[name] = cagg

    def _check_supported_clauses(self, name: str, query: ast.SelectStmt) -> None:
        for clause in (
            "withClause",
            "distinctClause",
            "sortClause",
            "limitCount",
            "limitOffset",
            "windowClause",
            "lockingClause",
            "larg",
            "rarg",
        ):
            if getattr(query, clause):
                self.problem(
                    "cagg",
                    f"{name}: {clause} is not supported in a continuous aggregate (conservative)",
                )

    def _cagg_outputs(self, name: str, query: ast.SelectStmt) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for target in present(query.targetList):
            label = target.name or column_ref(target.val)
            if label is None:
                self.problem("cagg", f"{name}: unnamed output column")
                continue
            if label in outputs:
                self.problem("cagg", f"{name}: output column {label!r} twice")
            outputs[label] = target.val
        return outputs

    def _cagg_grouping(
        self, name: str, query: ast.SelectStmt, table: Table, outputs: dict[str, Any]
    ) -> tuple[list[Any], list[Any]]:
        """(the time_bucket calls, every GROUP BY item that is allowed)."""
        buckets = []
        grouped: list[Any] = []
        for item in query.groupClause or ():
            ref = column_ref(item)
            if isinstance(item, ast.FuncCall) and func_name(item) == "time_bucket":
                buckets.append(item)
                grouped.append(item)
            elif ref is not None and ref in table.columns:
                aliased = outputs.get(ref)
                if aliased is not None and column_ref(aliased) != ref:
                    self.problem(
                        "cagg",
                        f"{name}: GROUP BY {ref} names the input column, not "
                        "the output column of that name",
                    )
                grouped.append(item)
            else:
                self.problem(
                    "cagg",
                    f"{name}: GROUP BY item {RawStream()(item)} is neither a "
                    f"column of {table.name} nor time_bucket(...)",
                )
        return buckets, grouped

    def _bucket_width(
        self, name: str, bucket: ast.FuncCall, table: Table, outputs: dict[str, Any]
    ) -> float | None:
        args = [a for a in bucket.args or () if not isinstance(a, ast.NamedArgExpr)]
        width = self.interval(args[0], f"{name}: time_bucket width") if args else None
        if len(args) < 2 or column_ref(args[1]) != table.time_column:
            self.problem(
                "cagg",
                f"{name}: time_bucket must bucket {table.name}'s time column {table.time_column!r}",
            )
        if not any(value == bucket for value in outputs.values()):
            self.problem(
                "cagg", f"{name}: the time_bucket(...) of GROUP BY is not an output column"
            )
        return width

    def _cagg(self, name: str, query: Any, sql: str) -> Cagg | None:
        if not isinstance(query, ast.SelectStmt):
            self.problem("cagg", f"{name}: not a plain SELECT")
            return None
        self._check_supported_clauses(name, query)
        sources = query.fromClause or ()
        if len(sources) != 1 or not isinstance(sources[0], ast.RangeVar):
            self.problem("cagg", f"{name}: must read exactly one hypertable")
            return None
        table = self.hypertable(sources[0].relname, f"continuous aggregate {name}")
        if table is None:
            return None
        outputs = self._cagg_outputs(name, query)
        buckets, grouped = self._cagg_grouping(name, query, table, outputs)
        if len(buckets) != 1:
            self.problem(
                "cagg",
                f"{name}: GROUP BY needs exactly one time_bucket(...) on the "
                f"time column (found {len(buckets)})",
            )
            return None
        width = self._bucket_width(name, buckets[0], table, outputs)
        for label, value in outputs.items():
            if any(value == g for g in grouped):
                continue
            self._check_aggregate_expression(name, label, value)
        if query.havingClause is not None:
            self._check_aggregate_expression(name, "HAVING", query.havingClause)
        if width is None:
            return None
        return Cagg(name, table.name, width, tuple(outputs), query, sql)

    def _check_aggregate_expression(self, name: str, label: str, value: Any) -> None:
        def visit(node: Any, inside_aggregate: bool) -> None:
            if isinstance(node, ast.SubLink):
                self.problem("cagg", f"{name}.{label}: subqueries are not supported")
                return
            if isinstance(node, ast.FuncCall):
                function = func_name(node)
                if node.over is not None:
                    self.problem("cagg", f"{name}.{label}: window function {function}()")
                if function not in CAGG_AGGREGATES:
                    self.problem(
                        "cagg",
                        f"{name}.{label}: {function}() is not an aggregate "
                        "every 2.x continuous aggregate supports",
                    )
                elif inside_aggregate:
                    self.problem("cagg", f"{name}.{label}: nested aggregate {function}()")
                if node.agg_distinct or node.agg_order or node.agg_filter or node.agg_within_group:
                    self.problem(
                        "cagg",
                        f"{name}.{label}: DISTINCT/ORDER BY/FILTER/WITHIN "
                        f"GROUP in {function}() (conservative)",
                    )
                for arg in node.args or ():
                    visit(arg, True)
                return
            if isinstance(node, ast.ColumnRef):
                if not inside_aggregate:
                    self.problem(
                        "cagg",
                        f"{name}.{label}: column {column_ref(node)!r} is "
                        "neither grouped nor aggregated",
                    )
                return
            if isinstance(node, ast.Node):
                for attribute in node:
                    visit(getattr(node, attribute), inside_aggregate)
            elif isinstance(node, tuple):
                for item in node:
                    visit(item, inside_aggregate)

        visit(value, False)

    def on_SelectStmt(self, node: ast.SelectStmt, sql: str) -> None:
        self._check_calls(node, node)

    def _check_calls(self, node: ast.Node, select: ast.SelectStmt | None) -> None:
        """Check every function call in ``node`` against :data:`SIGNATURES`; with
        ``select`` (a top-level SELECT), apply the calls to the model too."""
        for call in (n for n in walk(node) if isinstance(n, ast.FuncCall)):
            name = func_name(call)
            if name in POSTGRES_FUNCTIONS:
                continue
            if name not in SIGNATURES:
                self.problem(
                    "unknown-function", f"{name}() is not a TimescaleDB function this test knows"
                )
                continue
            self.model.calls.append(name)
            if not self.model.extension:
                self.problem("order", f"{name}() before CREATE EXTENSION timescaledb")
            signature = SIGNATURES[name]
            if (
                name == "create_hypertable"
                and call.args
                and len(call.args) > 1
                and (string_const(call.args[1]) is not None)
            ):
                signature = OLD_CREATE_HYPERTABLE
            bound, errors = bind_arguments(call, signature)
            for error in errors:
                self.problem("signature", error)
            handler = getattr(self, "call_" + name, None)
            if handler is not None and select is not None and not errors:
                handler(bound, select)

    # -- TimescaleDB functions -----------------------------------------------------
    def call_create_hypertable(self, args: dict[str, Any], select: ast.SelectStmt) -> None:
        table = self.table(string_const(args["relation"]), "create_hypertable")
        if table is None:
            return
        if table.time_column is not None:
            self.problem("hypertable", f"{table.name} is already a hypertable")
        if "dimension" in args:
            dimension = args["dimension"]
            if not (isinstance(dimension, ast.FuncCall) and func_name(dimension) == "by_range"):
                self.problem("signature", "create_hypertable's dimension must be by_range(...)")
                return
            dim_args, _ = bind_arguments(dimension, SIGNATURES["by_range"])
            column = string_const(dim_args.get("column_name"))
            if "partition_interval" in dim_args:
                self.interval(dim_args["partition_interval"], "by_range partition_interval")
        else:
            column = string_const(args["time_column_name"])
        if column not in table.columns:
            self.problem("hypertable", f"create_hypertable: {table.name} has no column {column!r}")
            return
        if table.columns[column] not in TIME_TYPES:
            self.problem(
                "hypertable", f"{table.name}.{column} is {table.columns[column]}, not a time type"
            )
        table.time_column = column
        for name, columns in table.unique.items():
            if column not in columns:
                self.problem(
                    "unique-key",
                    f"create_hypertable({table.name}): unique key {name} "
                    f"{columns} lacks the partitioning column {column!r}",
                )

    def call_add_compression_policy(self, args: dict[str, Any], select: Any) -> None:
        table = self.hypertable(string_const(args["hypertable"]), "add_compression_policy")
        after = self.interval(args["compress_after"], "compress_after")
        if table is None:
            return
        if not table.compressed:
            self.problem(
                "compression",
                f"add_compression_policy on {table.name} before compression is enabled",
            )
        if table.compress_after is not None:
            self.problem("policy", f"{table.name} already has a compression policy")
        table.compress_after = after

    def call_remove_compression_policy(self, args: dict[str, Any], select: Any) -> None:
        table = self.hypertable(string_const(args["hypertable"]), "remove_compression_policy")
        if table is None:
            return
        if table.compress_after is None and bool_const(args.get("if_exists")) is not True:
            self.problem("policy", f"{table.name} has no compression policy to remove")
        table.compress_after = None

    def call_add_retention_policy(self, args: dict[str, Any], select: Any) -> None:
        name = string_const(args["relation"])
        drop_after = self.interval(args["drop_after"], "drop_after")
        target: Table | Cagg | None
        if name in self.model.caggs:
            target = self.model.caggs[name]
        else:
            target = self.hypertable(name, "add_retention_policy")
        if target is None:
            return
        if target.drop_after is not None:
            self.problem("policy", f"{name} already has a retention policy")
        target.drop_after = drop_after

    def call_add_continuous_aggregate_policy(self, args: dict[str, Any], select: Any) -> None:
        name = string_const(args["continuous_aggregate"])
        start = self.interval(args["start_offset"], "start_offset")
        end = self.interval(args["end_offset"], "end_offset")
        every = self.interval(args["schedule_interval"], "schedule_interval")
        cagg = self.model.caggs.get(name or "")
        if cagg is None:
            self.problem(
                "relation", f"add_continuous_aggregate_policy: no continuous aggregate {name!r}"
            )
            return
        if cagg.refresh is not None:
            self.problem("policy", f"{name} already has a refresh policy")
        if start is None or end is None or every is None:
            return
        if start - end < 2 * cagg.width:
            self.problem(
                "policy",
                f"{name}: policy refresh window too small (the start and end "
                "offsets must cover at least two buckets)",
            )
        cagg.refresh = (start, end, every)

    def call_decompress_chunk(self, args: dict[str, Any], select: ast.SelectStmt) -> None:
        if bool_const(args.get("if_compressed")) is not True:
            self.problem(
                "signature",
                "decompress_chunk without if_compressed => true fails on "
                "uncompressed chunks in releases where it defaults to false",
            )
        chunk = column_ref(args["uncompressed_chunk"])
        sources = select.fromClause or ()
        for source in sources:
            if (
                isinstance(source, ast.RangeFunction)
                and source.alias is not None
                and source.alias.aliasname == chunk
            ):
                call = present(source.functions)[0][0]
                if isinstance(call, ast.FuncCall) and func_name(call) == "show_chunks":
                    bound, _ = bind_arguments(call, SIGNATURES["show_chunks"])
                    table = self.hypertable(string_const(bound.get("relation")), "show_chunks")
                    if table is not None and not bound.keys() - {"relation"}:
                        if table.compress_after is not None:
                            self.problem(
                                "compression",
                                f"chunks of {table.name} decompressed "
                                "while its compression policy runs",
                            )
                        table.decompressed = True
                    return
        self.problem("signature", "decompress_chunk(c) where c is not FROM show_chunks(...) c")

    def call_show_chunks(self, args: dict[str, Any], select: Any) -> None:
        self.hypertable(string_const(args["relation"]), "show_chunks")

    # -- after the last statement --------------------------------------------------
    def final_checks(self) -> None:
        for cagg in self.model.caggs.values():
            table = self.model.tables[cagg.hypertable]
            if cagg.refresh is None:
                continue
            start = cagg.refresh[0]
            if table.drop_after is not None and table.drop_after <= start:
                self.problem(
                    "policy",
                    f"retention of {table.name} drops data that the refresh "
                    f"window of {cagg.name} still reads",
                )
            if cagg.drop_after is not None and cagg.drop_after <= start:
                self.problem(
                    "policy",
                    f"retention of {cagg.name} drops buckets its own refresh window rematerialises",
                )
        for table in self.model.tables.values():
            if table.compressed and table.compress_after is None:
                self.problem("policy", f"{table.name}: compression enabled without a policy")
            if (
                table.compress_after is not None
                and table.drop_after is not None
                and table.compress_after >= table.drop_after
            ):
                self.problem("policy", f"{table.name}: compress_after is not before drop_after")


def check(statements: Sequence[Statement]) -> Model:
    return Checker().apply(statements)


@cache
def timescale_model() -> Model:
    return check(timescale_upgrade_stream())


def problems(model: Model, *rules: str) -> list[str]:
    return [str(p) for p in model.problems if not rules or p.rule in rules]


# ---------------------------------------------------------------------------------------
# 1. What the TimescaleDB branches run
# ---------------------------------------------------------------------------------------

REVISIONS = [revision for revision, _ in migrations()]


@pytest.mark.parametrize("revision", REVISIONS)
def test_timescale_statements_are_what_the_branch_runs(revision: str) -> None:
    assert timescale_only(revision, "upgrade") == list(declared(revision))
    module = dict(migrations())[revision]
    if revision == "0008":
        # 0008's downgrade switches compression off and on around its change too.
        assert timescale_only(revision, "downgrade") == list(declared(revision))
    else:
        assert timescale_only(revision, "downgrade") == []
    if hasattr(module, "timescale_statements"):
        assert declared(revision), f"{revision}.timescale_statements() is empty"


def test_the_migrations_with_a_timescaledb_branch() -> None:
    assert [r for r in REVISIONS if declared(r)] == ["0001", "0006", "0008", "0024", "0032"]


@pytest.mark.parametrize("mode", [TIMESCALEDB, POSTGRESQL])
@pytest.mark.parametrize("step", ["upgrade", "downgrade"])
def test_every_statement_of_both_paths_parses(mode: str, step: str) -> None:
    parsed = 0
    for revision in REVISIONS:
        for executed in run(revision, mode, step):
            try:
                parsed += len(parse_sql(executed.sql))
            except ParseError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{revision} {step} ({mode}): {exc}\n{executed.sql}")
    assert parsed > 0


@pytest.mark.parametrize(
    ("revision", "sql"),
    timescale_statement_ids(),
    ids=[f"{r}-{i}" for i, (r, _) in enumerate(timescale_statement_ids())],
)
def test_each_timescale_statement_is_one_statement_that_parses(revision: str, sql: str) -> None:
    try:
        statements = parse_sql(sql)
    except ParseError as exc:
        pytest.fail(f"{revision}: {exc}\n{sql}")
    assert len(statements) == 1, f"{revision}: one statement per op.execute:\n{sql}"


def test_the_plain_postgresql_path_calls_no_timescaledb_function() -> None:
    steps = [(r, s) for r in REVISIONS for s in ("upgrade", "downgrade")]
    for statement in stream(POSTGRESQL, steps):
        for node in walk(statement.node):
            if isinstance(node, ast.FuncCall):
                assert func_name(node) not in SIGNATURES, statement.where
            if isinstance(node, ast.DefElem):
                assert node.defnamespace != TIMESCALEDB, statement.where


# ---------------------------------------------------------------------------------------
# 2. The TimescaleDB API and the rules, on the TimescaleDB-mode stream
# ---------------------------------------------------------------------------------------


def test_timescaledb_calls_match_the_documented_signatures() -> None:
    model = timescale_model()
    assert problems(model, "signature", "unknown-function", "order", "relation") == []
    assert set(model.calls) >= {
        "create_hypertable",
        "by_range",
        "add_continuous_aggregate_policy",
        "add_compression_policy",
        "add_retention_policy",
        "remove_compression_policy",
        "decompress_chunk",
        "show_chunks",
        "time_bucket",
    }


def test_hypertables_and_their_unique_keys() -> None:
    model = timescale_model()
    assert problems(model, "hypertable", "unique-key") == []
    hypertables = {t.name: t.time_column for t in model.tables.values() if t.time_column}
    assert hypertables == {
        "meter_samples": "measured_at",
        "load_connector_1m": "bucket",
        "connector_status_history": "at",
        "ocpp_messages": "received_at",
        "connector_risk_1m": "bucket",
    }
    # After 0007 the natural primary key of meter_samples is a (series_key, time) index.
    assert model.tables["meter_samples"].unique == {
        "meter_samples_series_time_key": ("series_key", "measured_at"),
    }


def test_compression_settings() -> None:
    model = timescale_model()
    assert problems(model, "compression") == []
    compressed = {t.name: (t.segmentby, t.orderby) for t in model.tables.values() if t.compressed}
    assert compressed == {
        "load_connector_1m": (("charge_point_id", "connector_id"), ("bucket",)),
        "connector_status_history": (("charge_point_id", "connector_id"), ("at", "status")),
    }


def test_0008_restores_the_compression_of_0006() -> None:
    def settings(revision: str) -> list[str]:
        return [
            RawStream()(s.node)
            for s in stream(TIMESCALEDB, [(revision, "upgrade")])
            if "connector_status_history" in s.sql
            and ("timescaledb.compress," in s.sql or "add_compression_policy" in s.sql)
        ]

    assert settings("0008") == settings("0006")
    assert len(settings("0006")) == 2


def test_continuous_aggregates() -> None:
    model = timescale_model()
    assert problems(model, "cagg") == []
    assert {c.name: (c.hypertable, c.width) for c in model.caggs.values()} == {
        "load_station_1m": ("load_connector_1m", 60),
        "load_connector_1h": ("load_connector_1m", 3600),
        "energy_connector_1d": ("load_connector_1m", 86400),
    }
    for cagg in model.caggs.values():
        # time_bucket's default origin (2000-01-03) and the plain views' date_bin origin
        # (2000-01-01) give the same buckets for widths that divide a day.
        assert 86400 % cagg.width == 0, cagg.name
        assert cagg.refresh is not None, f"{cagg.name} has no refresh policy"
        assert cagg.indexes, f"{cagg.name} has no index"


def test_policies() -> None:
    model = timescale_model()
    assert problems(model, "policy") == []
    assert model.tables["load_connector_1m"].drop_after == interval_seconds("90 days")
    assert model.tables["connector_status_history"].compress_after == interval_seconds("30 days")


def test_no_rule_is_broken_anywhere() -> None:
    assert problems(timescale_model()) == []


def test_downgrading_0008_keeps_the_rules() -> None:
    steps = [(r, "upgrade") for r in REVISIONS] + [("0008", "downgrade")]
    assert problems(check(stream(TIMESCALEDB, steps))) == []


# ---------------------------------------------------------------------------------------
# 3. The rules catch what they are meant to catch
# ---------------------------------------------------------------------------------------

Mutation = Callable[[list[Statement]], list[Statement]]


def replace(old: str, new: str) -> Mutation:
    def mutate(statements: list[Statement]) -> list[Statement]:
        out = []
        hits = 0
        for s in statements:
            if old in s.sql:
                hits += 1
                sql = s.sql.replace(old, new)
                out.extend(split(s.where, sql))
            else:
                out.append(s)
        assert hits, f"mutation target not found: {old!r}"
        return out

    return mutate


def drop(fragment: str) -> Mutation:
    def mutate(statements: list[Statement]) -> list[Statement]:
        out = [s for s in statements if fragment not in s.sql]
        assert len(out) < len(statements), f"nothing to drop: {fragment!r}"
        return out

    return mutate


def append(sql: str) -> Mutation:
    return lambda statements: [*statements, *split("appended", sql)]


MUTANTS: dict[str, tuple[Mutation, str, str]] = {
    "misspelt named argument": (
        replace("schedule_interval =>", "schedule_intervall =>"),
        "signature",
        "no parameter 'schedule_intervall'",
    ),
    "missing required argument": (
        append(
            "SELECT add_continuous_aggregate_policy('load_station_1m', "
            "start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute')"
        ),
        "signature",
        "missing ['schedule_interval']",
    ),
    "argument given twice": (
        append(
            "SELECT add_retention_policy('meter_samples', INTERVAL '1 year', "
            "drop_after => INTERVAL '2 years')"
        ),
        "signature",
        "given twice",
    ),
    "too many positional arguments": (
        append("SELECT remove_compression_policy('load_connector_1m', true, true)"),
        "signature",
        "at most 2 positional",
    ),
    "interval given as text": (
        replace(
            "add_compression_policy('load_connector_1m', INTERVAL '7 days')",
            "add_compression_policy('load_connector_1m', '7 days')",
        ),
        "signature",
        "INTERVAL literal",
    ),
    "unknown function": (
        replace(
            "add_retention_policy('connector_status_history'",
            "add_retention_policies('connector_status_history'",
        ),
        "unknown-function",
        "add_retention_policies",
    ),
    "hypertable key without the time column": (
        replace(
            "PRIMARY KEY (charge_point_id, connector_id, bucket)",
            "PRIMARY KEY (charge_point_id, connector_id)",
        ),
        "unique-key",
        "lacks the partitioning column 'bucket'",
    ),
    "unique index without the time column": (
        append("CREATE UNIQUE INDEX meter_samples_series_key ON meter_samples (series_key)"),
        "unique-key",
        "lacks its partitioning column 'measured_at'",
    ),
    "unique index on a compressed hypertable": (
        append("CREATE UNIQUE INDEX x ON load_connector_1m (charge_point_id, bucket)"),
        "compression",
        "refuses unique indexes",
    ),
    "orderby column that does not exist": (
        replace("compress_orderby = 'bucket DESC'", "compress_orderby = 'bucket_start DESC'"),
        "compression",
        "'bucket_start' does not exist",
    ),
    "key column neither segmentby nor orderby": (
        replace("'at DESC, status'", "'at DESC'"),
        "compression",
        "'status' of unique key",
    ),
    "compression policy before compression": (
        drop("ALTER TABLE load_connector_1m SET ("),
        "compression",
        "before compression is",
    ),
    "CHECK constraint while compressed": (
        drop("timescaledb.compress = false"),
        "compression",
        "AT_AddConstraint",
    ),
    "compression disabled with compressed chunks": (
        drop("decompress_chunk"),
        "compression",
        "without decompressing",
    ),
    "compression disabled under a policy": (
        drop("remove_compression_policy"),
        "compression",
        "policy still exists",
    ),
    "decompress_chunk without if_compressed": (
        replace("if_compressed => true", "if_compressed => false"),
        "signature",
        "if_compressed => true",
    ),
    "continuous aggregate WITH DATA": (
        replace(" WITH NO DATA", " WITH DATA"),
        "cagg",
        "WITH NO DATA",
    ),
    "continuous aggregate without time_bucket": (
        replace("time_bucket(INTERVAL '1 hour', bucket)", "date_trunc('hour', bucket)"),
        "cagg",
        "exactly one time_bucket",
    ),
    "bucket on another column": (
        replace("time_bucket(INTERVAL '1 day', bucket)", "time_bucket(INTERVAL '1 day', now())"),
        "cagg",
        "time column 'bucket'",
    ),
    "window function in a continuous aggregate": (
        replace(
            "max(max_power_w) AS max_connector_power_w",
            "max(max_power_w) OVER () AS max_connector_power_w",
        ),
        "cagg",
        "window function",
    ),
    "unsupported aggregate": (
        replace(
            "sum(energy_wh) AS energy_wh",
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY energy_wh) AS energy_wh",
        ),
        "cagg",
        "percentile_cont",
    ),
    "ungrouped column": (
        replace(
            "max(max_power_w) AS max_connector_power_w", "max_power_w AS max_connector_power_w"
        ),
        "cagg",
        "neither grouped",
    ),
    "GROUP BY the input column of an output name": (
        replace(
            "GROUP BY charge_point_id, time_bucket(INTERVAL '1 minute', bucket)",
            "GROUP BY charge_point_id, bucket",
        ),
        "cagg",
        "names the input column",
    ),
    "unique index on a continuous aggregate": (
        replace(
            "CREATE INDEX load_station_1m_key_idx", "CREATE UNIQUE INDEX load_station_1m_key_idx"
        ),
        "cagg",
        "UNIQUE",
    ),
    "index on a column the aggregate lacks": (
        append("CREATE INDEX x ON load_station_1m (connector_id, bucket)"),
        "cagg",
        "no column 'connector_id'",
    ),
    "refresh window of one bucket": (
        replace("start_offset => INTERVAL '7 days'", "start_offset => INTERVAL '2 days'"),
        "policy",
        "refresh window too small",
    ),
    "raw retention inside a refresh window": (
        replace(
            "add_retention_policy('load_connector_1m', INTERVAL '90 days')",
            "add_retention_policy('load_connector_1m', INTERVAL '3 days')",
        ),
        "policy",
        "still reads",
    ),
    "second compression policy": (
        append("SELECT add_compression_policy('load_connector_1m', INTERVAL '1 day')"),
        "policy",
        "already has a compression policy",
    ),
    "policy on a plain table": (
        append("SELECT add_retention_policy('sessions', INTERVAL '1 year')"),
        "hypertable",
        "'sessions' is not a hypertable",
    ),
    "API call before CREATE EXTENSION": (
        drop("CREATE EXTENSION"),
        "order",
        "before CREATE EXTENSION",
    ),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_checks_catch(name: str) -> None:
    mutate, rule, fragment = MUTANTS[name]
    model = check(mutate(list(timescale_upgrade_stream())))
    found = problems(model, rule)
    assert any(fragment in p for p in found), (
        f"{name}: expected [{rule}] ...{fragment}...; got {problems(model)}"
    )


def test_interval_reading() -> None:
    assert interval_seconds("1 minute") == 60
    assert interval_seconds("2 years") == 2 * 365.25 * 86400
    assert interval_seconds("1 day 6 hours") == 86400 + 6 * 3600
    with pytest.raises(ValueError, match="unknown interval unit"):
        interval_seconds("3 fortnights")


# ---------------------------------------------------------------------------------------
# 4. Against the real (plain) PostgreSQL schema
# ---------------------------------------------------------------------------------------

ORIGIN = "2000-01-01 00:00:00+00"


def plain_equivalent(cagg: Cagg) -> str:
    """The continuous aggregate's query with time_bucket(w, t) -> date_bin(w, t, ORIGIN)."""
    statement = parse_sql(cagg.sql)[0].stmt
    if not isinstance(statement, ast.CreateTableAsStmt):
        raise TypeError(f"{cagg.name}: not a CREATE MATERIALIZED VIEW")
    query = present(statement.query)
    replaced = 0
    for node in walk(query):
        if isinstance(node, ast.FuncCall) and func_name(node) == "time_bucket":
            node.funcname = (ast.String(sval="date_bin"),)
            node.args = (
                *present(node.args),
                ast.TypeCast(
                    arg=ast.A_Const(val=ast.String(sval=ORIGIN)),
                    typeName=ast.TypeName(names=(ast.String(sval="timestamptz"),)),
                ),
            )
            replaced += 1
    assert replaced == 2, cagg.name  # the output column and the GROUP BY item
    return str(RawStream()(query))


def plain_aggregate(name: str) -> aggregates.Aggregate:
    [aggregate] = [a for a in aggregates.AGGREGATES if a.name == name]
    return aggregate


def _columns(conn: psycopg.Connection[Any], sql: str) -> list[tuple[str, int]]:
    cursor = conn.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
    assert cursor.description is not None
    return [(c.name, c.type_code) for c in cursor.description]


@pytest.mark.integration
def test_continuous_aggregate_queries_run_on_postgresql(database_url: str) -> None:
    """The queries are planned against the migrated schema, have the plain tables' columns
    and, on sample rows, give the rows the plain refresher computes."""
    caggs = timescale_model().caggs
    with psycopg.connect(database_url) as conn:
        try:
            conn.execute(
                "INSERT INTO load_connector_1m (charge_point_id, connector_id, bucket, "
                "sample_count, power_sum_w, avg_power_w, max_power_w, energy_wh, register_wh, "
                "source) SELECT 'CP-' || (i % 3), i % 2 + 1, "
                "TIMESTAMPTZ '2026-11-21 22:30:00+00' + i * INTERVAL '7 minutes', i % 5, "
                "i * 10.0, i * 2.0, i * 3.0, i % 4, 1000 + i, 'station' "
                "FROM generate_series(0, 700) AS i"
            )
            for cagg in caggs.values():
                sql = plain_equivalent(cagg)
                plan = conn.execute(f"EXPLAIN {sql}").fetchall()
                assert plan, cagg.name
                assert _columns(conn, sql) == _columns(conn, f"SELECT * FROM {cagg.name}"), (
                    cagg.name
                )
                # What the plain refresher computes for these rows (every bucket).
                plain = psycopg.ClientCursor(conn).mogrify(
                    aggregates.plain_select_sql(plain_aggregate(cagg.name)),
                    {"start": aggregates.ORIGIN, "end": None},
                )
                assert _columns(conn, plain) == _columns(conn, sql), cagg.name
                differ = conn.execute(
                    f"SELECT count(*) FROM (({sql}) EXCEPT ALL ({plain})) AS a"
                ).fetchone()
                missing = conn.execute(
                    f"SELECT count(*) FROM (({plain}) EXCEPT ALL ({sql})) AS b"
                ).fetchone()
                rows = conn.execute(f"SELECT count(*) FROM ({sql}) AS c").fetchone()
                assert differ == missing == (0,), cagg.name
                assert rows is not None, cagg.name
                assert rows[0] > 0, cagg.name
        finally:
            conn.rollback()


@pytest.mark.integration
def test_the_model_matches_the_catalog(database_url: str) -> None:
    """Columns and unique keys of the hypertables, as PostgreSQL has them after the same
    DDL (the plain path differs only in TimescaleDB calls and aggregate views)."""
    model = timescale_model()
    with psycopg.connect(database_url) as conn:
        for table in model.tables.values():
            if table.time_column is None:
                continue
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table.name,),
            ).fetchall()
            assert {c for (c,) in columns} == set(table.columns), table.name
            keys = conn.execute(
                """
                SELECT i.indexrelid::regclass::text,
                       array_agg(a.attname ORDER BY k.ord)
                FROM pg_index i
                CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE i.indrelid = %s::regclass AND i.indisunique
                GROUP BY i.indexrelid
                """,
                (table.name,),
            ).fetchall()
            assert {name: tuple(cols) for name, cols in keys} == table.unique, table.name
            for name, cols in keys:
                assert table.time_column in cols, f"{name} lacks {table.time_column}"
            for column in (*(table.segmentby or ()), *table.orderby):
                assert column in table.columns


@pytest.mark.integration
def test_continuous_aggregate_indexes_build_on_the_plain_views(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        try:
            for cagg in timescale_model().caggs.values():
                for name, columns in cagg.indexes:
                    conn.execute(f"CREATE INDEX {name}_probe ON {cagg.name} ({', '.join(columns)})")
        finally:
            conn.rollback()


@pytest.mark.integration
def test_postgresql_reads_the_intervals_as_the_model_does(database_url: str) -> None:
    intervals = sorted(set(timescale_model().intervals))
    assert intervals
    with psycopg.connect(database_url) as conn:
        for text in intervals:
            row = conn.execute("SELECT EXTRACT(EPOCH FROM %s::interval)", (text,)).fetchone()
            assert row is not None, text
            assert float(row[0]) == interval_seconds(text), text


# ---------------------------------------------------------------------------------------
# 5. The refresher's TimescaleDB statements (store.aggregates)
# ---------------------------------------------------------------------------------------

# A fixed clock in the middle of an hour and of a day.
NOW = datetime(2026, 12, 2, 14, 37, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def timestamptz_literal(node: Any) -> datetime | None:
    if (
        isinstance(node, ast.TypeCast)
        and node.typeName is not None
        and type_name(node.typeName) == "timestamptz"
    ):
        text = string_const(node.arg)
        if text is not None:
            return datetime.fromisoformat(text)
    return None


def refresh_problems(sql: str, now: datetime, model: Model) -> list[str]:
    """What is wrong with one refresh statement of the refresher at ``now``: API, and the
    window rules (whole buckets, within raw retention, the current bucket left to the
    real-time part)."""
    try:
        [raw] = parse_sql(sql)
    except (ParseError, ValueError) as exc:
        return [f"not one statement: {exc}"]
    if not isinstance(raw.stmt, ast.CallStmt):
        return ["not a CALL"]
    call = raw.stmt.funccall
    assert call is not None
    if func_name(call) != "refresh_continuous_aggregate":
        return [f"calls {func_name(call)}()"]
    bound, found = bind_arguments(call, SIGNATURES["refresh_continuous_aggregate"])
    if found:
        return found
    name = string_const(bound["continuous_aggregate"])
    cagg = model.caggs.get(name or "")
    if cagg is None:
        return [f"no continuous aggregate {name!r}"]
    start = timestamptz_literal(bound["window_start"])
    end = timestamptz_literal(bound["window_end"])
    if start is None or end is None:
        return [
            f"{name}: the window must be two TIMESTAMPTZ literals (NULL refreshes past "
            "raw retention or into the current bucket)"
        ]
    width = timedelta(seconds=cagg.width)
    retained = model.tables[cagg.hypertable].drop_after
    assert retained is not None
    problems_found = []
    for what, at in (("start", start), ("end", end)):
        if (at - aggregates.ORIGIN) % width:
            problems_found.append(f"{name}: window {what} {at} is not a bucket boundary")
    if start < now - timedelta(seconds=retained):
        problems_found.append(
            f"{name}: window starts at {start}, before raw retention "
            f"({now - timedelta(seconds=retained)}): would delete buckets"
        )
    if end > aggregates.floor_bucket(now, width):
        problems_found.append(
            f"{name}: window ends at {end}, inside the current bucket (materialising it freezes it)"
        )
    if end - start < width:
        problems_found.append(f"{name}: empty window")
    return problems_found


def timescale_plan(
    invalidated: Sequence[tuple[datetime, datetime]] = (),
    *,
    force: bool = False,
    now: datetime = NOW,
) -> list[str]:
    return [
        aggregates.timescale_refresh_sql(w)
        for w in aggregates.refresh_windows(
            timescale=True, now=now, invalidated=invalidated, force=force
        )
    ]


def windows_of(statements: Sequence[str]) -> dict[str, list[tuple[datetime, datetime]]]:
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for sql in statements:
        statement = parse_sql(sql)[0].stmt
        assert isinstance(statement, ast.CallStmt)
        assert statement.funccall is not None
        args = statement.funccall.args or ()
        start, end = timestamptz_literal(args[1]), timestamptz_literal(args[2])
        assert start is not None
        assert end is not None
        out.setdefault(str(string_const(args[0])), []).append((start, end))
    return out


PLANS: dict[str, tuple[Sequence[tuple[datetime, datetime]], bool]] = {
    "forced": ((), True),
    "late rows, 10 days old": (
        ((datetime(2026, 11, 22, 9, tzinfo=UTC), datetime(2026, 11, 22, 10, tzinfo=UTC)),),
        False,
    ),
    "the current hour": (
        ((datetime(2026, 12, 2, 14, tzinfo=UTC), datetime(2026, 12, 2, 15, tzinfo=UTC)),),
        False,
    ),
    "across the retention boundary": (((NOW - 95 * DAY, NOW - 85 * DAY),), False),
    "older than retention": (((NOW - 200 * DAY, NOW - 199 * DAY),), False),
    "overlapping ranges and a forced refresh": (
        ((NOW - 3 * DAY, NOW - 2 * DAY), (NOW - 2 * DAY - HOUR, NOW)),
        True,
    ),
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_refresher_statements_keep_the_rules(plan: str) -> None:
    invalidated, force = PLANS[plan]
    statements = timescale_plan(invalidated, force=force)
    model = timescale_model()
    for sql in statements:
        assert refresh_problems(sql, NOW, model) == [], sql
    # Every window of one aggregate is disjoint from the others (merged).
    for name, windows in windows_of(statements).items():
        for (_, end), (start, _) in zip(sorted(windows), sorted(windows)[1:], strict=False):
            assert end < start, name


def test_refresher_clamps_to_the_retention_policy() -> None:
    model = timescale_model()
    retained = model.tables["load_connector_1m"].drop_after
    assert aggregates.RAW_RETENTION.total_seconds() == retained
    for cagg in model.caggs.values():
        # A refresh never reaches buckets the aggregate's own retention dropped either.
        assert cagg.drop_after is None or cagg.drop_after >= retained, cagg.name
    assert timescale_plan([(NOW - 200 * DAY, NOW - 199 * DAY)]) == []
    boundary = windows_of(timescale_plan([(NOW - 95 * DAY, NOW - 85 * DAY)]))
    for cagg in model.caggs.values():
        [(start, end)] = boundary[cagg.name]
        width = timedelta(seconds=cagg.width)
        assert start == aggregates.ceil_bucket(
            NOW - aggregates.RAW_RETENTION + aggregates.RETENTION_MARGIN, width
        )
        assert end == aggregates.ceil_bucket(NOW - 85 * DAY, width)


def test_late_rows_reach_every_continuous_aggregate() -> None:
    """An hour of rows 10 days old (older than every refresh policy's window) is
    refreshed in every aggregate: that hour, and the whole of its day."""
    late = (datetime(2026, 11, 22, 9, tzinfo=UTC), datetime(2026, 11, 22, 10, tzinfo=UTC))
    model = timescale_model()
    for cagg in model.caggs.values():
        assert cagg.refresh is not None
        assert NOW - timedelta(seconds=cagg.refresh[0]) > late[0], cagg.name  # policy misses it
    assert windows_of(timescale_plan([late])) == {
        "load_station_1m": [late],
        "load_connector_1h": [late],
        "energy_connector_1d": [
            (datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
        ],
    }


def test_forced_refresh_leaves_the_current_bucket_to_real_time() -> None:
    forced = windows_of(timescale_plan(force=True))
    assert forced == {
        "load_station_1m": [
            (datetime(2026, 9, 4, 14, 38, tzinfo=UTC), datetime(2026, 12, 2, 14, 37, tzinfo=UTC))
        ],
        "load_connector_1h": [
            (datetime(2026, 9, 4, 15, tzinfo=UTC), datetime(2026, 12, 2, 14, tzinfo=UTC))
        ],
        "energy_connector_1d": [
            (datetime(2026, 9, 5, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))
        ],
    }
    # A minute of the current hour: the finished minute is materialised; its hour and day
    # are the current buckets, which the real-time part shows.
    assert timescale_plan(
        [(datetime(2026, 12, 2, 14, 30, tzinfo=UTC), datetime(2026, 12, 2, 14, 31, tzinfo=UTC))]
    ) == [
        aggregates.timescale_refresh_sql(
            aggregates.RefreshWindow(
                plain_aggregate("load_station_1m"),
                datetime(2026, 12, 2, 14, 30, tzinfo=UTC),
                datetime(2026, 12, 2, 14, 31, tzinfo=UTC),
            )
        )
    ]


REFRESH_MUTANTS = {
    "the whole range": (
        "CALL refresh_continuous_aggregate('load_connector_1h', NULL, NULL)",
        "two TIMESTAMPTZ",
    ),
    "past raw retention": (
        "CALL refresh_continuous_aggregate('energy_connector_1d', "
        "TIMESTAMPTZ '2026-08-01T00:00:00+00:00', TIMESTAMPTZ '2026-08-03T00:00:00+00:00')",
        "before raw retention",
    ),
    "into the current bucket": (
        "CALL refresh_continuous_aggregate('load_connector_1h', "
        "TIMESTAMPTZ '2026-12-02T13:00:00+00:00', TIMESTAMPTZ '2026-12-02T15:00:00+00:00')",
        "inside the current bucket",
    ),
    "part of a bucket": (
        "CALL refresh_continuous_aggregate('energy_connector_1d', "
        "TIMESTAMPTZ '2026-11-22T09:00:00+00:00', TIMESTAMPTZ '2026-11-23T00:00:00+00:00')",
        "not a bucket boundary",
    ),
    "unknown aggregate": (
        "CALL refresh_continuous_aggregate('load_connector_1d', "
        "TIMESTAMPTZ '2026-11-22T00:00:00+00:00', TIMESTAMPTZ '2026-11-23T00:00:00+00:00')",
        "no continuous aggregate",
    ),
    "misspelt parameter": (
        "CALL refresh_continuous_aggregate('load_connector_1h', "
        "window_begin => TIMESTAMPTZ '2026-11-22T00:00:00+00:00', "
        "window_end => TIMESTAMPTZ '2026-11-23T00:00:00+00:00')",
        "no parameter 'window_begin'",
    ),
}


@pytest.mark.parametrize("name", list(REFRESH_MUTANTS))
def test_the_refresh_checks_catch(name: str) -> None:
    sql, fragment = REFRESH_MUTANTS[name]
    found = refresh_problems(sql, NOW, timescale_model())
    assert any(fragment in p for p in found), f"{name}: {found}"


def test_the_test_database_statements_match_the_api() -> None:
    """tests/support/database.py's TimescaleDB statements: pausing retention, emptying the
    continuous aggregates."""
    from tests.support import database

    statements = (database.TIMESCALE_PAUSE_RETENTION, *database.TIMESCALE_EMPTY_AGGREGATES)
    called = []
    for sql in statements:
        [raw] = parse_sql(sql)
        for call in (n for n in walk(raw.stmt) if isinstance(n, ast.FuncCall)):
            name = func_name(call)
            assert name in SIGNATURES, name
            bound, errors = bind_arguments(call, SIGNATURES[name])
            assert errors == [], sql
            called.append(name)
            if name == "alter_job":
                assert bool_const(bound["scheduled"]) is False
            else:
                assert string_const(bound["continuous_aggregate"]) in timescale_model().caggs
    assert sorted(set(called)) == ["alter_job", "refresh_continuous_aggregate"]

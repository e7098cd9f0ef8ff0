"""Rows read by the addon's own SQL, put in the ORM cache: a query that must be written
by hand (a lock, a join the ORM cannot express) then also serves the fields the code
reads next, with no second query for them."""

from functools import cache

from odoo.tools import SQL


def columns(alias, names):
    """SQL: the columns of the stored fields ``names`` of the table aliased ``alias``."""
    return SQL(_columns_code(alias, tuple(names)))


@cache
def _columns_code(alias, names):
    # built once per set of names: this runs on every call of the hot paths
    return SQL(", ").join(SQL.identifier(alias, name) for name in names).code


def cache_rows(model, rows, names):
    """The records of ``model`` whose ids are the first values of ``rows``, with the
    values after them (those of the fields ``names``, in that order) put in the ORM cache
    as ``_fetch_query`` puts what it reads: without overwriting a value already in cache
    (a pending update)."""
    records = model.browse([row[0] for row in rows])
    for index, name in enumerate(names, 1):
        field = model._fields[name]
        if not field.column_type or field.translate:
            raise ValueError(f"{name}: only plain columns are read this way")
        model.env.cache.insert_missing(records, field, [row[index] for row in rows])
    return records


def insert_sql(table, values):
    """SQL: ``INSERT INTO table (...) VALUES (...)`` of the dict ``values`` (column: value),
    False stored as NULL as the ORM stores it."""
    return SQL(
        _insert_code(table, tuple(values)),
        *(None if value is False else value for value in values.values()),
    )


@cache
def _insert_code(table, names):
    # built once per table and set of columns (a few): this runs on every ERP call
    head = SQL(
        "INSERT INTO %s (%s) VALUES ",
        SQL.identifier(table),
        SQL(", ").join(SQL.identifier(name) for name in names),
    ).code
    return f"{head}({', '.join(['%s'] * len(names))})"

"""Statements of a hot path sent to PostgreSQL together, in one round trip.

On a busy server a round trip costs about half a millisecond of the request's time
whatever the statement: an ERP call's chatter note and its log row are two INSERTs that
nothing reads in between, so the note waits for the log row and both go at once. Outside
a batch, a statement runs at once."""

from contextlib import contextmanager

from odoo.tools import SQL

BATCH_KEY = "pos_qimen_sync.sql_batch"


@contextmanager
def sql_batch(cr):
    """Hold back the statements given to :func:`execute_soon` on ``cr`` until
    :func:`execute_with_batch` sends them with its own, or until the block ends. When
    the block raises, they are dropped: the caller rolls its transaction back."""
    batches = cr.precommit.data.setdefault(BATCH_KEY, [])
    batches.append([])
    try:
        yield
        pending = batches[-1]
        if pending:
            cr.execute(SQL("; ").join(pending))
    finally:
        batches.pop()


def execute_soon(cr, query):
    """Run ``query`` (SQL, no result used) now, or with the next statement of the batch
    open on ``cr``."""
    batches = cr.precommit.data.get(BATCH_KEY)
    if batches:
        batches[-1].append(query)
    else:
        cr.execute(query)


def execute_with_batch(cr, query, **kwargs):
    """Run the statements held back on ``cr``, then ``query``, in one round trip: the
    cursor then holds the result of ``query`` (its rows, its rowcount)."""
    batches = cr.precommit.data.get(BATCH_KEY)
    pending = batches[-1] if batches else []
    if pending:
        query = SQL("; ").join([*pending, query])
        pending.clear()
    return cr.execute(query, **kwargs)

from odoo import api, fields, models, tools
from odoo.tools import SQL

from ..const import ERP_STATUS_SELECTION, JOB_STATE_SELECTION
from ..sync_rules import (
    SYNC_STATE_SELECTION,
    event_states_sql,
    job_facts_sql,
    recorded_sql,
    sync_state_sql,
)


class QimenSyncReport(models.Model):
    """The reconciliation (对账): one row per order the sync concerns (it has jobs, could
    not be queued, or records an event), with its sync state and what became of each
    update, so that a manager sees per shop and day which paid orders the ERP has not
    acknowledged.

    A SQL view, as point_of_sale's ``report.pos.order``: the order's sync state is
    computed when read, so only a view column can be grouped. Its rule comes from
    :mod:`..sync_rules`, as the order's field does.

    Why it stays fast with millions of jobs: the jobs are read by LATERAL subqueries,
    each an index scan of ``qimen_sync_job.order_id`` for one order row, never an
    aggregate over the whole job table. PostgreSQL applies a filter on the order's columns
    (``date``, ``config_id``, the record rule's ``company_id``) to ``pos_order`` (its
    ``date_order`` index) before the LATERAL joins: the pivot of one shop's orders of
    yesterday probes the jobs of those orders only, and the per-event subquery runs only
    when one of its columns is read (the list). ``bench/report.py``, 200,000 orders and a
    million jobs (2 cores): that pivot (667 orders) takes 9 ms, every shop's yesterday
    (6,670 orders) 57 ms, every order 1.4 s. EXPLAIN ANALYZE of the first::

        GroupAggregate (rows=3)
          -> Sort (rows=667)
             -> Nested Loop (rows=667)
                -> Nested Loop (rows=667)
                   -> Bitmap Heap Scan on pos_order (rows=667)
                        Recheck Cond: date_order >= … AND date_order < …
                        Filter: config_id = 25 AND company_id = 1
                        -> Bitmap Index Scan on pos_order__date_order_index (rows=6670)
                   -> Subquery Scan on facts (rows=1 loops=667)
                      -> Aggregate (rows=1 loops=667)
                         -> Index Scan using qimen_sync_job__order_id_index
                            on qimen_sync_job job (rows=5 loops=667)
                              Index Cond: order_id = pos_order.id
                -> Result (rows=1 loops=667)
        Execution Time: 7.622 ms
    """

    _name = "qimen.sync.report"
    _description = "Qimen ERP Sync Reconciliation"
    _auto = False
    _order = "date desc, id desc"
    _rec_name = "bill_code"

    order_id = fields.Many2one("pos.order", readonly=True)
    config_id = fields.Many2one("pos.config", string="Shop", readonly=True)
    session_id = fields.Many2one("pos.session", readonly=True)
    company_id = fields.Many2one("res.company", readonly=True)
    date = fields.Datetime("Order Date", readonly=True)
    amount_total = fields.Float("Total", readonly=True)
    bill_code = fields.Char("ERP Bill Code", readonly=True)
    order_state = fields.Selection(
        selection="_selection_order_state", string="Order Status", readonly=True
    )
    sync_state = fields.Selection(SYNC_STATE_SELECTION, string="ERP Sync", readonly=True)
    confirm_state = fields.Selection(JOB_STATE_SELECTION, string="Paid: Sent", readonly=True)
    pickup_state = fields.Selection(JOB_STATE_SELECTION, string="Picked up: Sent", readonly=True)
    void_state = fields.Selection(JOB_STATE_SELECTION, string="Voided: Sent", readonly=True)
    complete_state = fields.Selection(JOB_STATE_SELECTION, string="Completed: Sent", readonly=True)
    last_ack = fields.Datetime("Last Acknowledged On", readonly=True)
    attempts = fields.Integer(
        "Failed Attempts",
        readonly=True,
        aggregator="max",
        help="Attempts that failed for the update this order waits on (0 when every update "
        "was acknowledged).",
    )
    erp_status = fields.Selection(ERP_STATUS_SELECTION, string="ERP Status", readonly=True)
    erp_status_date = fields.Datetime("Reported by the ERP On", readonly=True)
    nbr = fields.Integer("Orders", readonly=True)

    @api.model
    def _selection_order_state(self):
        return self.env["pos.order"]._fields["state"]._description_selection(self.env)

    def _query(self):
        """The view's SELECT: each order the sync concerns, with its jobs' facts."""
        return SQL(
            """SELECT pos_order.id AS id,
                      pos_order.id AS order_id,
                      pos_order.config_id AS config_id,
                      pos_order.session_id AS session_id,
                      pos_order.company_id AS company_id,
                      pos_order.date_order AS date,
                      pos_order.amount_total AS amount_total,
                      pos_order.qimen_bill_code AS bill_code,
                      pos_order.state AS order_state,
                      %(sync_state)s AS sync_state,
                      events.confirm_state AS confirm_state,
                      events.pickup_state AS pickup_state,
                      events.void_state AS void_state,
                      events.complete_state AS complete_state,
                      facts.last_done AS last_ack,
                      events.attempts AS attempts,
                      pos_order.qimen_erp_status AS erp_status,
                      pos_order.qimen_erp_status_date AS erp_status_date,
                      1 AS nbr
                 FROM pos_order
                CROSS JOIN %(facts)s
                CROSS JOIN %(events)s
                WHERE facts.jobs > 0
                   OR pos_order.qimen_config_error IS NOT NULL
                   OR (%(recorded)s)""",
            sync_state=sync_state_sql("pos_order"),
            facts=job_facts_sql("pos_order"),
            events=event_states_sql("pos_order"),
            recorded=recorded_sql("pos_order"),
        )

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(
            SQL(
                "CREATE OR REPLACE VIEW %s AS (%s)",
                SQL.identifier(self._table),
                self._query(),
            )
        )

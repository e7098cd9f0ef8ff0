"""The ERP sync's health on the Point of Sale dashboard: figures per shop card.

The dashboard is loaded often and the queue holds millions of finished jobs, so the
figures are read for all the shops shown at once, by two queries whose cost does not
grow with the finished jobs: one over the jobs that wait or died (the partial index
``qimen_sync_job_waiting_idx``), one probe per shop of the acknowledged jobs' index
``qimen_sync_job_done_idx`` (see ``qimen.sync.job.init``)."""

from odoo import api, fields, models
from odoo.tools import SQL

from ..const import BLOCKING_JOB_STATES
from .qimen_sync_health import REASONS, duration

WAITING = ("pending", "sending", "failed")
# what a figure of the card opens: the queue's search filters (one group: OR-ed)
QUEUE_FILTERS = {
    "waiting": ("filter_pending", "filter_failed"),
    "dead": ("filter_dead",),
    "done": ("filter_done",),
}


def waiting_figures_sql(company_ids, config_ids):
    """SQL: per shop, its updates waiting, the oldest one's queuing time and its dead
    ones. The states are those of the partial index's predicate, the companies its
    leading column: only rows that wait or died are read."""
    return SQL(
        """SELECT config_id,
                  count(*) FILTER (WHERE state IN %(waiting)s),
                  min(create_date) FILTER (WHERE state IN %(waiting)s),
                  count(*) FILTER (WHERE state = 'dead')
             FROM qimen_sync_job
            WHERE company_id IN %(companies)s AND state IN %(states)s
              AND config_id IN %(configs)s
         GROUP BY config_id""",
        waiting=WAITING,
        states=BLOCKING_JOB_STATES,
        companies=tuple(company_ids),
        configs=tuple(config_ids),
    )


def last_ack_sql(config_ids):
    """SQL: per shop, its latest acknowledgement: max() over one shop of the index on
    (config_id, date_done) of done jobs is one step of a backward index scan."""
    return SQL(
        """SELECT shop.id,
                  (SELECT max(date_done) FROM qimen_sync_job
                    WHERE config_id = shop.id AND state = 'done')
             FROM unnest(%s::int[]) AS shop(id)""",
        list(config_ids),
    )


class PosConfig(models.Model):
    _inherit = "pos.config"

    qimen_waiting_count = fields.Integer(
        "Updates Waiting",
        compute="_compute_qimen_sync_health",
        compute_sudo=True,
        help="This shop's updates not yet acknowledged by the ERP (pending, sending, failed).",
    )
    qimen_oldest_wait = fields.Char(
        "Oldest Update Waiting For", compute="_compute_qimen_sync_health", compute_sudo=True
    )
    qimen_dead_count = fields.Integer(
        "Dead Updates",
        compute="_compute_qimen_sync_health",
        compute_sudo=True,
        help="Updates that could not be sent: they hold their order's later updates until "
        "retried or cancelled.",
    )
    qimen_last_ack = fields.Datetime(
        "Last Acknowledged",
        compute="_compute_qimen_sync_health",
        compute_sudo=True,
        help="When the ERP last acknowledged an update of this shop.",
    )
    qimen_breaker_state = fields.Selection(
        [("running", "Sending"), ("paused", "Paused")],
        "ERP Sending",
        compute="_compute_qimen_sync_health",
        compute_sudo=True,
        help="Sending pauses for the whole company while the gateway or the ERP fails "
        "every order alike, and resumes by itself.",
    )
    qimen_breaker_reason = fields.Selection(
        REASONS, "Paused Because", compute="_compute_qimen_sync_health", compute_sudo=True
    )

    @api.depends("company_id.qimen_enabled")  # the jobs: read afresh by each request
    def _compute_qimen_sync_health(self):
        syncing = self.filtered(lambda config: config.id and config.company_id.qimen_enabled)
        waiting, acks, health = {}, {}, {}
        if syncing:
            cr = self.env.cr
            cr.execute(waiting_figures_sql(syncing.company_id.ids, syncing.ids))
            waiting = {row[0]: row[1:] for row in cr.fetchall()}
            cr.execute(last_ack_sql(syncing.ids))
            acks = dict(cr.fetchall())
            health = {
                record.company_id.id: record
                for record in self.env["qimen.sync.health"]
                .sudo()
                .search([("company_id", "in", syncing.company_id.ids)])
            }
        now = fields.Datetime.now()
        for config in self:
            count, oldest, dead = waiting.get(config.id, (0, False, 0))
            record = health.get(config.company_id.id)
            paused = bool(record) and record.state == "paused"
            config.qimen_waiting_count = count
            config.qimen_oldest_wait = (
                self.env._("oldest %s", duration(self.env, now - oldest)) if oldest else False
            )
            config.qimen_dead_count = dead
            config.qimen_last_ack = acks.get(config.id, False)
            config.qimen_breaker_state = (
                ("paused" if paused else "running") if config in syncing else False
            )
            config.qimen_breaker_reason = record.reason if paused else False

    def action_qimen_open_queue(self, what="waiting"):
        """The sync queue of this shop, its updates in ``what`` state (waiting, dead,
        done) selected by the queue's own filters, which the user can then widen."""
        self.ensure_one()
        if what not in QUEUE_FILTERS:
            raise ValueError(f"unknown queue selection {what!r}")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "pos_qimen_sync.qimen_sync_job_action"
        )
        context = {f"search_default_{name}": 1 for name in QUEUE_FILTERS[what]}
        if what == "done":  # acknowledgements per hour
            context["search_default_group_done_hour"] = 1
            action["views"] = sorted(action["views"], key=lambda view: view[1] != "graph")
        name = self.env._("Qimen Sync Queue: %s", self.name)
        action.update(
            name=name,
            display_name=name,  # the breadcrumb's
            domain=[("config_id", "=", self.id)],
            context=context,
        )
        return action

    def action_qimen_open_health(self):
        """The company's sending health (why it paused, when it tries again)."""
        self.ensure_one()
        health = (
            self.env["qimen.sync.health"]
            .sudo()
            .search([("company_id", "=", self.company_id.id)], limit=1)
        )
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "pos_qimen_sync.qimen_sync_health_action"
        )
        action.update(res_id=health.id, views=[(False, "form")], view_mode="form")
        return action

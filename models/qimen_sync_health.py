"""A company's sending health: the circuit breaker of its sync, and its alerts.

A gateway that is out, or an ERP that refuses our app secret, fails every order alike:
that is the company's problem, not the orders'. After a few different orders in a row
failed that way, sending pauses for the company: its jobs wait with their attempts
untouched, one probe call goes out at growing intervals, and sending resumes by itself
when a call succeeds (or gets any answer that is the order's own) or when the sync
settings are saved. The state is a row per company, so that every server sharing the
database sees it; the lanes read it in their due-job query (``dispatch/queue_sql.py``).

One to-do tells the company's POS managers when sending pauses, is kept up to date while
it lasts, and is closed with a note once what waited was sent. Updates that die of their
own errors are summed up in one to-do per company per hour."""

import logging
from datetime import timedelta

from markupsafe import Markup

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
from odoo.tools import SQL, format_datetime

from ..const import (
    BREAKER_TRIP_ORDERS,
    DEAD_SUMMARY_SECONDS,
    PROBE_FIRST_SECONDS,
    PROBE_MAX_SECONDS,
)
from ..qimen.health import SYSTEMIC_KINDS

_logger = logging.getLogger(__name__)
CONFIGURATION = "configuration"  # the company's settings cannot send (found by a lane)
REASONS = [  # why sending paused, as a manager reads it (the kinds of const.FAILURE_KINDS)
    ("unreachable", "The gateway does not answer"),
    ("gateway", "The gateway answers with errors"),
    ("credentials", "The ERP refuses our app key or app secret"),
    (CONFIGURATION, "The sync settings are incomplete"),
]


class QimenSyncHealth(models.Model):
    _name = "qimen.sync.health"
    _description = "Qimen ERP Sync Health"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _rec_name = "company_id"

    company_id = fields.Many2one("res.company", required=True, readonly=True, ondelete="cascade")
    state = fields.Selection(
        [("running", "Sending"), ("paused", "Paused")],
        default="running",
        required=True,
        readonly=True,
    )
    reason = fields.Selection(REASONS, readonly=True, help="Why sending paused.")
    detail = fields.Char("Last Error", readonly=True)
    paused_since = fields.Datetime(readonly=True)
    next_probe = fields.Datetime(readonly=True, help="When one update is tried again while paused.")
    probe_interval = fields.Integer("Probe Interval (s)", readonly=True)
    probes = fields.Integer("Probes Failed", readonly=True)
    resumed_at = fields.Datetime(readonly=True)
    # the current streak of the company's failures: [[job id, bill code], ...]
    failing_jobs = fields.Json(readonly=True)
    alert_activity_id = fields.Many2one("mail.activity", readonly=True, ondelete="set null")
    alerted = fields.Boolean(readonly=True, help="The current incident's to-do was sent.")
    dead_activity_id = fields.Many2one("mail.activity", readonly=True, ondelete="set null")

    _sql_constraints = [
        ("company_unique", "UNIQUE(company_id)", "One sync health per company."),
    ]

    @api.depends("company_id")
    def _compute_display_name(self):
        for health in self:
            health.display_name = self.env._("ERP sync of %s", health.company_id.name)

    # -- the breaker ----------------------------------------------------------------
    @api.model
    def _locked(self, company_id):
        """The company's health row, created if needed and locked until the transaction
        ends: the lanes of every server record their outcomes one after the other here."""
        self.env.cr.execute(
            SQL(
                """INSERT INTO qimen_sync_health
                          (company_id, state, create_uid, create_date, write_uid, write_date)
                   VALUES (%(company)s, 'running', %(uid)s, %(now)s, %(uid)s, %(now)s)
                   ON CONFLICT (company_id) DO NOTHING""",
                company=company_id,
                uid=self.env.uid,
                now=fields.Datetime.now(),
            )
        )
        self.env.cr.execute(
            SQL(
                "SELECT id FROM qimen_sync_health WHERE company_id = %s FOR NO KEY UPDATE",
                company_id,
            ),
            log_exceptions=False,
        )
        health = self.sudo().browse(self.env.cr.fetchone()[0])
        health.invalidate_recordset()
        return health

    @api.model
    def _note_failure(self, job, kind, error, probe=False):
        """Count a failed call of ``job`` (its attempt already counted by its claim).

        Return when the job is to be tried again: the next probe when the failure is the
        company's and sending is (now) paused, its attempt given back; None when the
        failure is the job's own (the job's retry policy applies). ``probe``: the call
        was the paused company's probe (a lane's call taken just before the pause is
        not)."""
        if kind not in (*SYSTEMIC_KINDS, CONFIGURATION):
            return None
        health = self._locked(job.company_id.id)
        if health.state == "paused":
            if probe:
                health._probe_failed(kind, error)
            return health.next_probe
        streak = [entry for entry in health.failing_jobs or [] if entry[1] != job.bill_code]
        streak.append([job.id, job.bill_code])
        if len(streak) < BREAKER_TRIP_ORDERS[kind]:
            health.failing_jobs = streak
            return None
        health._pause(kind, error, [job_id for job_id, _bill in streak])
        return health.next_probe

    def _pause(self, kind, error, job_ids):
        """Pause sending: the jobs of the streak get their attempts back."""
        now = fields.Datetime.now()
        self.write(
            {
                "state": "paused",
                "reason": kind,
                "detail": error,
                "paused_since": now,
                "probe_interval": PROBE_FIRST_SECONDS,
                "next_probe": now + timedelta(seconds=PROBE_FIRST_SECONDS),
                "probes": 0,
                "resumed_at": False,
                "failing_jobs": False,
                "alerted": False,
            }
        )
        self.env.cr.execute(
            SQL(
                """UPDATE qimen_sync_job SET attempts = GREATEST(attempts - 1, 0)
                    WHERE id IN %s AND state = 'failed'""",
                tuple(job_ids),
            )
        )
        self.env["qimen.sync.job"].invalidate_model(["attempts"])
        _logger.warning(
            "Qimen sync: sending paused for company %s (%s): %s", self.company_id.id, kind, error
        )
        self._alert()

    def _probe_failed(self, kind, error):
        """The paused company's probe failed: the next one waits twice as long, up to the
        maximum, and the alert says so."""
        interval = min(max(self.probe_interval, PROBE_FIRST_SECONDS) * 2, PROBE_MAX_SECONDS)
        self.write(
            {
                "reason": kind,
                "detail": error,
                "probes": self.probes + 1,
                "probe_interval": interval,
                "next_probe": fields.Datetime.now() + timedelta(seconds=interval),
            }
        )
        self._alert()

    def _heal(self):
        """A call got an answer that was the order's own: the company is well. Its
        streak of failures ends, and sending resumes if it was paused."""
        if self.failing_jobs:
            self.failing_jobs = False
        self._resume("call")

    def _resume(self, why):
        """Sending resumes: what waited is due at once, in order (a job's earlier
        backoff no longer applies), and the dispatcher runs."""
        self.ensure_one()
        if self.state != "paused":
            return
        now = fields.Datetime.now()
        self.write({"state": "running", "next_probe": False, "resumed_at": now})
        self.env.cr.execute(
            SQL(
                """UPDATE qimen_sync_job SET next_attempt = %s
                    WHERE company_id = %s AND state = 'failed' AND next_attempt > %s""",
                now,
                self.company_id.id,
                now,
            )
        )
        self.env["qimen.sync.job"].invalidate_model(["next_attempt"])
        _logger.info("Qimen sync: sending resumed for company %s (%s)", self.company_id.id, why)
        if self.alert_activity_id:
            self._alert(resumed_by=why)
        self.env["qimen.sync.job"]._trigger_dispatch()

    @api.model
    def _resume_company(self, company, why):
        """Resume the company's sending if paused (its settings were saved)."""
        health = self.sudo().search([("company_id", "=", company.id), ("state", "=", "paused")])
        for record in health:
            record._resume(why)

    @api.model
    def _probes_due(self):
        """The paused companies whose next probe is due, the probe taken: its time moves
        on by the longest a call can take, so that no other lane or server probes too. A
        probe another server is taking is skipped, never waited for. A company whose sync
        is off is not probed (nor are its jobs due)."""
        now = fields.Datetime.now()
        query = SQL(
            """UPDATE qimen_sync_health
                  SET next_probe = %(later)s
                WHERE id IN (SELECT health.id FROM qimen_sync_health health
                               JOIN res_company company ON company.id = health.company_id
                              WHERE health.state = 'paused' AND health.next_probe <= %(now)s
                                AND company.qimen_enabled
                                FOR NO KEY UPDATE OF health SKIP LOCKED)
            RETURNING company_id""",
            now=now,
            later=now + timedelta(seconds=self.env["qimen.sync.job"]._lease_seconds()),
        )
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(query, log_exceptions=False)
                return [row[0] for row in self.env.cr.fetchall()]
        except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:  # taken and committed since we began
            return []

    # -- alerts ---------------------------------------------------------------------
    def _manager(self):
        """The POS manager the company's to-dos are for (the administrator if none)."""
        self.ensure_one()
        return self.company_id._qimen_managers()[:1] or self.env.ref("base.user_admin")

    def _waiting_count(self):
        self.env.cr.execute(
            SQL(
                """SELECT count(*) FROM qimen_sync_job
                    WHERE company_id = %s AND state IN ('pending', 'sending', 'failed')""",
                self.company_id.id,
            )
        )
        return self.env.cr.fetchone()[0]

    def _alert(self, resumed_by=None):
        """The incident's one to-do: opened when sending pauses, kept up to date while it
        lasts; on resume it says so, and it is closed once what waited was sent (see
        :meth:`_close_drained_alerts`)."""
        self.ensure_one()
        user = self._manager()
        env = self.with_context(lang=user.lang or self.env.lang).env
        health = self.with_env(env)
        reason = dict(health._fields["reason"]._description_selection(env)).get(self.reason, "")
        since = format_datetime(env, self.paused_since, tz=user.tz)
        summary = env._("ERP sync paused: %s", reason)
        waiting = f"{self._waiting_count():,}"  # not inside _(): the term extractor evals it
        lines = [
            env._(
                "Sending to the ERP is paused since %(since)s: %(reason)s.",
                since=since,
                reason=reason,
            ),
            env._("What to do: %s", health._advice(env)),
            env._("Last error: %s", self.detail or ""),
            env._("Updates waiting: %s", waiting),
        ]
        if resumed_by:
            why = {
                "call": env._("a call went through"),
                "settings": env._("the sync settings were saved"),
            }.get(resumed_by, resumed_by)
            lines.append(
                env._("Sending resumed (%s); the updates that waited are being sent.", why)
            )
        elif self.next_probe:
            lines.append(
                env._(
                    "Next try: %(when)s (%(probes)s tries failed since the pause).",
                    when=format_datetime(env, self.next_probe, tz=user.tz),
                    probes=self.probes,
                )
            )
        note = Markup("<br/>").join(lines)
        activity = self.alert_activity_id
        if activity:
            activity.write({"summary": summary, "note": note})
            return
        if self.alerted:  # the manager marked it done: not again until the next incident
            return
        self.alert_activity_id = self.activity_schedule(
            "mail.mail_activity_data_todo", summary=summary, note=note, user_id=user.id
        )
        self.alerted = True

    def _advice(self, env):
        return {
            "unreachable": env._(
                "check the gateway URL and the network; sending resumes by itself once the "
                "gateway answers."
            ),
            "gateway": env._("nothing to do here; sending resumes by itself once it recovers."),
            "credentials": env._(
                "check App Key and App Secret in the Point of Sale settings (the ERP side may "
                "have changed them); sending resumes once they are saved."
            ),
            CONFIGURATION: env._(
                "complete the Qimen settings in the Point of Sale settings; sending resumes "
                "once they are saved."
            ),
        }.get(self.reason, "")

    @api.model
    def _close_drained_alerts(self):
        """Close the to-do of each resumed incident once what waited was sent."""
        for health in self.sudo().search(
            [("state", "=", "running"), ("alert_activity_id", "!=", False)]
        ):
            self.env.cr.execute(
                SQL(
                    """SELECT 1 FROM qimen_sync_job
                        WHERE company_id = %s AND state IN ('pending', 'sending', 'failed')
                          AND create_date <= %s LIMIT 1""",
                    health.company_id.id,
                    health.resumed_at,
                )
            )
            if self.env.cr.fetchone():
                continue  # counted only once, when the to-do closes
            self.env.cr.execute(
                SQL(
                    """SELECT count(*) FROM qimen_sync_job
                        WHERE company_id = %s AND state = 'done'
                          AND create_date <= %s AND date_done >= %s""",
                    health.company_id.id,
                    health.resumed_at,
                    health.paused_since,
                )
            )
            sent = self.env.cr.fetchone()[0]
            user = health.alert_activity_id.user_id
            env = self.with_context(lang=user.lang or self.env.lang).env
            lasted = duration(env, health.resumed_at - health.paused_since)
            sent = f"{sent:,}"
            health.alert_activity_id.with_env(env).action_feedback(
                feedback=env._(
                    "Resumed after %(lasted)s; %(sent)s updates sent.",
                    lasted=lasted,
                    sent=sent,
                )
            )
            health.alert_activity_id = False

    @api.model
    def _close_resolved_dead_summaries(self):
        """Close each summary of dead updates once none of the company's dead updates
        waits any more (each was sent after a retry or *Sync to ERP Now*, superseded or
        cancelled): a to-do must not outlive its cause."""
        summed_up = self.sudo().search([("dead_activity_id", "!=", False)])
        if summed_up:
            self.env["qimen.sync.job"].flush_model(["state", "dead_notified", "date_done"])
        for health in summed_up:
            activity = health.dead_activity_id
            self.env.cr.execute(
                SQL(
                    """SELECT 1 FROM qimen_sync_job
                        WHERE company_id = %s AND dead_notified
                          AND state IN ('pending', 'sending', 'failed', 'dead') LIMIT 1""",
                    health.company_id.id,
                )
            )
            if self.env.cr.fetchone():
                continue  # counted only once, when the to-do closes
            self.env.cr.execute(
                SQL(
                    """SELECT count(*) FROM qimen_sync_job
                        WHERE company_id = %s AND dead_notified AND state = 'done'
                          AND date_done >= %s""",
                    health.company_id.id,
                    activity.create_date,
                )
            )
            sent = self.env.cr.fetchone()[0]
            env = self.with_context(lang=activity.user_id.lang or self.env.lang).env
            sent = f"{sent:,}"
            activity.with_env(env).action_feedback(
                feedback=env._(
                    "Resolved: no update of this list waits any more (%(sent)s sent, the "
                    "others superseded or cancelled).",
                    sent=sent,
                )
            )
            health.dead_activity_id = False

    @api.model
    def _note_dead(self, jobs):
        """Sum up updates that died of their own errors: one to-do per company per hour
        lists them (each order keeps its own chatter note)."""
        for company in jobs.company_id:
            health = self._locked(company.id)
            dead = jobs.filtered(lambda job, company=company: job.company_id == company)
            activity = health.dead_activity_id
            fresh = activity and activity.create_date > fields.Datetime.now() - timedelta(
                seconds=DEAD_SUMMARY_SECONDS
            )
            user = activity.user_id if fresh else health._manager()
            env = self.with_context(lang=user.lang or self.env.lang).env
            lines = Markup("<br/>").join(
                env._("%(job)s: %(error)s", job=job.with_env(env).name, error=job.last_error or "")
                for job in dead
            )
            if fresh:
                activity.note = Markup("%s<br/>%s") % (activity.note or "", lines)
                continue
            health.dead_activity_id = health.activity_schedule(
                "mail.mail_activity_data_todo",
                summary=env._("ERP updates could not be sent: fix and retry"),
                note=lines,
                user_id=user.id,
            )


def duration(env, delta):
    """How long something lasted (an update waited, sending paused), as a manager reads
    it: minutes, hours, days."""
    hours, minutes = divmod(int(delta.total_seconds() // 60), 60)
    days, hours = divmod(hours, 24)
    if days:
        return env._("%(days)s d %(hours)s h", days=days, hours=hours)
    if hours:
        return env._("%(hours)s h %(minutes)s min", hours=hours, minutes=minutes)
    return env._("%s min", minutes)

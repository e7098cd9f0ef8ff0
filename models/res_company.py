from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from ..const import GATEWAY_PRESETS, MAX_CONNECT_TIMEOUT, MAX_READ_TIMEOUT
from ..qimen import QimenClient
from ..qimen.client import connection_verdict
from ..qimen.const import CUSTOMERID_MAX_LENGTH, STATUS_CONFIRM

# what the callback's cache of the companies that receive calls holds (clear it on writes)
CALLBACK_COMPANY_FIELDS = frozenset(
    {
        "active",
        "name",
        "partner_id",
        "alias_domain_id",
        "qimen_enabled",
        "qimen_app_key",
        "qimen_app_secret",
        "qimen_callback_secret",
        "qimen_callback_max_skew",
        "qimen_customerid",
        "user_ids",
    }
)


def clear_callback_companies(env):
    """Clear the registry's cache, where the callback keeps the companies that receive
    calls: now, and again once the transaction commits (another thread of this server
    may fill it meanwhile from what was committed before; other servers clear theirs when
    this request signals it, after the commit)."""
    env.registry.clear_cache()
    postcommit = env.cr.postcommit
    if "pos_qimen_sync.clear_callback_companies" not in postcommit.data:
        postcommit.data["pos_qimen_sync.clear_callback_companies"] = True
        postcommit.add(env.registry.clear_cache)


def check_customerid(env, value):
    """The routing parameter is at most 50 characters: refuse it, never truncate it."""
    if value and len(value) > CUSTOMERID_MAX_LENGTH:
        raise ValidationError(
            env._(
                "The Qimen customer ID %(value)s is longer than %(max)s characters.",
                value=value,
                max=CUSTOMERID_MAX_LENGTH,
            )
        )


class ResCompany(models.Model):
    _inherit = "res.company"

    qimen_enabled = fields.Boolean("Qimen ERP Sync")
    qimen_gateway = fields.Selection(
        [("production", "Qimen production"), ("test", "Qimen test"), ("custom", "Custom URL")],
        default="production",
        required=True,
    )
    qimen_custom_url = fields.Char("Qimen Custom Gateway URL")
    qimen_app_key = fields.Char()
    qimen_app_secret = fields.Char(groups="base.group_system", copy=False)
    qimen_target_app_key = fields.Char(
        help="The ERP's app key (target_app_key) behind the gateway."
    )
    qimen_customerid = fields.Char(
        "Qimen Customer ID",
        help="Routing parameter (customerid) naming the ERP tenant; a shop may override it.",
    )
    qimen_sign_method = fields.Selection(
        [("md5", "MD5"), ("hmac", "HMAC-MD5"), ("hmac-sha256", "HMAC-SHA256")],
        default="md5",
        required=True,
    )
    qimen_format = fields.Selection(
        [("json", "JSON"), ("xml", "XML")], default="json", required=True
    )
    qimen_connect_timeout = fields.Float("Qimen Connect Timeout (s)", default=5.0)
    qimen_read_timeout = fields.Float("Qimen Read Timeout (s)", default=15.0)
    qimen_max_attempts = fields.Integer("Qimen Maximum Attempts", default=8)
    qimen_pickup_on_paid = fields.Boolean(
        "Picked Up When Paid",
        default=True,
        help="An order taken home at the till (no later shipping date) is reported as picked "
        "up as soon as it is paid. Orders shipped later are picked up when their delivery "
        "is validated.",
    )
    qimen_refund_policy = fields.Selection(
        [
            ("full", "Void when fully refunded"),
            ("any", "Void on any refund"),
            ("never", "Never"),
        ],
        string="Refunds Void the Order",
        default="full",
        required=True,
        help="When a refund of a paid order voids it in the ERP (status 3, zf_type 0 customer "
        "return).",
    )

    qimen_callback_secret = fields.Char(
        groups="base.group_system",
        copy=False,
        help="Secret the gateway signs its calls to this store with; empty: the app secret.",
    )
    qimen_callback_max_skew = fields.Integer(
        "Qimen Allowed Clock Skew (s)",
        default=600,
        help="Calls whose timestamp is further than this from now are refused.",
    )

    @api.constrains("qimen_customerid")
    def _check_qimen_customerid(self):
        for company in self:
            check_customerid(self.env, company.qimen_customerid)

    @api.constrains("qimen_connect_timeout", "qimen_read_timeout")
    def _check_qimen_timeouts(self):
        """A call must fit in a cron run well within Odoo's real-time limit."""
        for company in self:
            if not 0 < company.qimen_connect_timeout <= MAX_CONNECT_TIMEOUT:
                raise ValidationError(
                    self.env._(
                        "The connect timeout must be more than 0 and at most %s seconds.",
                        MAX_CONNECT_TIMEOUT,
                    )
                )
            if not 0 < company.qimen_read_timeout <= MAX_READ_TIMEOUT:
                raise ValidationError(
                    self.env._(
                        "The read timeout must be more than 0 and at most %s seconds.",
                        MAX_READ_TIMEOUT,
                    )
                )

    @api.model_create_multi
    def create(self, vals_list):
        if any(vals.get("qimen_enabled") for vals in vals_list):
            clear_callback_companies(self.env)
        return super().create(vals_list)

    def write(self, vals):
        if CALLBACK_COMPANY_FIELDS.intersection(vals):
            clear_callback_companies(self.env)
        res = super().write(vals)
        if any(name.startswith("qimen_") for name in vals):
            self._qimen_requeue_missed()
            for company in self.filtered("qimen_enabled"):
                self.env["qimen.sync.health"]._resume_company(company, "settings")
        return res

    def unlink(self):
        clear_callback_companies(self.env)
        return super().unlink()

    def _qimen_managers(self):
        """The company's POS managers (internal users), oldest first: the company's
        to-dos go to the first."""
        self.ensure_one()
        managers = self.env.ref("point_of_sale.group_pos_manager").sudo().users
        return managers.filtered(lambda user: self in user.company_ids and not user.share).sorted(
            "id"
        )

    def _qimen_readers_lang(self):
        """The language of the company's notes about orders (see :func:`readers_lang_sql`)."""
        self.ensure_one()
        self.env.cr.execute(
            SQL(
                "SELECT %s FROM res_company company WHERE company.id = %s",
                readers_lang_sql(self.env),
                self.id,
            )
        )
        row = self.env.cr.fetchone()
        return row[0] if row else False

    def _qimen_requeue_missed(self):
        """Once the settings are complete, queue what was missed while they were not."""
        for company in self.filtered("qimen_enabled"):
            if not company._qimen_config_problems():
                self.env["pos.order"].sudo().search(
                    [("company_id", "=", company.id), ("qimen_config_error", "!=", False)]
                )._qimen_requeue()

    def _qimen_callback_secret(self):
        self.ensure_one()
        company = self.sudo()
        return company.qimen_callback_secret or company.qimen_app_secret or ""

    def _qimen_gateway_url(self):
        """The gateway URL (the context may carry unsaved settings to show it)."""
        self.ensure_one()
        gateway = self.env.context.get("qimen_gateway") or self.qimen_gateway
        if gateway == "custom":
            custom = self.env.context.get("qimen_custom_url", self.qimen_custom_url)
            return (custom or "").strip()
        return GATEWAY_PRESETS[gateway]

    def _qimen_test_connection(self, config=None):
        """One signed call that changes no real order: a confirmation of a bill code that
        cannot exist, with the ``customerid`` that the shop ``config`` sends (the company's
        when no shop is given). Return ``(verdict, detail)``, verdict one of accepted,
        rejected, unreachable, incomplete; the detail says which customerid was tested."""
        self.ensure_one()
        customerid, tested = self._qimen_tested_customerid(config)
        problems = self._qimen_config_problems()
        if not customerid:
            problems.append(self.env._("customer ID (customerid) of the shop or company"))
        if problems:
            return "incomplete", self.env._("Missing: %s.", ", ".join(problems))
        values = {
            "orderBillCode": "QIMEN-CONNECTION-TEST-%s"
            % fields.Datetime.now().strftime("%Y%m%d%H%M%S"),
            "status": STATUS_CONFIRM,
            "customerid": customerid,
            "confirm": "0",
            "extendProps": {"connectionTest": True},
        }
        result = self._qimen_client().salesorder_update(values)
        verdict = connection_verdict(result)
        answered = self.env._(
            "%(url)s answered: %(detail)s",
            url=self._qimen_gateway_url(),
            detail=result.describe() or self.env._("OK"),
        )
        return verdict, f"{answered.rstrip('.')}. {tested}"

    def _qimen_tested_customerid(self, config):
        """The customerid the shop ``config`` sends, and a sentence saying whose it is."""
        self.ensure_one()
        own = config and config.qimen_customerid
        customerid = own or self.qimen_customerid
        if own:
            tested = self.env._(
                "Tested with the customerid of the shop %(shop)s: %(customerid)s.",
                shop=config.name,
                customerid=customerid,
            )
        elif config:
            tested = self.env._(
                "Tested with the company's customerid, as the shop %(shop)s has none of its "
                "own: %(customerid)s.",
                shop=config.name,
                customerid=customerid,
            )
        else:
            tested = self.env._("Tested with the company's customerid: %s.", customerid)
        return customerid, tested

    def _qimen_config_problems(self):
        """What is missing for sending, as texts for the user (empty when complete)."""
        self.ensure_one()
        company = self.sudo()
        required = (  # translated only when missing: this runs for every update queued
            (company._qimen_gateway_url(), lambda: self.env._("gateway URL")),
            (company.qimen_app_key, lambda: self.env._("app key")),
            (company.qimen_app_secret, lambda: self.env._("app secret")),
        )
        return [label() for value, label in required if not value]

    def _qimen_client(self):
        """The protocol client for this company's settings (reads the secret as sudo)."""
        self.ensure_one()
        company = self.sudo()
        return QimenClient(
            company._qimen_gateway_url(),
            company.qimen_app_key,
            company.qimen_app_secret,
            target_app_key=company.qimen_target_app_key,
            sign_method=company.qimen_sign_method,
            fmt=company.qimen_format,
            connect_timeout=company.qimen_connect_timeout or 5.0,
            read_timeout=company.qimen_read_timeout or 15.0,
        )


def readers_lang_sql(env):
    """SQL: the language of the notes of ``company`` (alias): that of its POS managers,
    who read them (the first, as ``_qimen_managers`` orders them, who gets the to-dos),
    else the company's (NULL when the one chosen has none). An expression, read with the
    company in the query of the callback's cache of its companies (what clears that
    cache: see ``qimen.callback.handler._callback_companies``) and by
    :meth:`ResCompany._qimen_readers_lang`. Shaped to be cheap to plan: ``res_partner``
    named once (the planner weighs each of its many indexes at every mention), the
    managers of the company as an array (no join order to search): 0.19 ms of planning,
    where joining the four tables took 0.8 ms."""
    env["res.partner"].flush_model(["lang"])
    env["res.users"].flush_model(["active", "share", "partner_id", "groups_id", "company_ids"])
    return SQL(
        """(SELECT reader.lang FROM res_partner reader
             WHERE reader.id = COALESCE(
                   (SELECT users.partner_id FROM res_users users
                     WHERE users.id = ANY(ARRAY(
                               SELECT member.uid FROM res_groups_users_rel member
                                WHERE member.gid = %s
                               INTERSECT
                               SELECT allowed.user_id FROM res_company_users_rel allowed
                                WHERE allowed.cid = company.id))
                       AND users.active AND NOT users.share
                     ORDER BY users.id LIMIT 1),
                   company.partner_id))""",
        # the group's id from the registry's cache (env.ref would query the group)
        env["ir.model.data"]._xmlid_to_res_id("point_of_sale.group_pos_manager"),
    )

from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from unittest.mock import patch
from urllib.parse import urlsplit

from dateutil.relativedelta import relativedelta

from odoo import SUPERUSER_ID, api, fields
from odoo.tests import tagged
from odoo.tests.common import _super_send
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from odoo.addons.point_of_sale.tests.common import TestPoSCommon

from ..qimen.sandbox import SandboxGateway

SENDING_LOGGER = "odoo.addons.pos_qimen_sync.models.qimen_sync_job_sending"
HEALTH_LOGGER = "odoo.addons.pos_qimen_sync.models.qimen_sync_health"
APP_KEY = "pos-app-1"
APP_SECRET = "pos-secret-不可泄露-42"


def env_on(registry, cr):
    """An environment on a new cursor, from any thread (Registry(dbname) would wait for
    the registry lock that Odoo's test runner holds while tests run)."""
    if cr.transaction is None:
        cr.transaction = api.Transaction(registry)
    return api.Environment(cr, SUPERUSER_ID, {"mail_notify_force_send": False})


def remove_committed_orders(cr, prefix):
    """Delete what a test committed for the orders whose POS reference starts with
    ``prefix``: their jobs, notes, to-dos, followers and the orders themselves."""
    cr.execute("SELECT id FROM pos_order WHERE pos_reference LIKE %s", [prefix + "%"])
    orders = tuple(row[0] for row in cr.fetchall()) or (0,)
    cr.execute("DELETE FROM qimen_sync_job WHERE bill_code LIKE %s", [prefix + "%"])
    cr.execute("DELETE FROM mail_message WHERE model = 'pos.order' AND res_id IN %s", [orders])
    cr.execute("DELETE FROM mail_activity WHERE res_model = 'pos.order' AND res_id IN %s", [orders])
    cr.execute(
        "DELETE FROM mail_followers WHERE res_model = 'pos.order' AND res_id IN %s", [orders]
    )
    cr.execute("DELETE FROM pos_order WHERE id IN %s", [orders])


class BrowserDateTime(datetime):
    """``datetime.datetime`` as the web client's Python (py_js) offers it to a domain, in a
    browser at UTC+8: ``now()`` is the browser's local time, ``to_utc()`` turns it back."""

    OFFSET = timedelta(hours=8)

    @classmethod
    def now(cls, tz=None):
        utc = datetime.now(timezone.utc)
        return cls.combine(utc.date(), utc.time()) + cls.OFFSET

    def to_utc(self):
        return self - self.OFFSET


def browser_eval(domain):
    """Evaluate a search filter's domain as the web client does, in a UTC+8 browser."""
    return safe_eval(
        domain,
        {
            "datetime": SimpleNamespace(
                datetime=BrowserDateTime, date=date, time=time, timedelta=timedelta
            ),
            "relativedelta": relativedelta,
            "context_today": lambda: BrowserDateTime.now().date(),
        },
    )


class LoopbackRequests:
    """Let loopback calls (the sandbox gateway) through with the client's own (connect,
    read) timeouts; Odoo 18's default handler cannot compare a timeout tuple."""

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        if urlsplit(r.url).hostname in ("127.0.0.1", "localhost"):
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)


class SandboxedPos(LoopbackRequests):
    """A shop whose company syncs with a sandbox gateway on 127.0.0.1."""

    @classmethod
    def _sync_with_sandbox(cls, config, **settings):
        cls.sandbox = SandboxGateway({APP_KEY: APP_SECRET}, timeout_delay=3).start()
        cls.addClassCleanup(cls.sandbox.stop)
        cls.config, cls.company = config, config.company_id
        cls.company.write(
            {
                "qimen_enabled": True,
                "qimen_gateway": "custom",
                "qimen_custom_url": cls.sandbox.url,
                "qimen_app_key": APP_KEY,
                "qimen_app_secret": APP_SECRET,
                "qimen_target_app_key": "erp-9",
                "qimen_customerid": "COMPANY_ERP",
                "qimen_read_timeout": 1.0,
                **settings,
            }
        )
        cls.config.qimen_customerid = "STORE_ERP_01"
        cls.Job = cls.env["qimen.sync.job"].sudo()  # tests move jobs by hand; users cannot

    def dispatch_all(self, runs=10):
        """Run the dispatcher (one lane, in the test's transaction) until nothing is due:
        one update per order per run, so that they go in order."""
        self.env.invalidate_all()
        for _run in range(runs):
            if not self.Job._dispatch(inline=True):
                break
        else:
            self.fail(f"still sending after {runs} runs")
        self.env.invalidate_all()

    def dispatch_quietly(self):
        """One run, the warnings of failed calls and of the breaker muted."""
        with mute_logger(SENDING_LOGGER, HEALTH_LOGGER):
            return self.Job._dispatch(inline=True)


@tagged("post_install", "-at_install")
class QimenPosCase(SandboxedPos, TestPoSCommon):
    """A POS with Qimen sync configured against a sandbox gateway on 127.0.0.1."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._sync_with_sandbox(cls.basic_config, qimen_max_attempts=3)
        cls.product1 = cls.create_product("Product 1", cls.categ_basic, 10.0, 5)
        cls.product2 = cls.create_product("Product 2", cls.categ_basic, 20.0, 10)

    def setUp(self):
        super().setUp()
        self.sandbox.clear()

    # helpers ---------------------------------------------------------------------------
    def paid_order(self, lines=None, **kwargs):
        """A paid order through the real POS path (sync_from_ui)."""
        if not self.config.current_session_id:
            self.open_new_session()
        return self._sync_order(self.create_ui_order_data(lines or [(self.product1, 2)], **kwargs))

    def _sync_order(self, data):
        result = self.env["pos.order"].sync_from_ui([data])
        return self.env["pos.order"].browse(result["pos.order"][0]["id"])

    def draft_order(self, lines=None, customer=False):
        if not self.config.current_session_id:
            self.open_new_session()
        data = self.create_ui_order_data(lines or [(self.product1, 1)], customer=customer)
        data.update(state="draft", payment_ids=[])
        return self._sync_order(data)

    def dispatch(self):
        return self.Job._dispatch(inline=True)

    @contextmanager
    def executed_queries(self):
        """The text of every query the block runs on this test's cursor."""
        executed = []
        execute = type(self.env.cr).execute

        def spy(cr, query, params=None, log_exceptions=True):
            executed.append(str(query.code if hasattr(query, "code") else query))
            return execute(cr, query, params, log_exceptions)

        with patch.object(type(self.env.cr), "execute", spy):
            yield executed

    def jobs(self, order):
        return self.Job.search([("bill_code", "=", order.qimen_bill_code)], order="id")

    def expire_backoff(self, jobs):
        jobs.write({"next_attempt": fields.Datetime.now()})

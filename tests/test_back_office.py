from datetime import datetime, time, timedelta

from lxml import etree

from odoo.exceptions import AccessError, UserError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import Form, new_test_user, tagged
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from .common import APP_SECRET, BrowserDateTime, QimenPosCase, browser_eval


@tagged("post_install", "-at_install")
class TestBackOffice(QimenPosCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pos_user = new_test_user(
            cls.env,
            "qimen_pos_user",
            groups="point_of_sale.group_pos_user",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )
        cls.pos_manager = new_test_user(
            cls.env,
            "qimen_pos_manager",
            groups="point_of_sale.group_pos_manager",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )

    def arch(self, model, view_type):
        views = self.env[model].get_views([(False, view_type)])
        return etree.fromstring(views["views"][view_type]["arch"])

    def filter_domain(self, model, name):
        """The domain of the search filter ``name``, evaluated as the web client does (in
        a UTC+8 browser)."""
        (node,) = self.arch(model, "search").xpath(f"//filter[@name='{name}']")
        return browser_eval(node.get("domain"))

    def test_a_manager_finds_orders_and_updates_by_their_state(self):
        """The back office's filters select what their names say, for a POS manager."""
        synced = self.paid_order()
        self.dispatch()
        failed = self.paid_order()
        self.sandbox.add_fault("isv", bill_codes=[failed.qimen_bill_code])
        with mute_logger("odoo.addons.pos_qimen_sync.models.qimen_sync_job_sending"):
            self.dispatch()
        pending = self.paid_order()
        orders = (synced | failed | pending).with_user(self.pos_manager)
        for name, expected in (
            ("qimen_synced", synced),
            ("qimen_sync_failed", failed),
            ("qimen_sync_pending", pending),
        ):
            found = orders.search(
                [("id", "in", orders.ids), *self.filter_domain("pos.order", name)]
            )
            self.assertEqual(found, expected.with_user(self.pos_manager), name)
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "pos_qimen_sync.qimen_sync_job_action"
        )
        jobs = self.env["qimen.sync.job"].with_user(self.pos_manager)
        dead = jobs.search([*self.filter_domain("qimen.sync.job", "filter_dead")])
        self.assertEqual(dead.order_id, failed)
        self.assertEqual(action["res_model"], "qimen.sync.job")
        # the list's buttons work for a manager: retry the dead update once it can go
        self.sandbox.clear()
        dead.action_retry()
        self.dispatch()
        self.assertEqual(failed.qimen_sync_state, "synced")

    def test_the_queue_opens_on_every_update_of_today(self):
        """On a healthy system the queue must not look empty: it opens on today's updates,
        whatever their state, and says so; today is the browser's (UTC+8 here)."""
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "pos_qimen_sync.qimen_sync_job_action"
        )
        defaults = {
            key[len("search_default_") :]
            for key, value in safe_eval(action["context"]).items()
            if key.startswith("search_default_") and value
        }
        self.assertEqual(defaults, {"filter_queued_today"})
        self.assertIn("Queued Today", action["help"])
        orders = [self.paid_order() for _index in range(3)]
        self.dispatch()
        self.dispatch()
        self.assertEqual(self.jobs(orders[0]).mapped("state"), ["done", "done"])
        midnight = datetime.combine(BrowserDateTime.now().date(), time(0, 0))
        queued_at = [  # browser time: 00:30 today (16:30 UTC the day before), 23:30 before
            midnight + timedelta(minutes=30),
            midnight - timedelta(minutes=30),
        ]
        self.env.flush_all()
        for order, local in zip(orders[1:], queued_at, strict=True):
            self.env.cr.execute(
                "UPDATE qimen_sync_job SET create_date = %s WHERE id IN %s",
                [local - BrowserDateTime.OFFSET, tuple(self.jobs(order).ids)],
            )
        self.env.invalidate_all()
        listed = self.Job.search(self.filter_domain("qimen.sync.job", "filter_queued_today"))
        self.assertEqual(
            listed & self.Job.search([("order_id", "in", [o.id for o in orders])]),
            self.jobs(orders[0]) | self.jobs(orders[1]),
            "today's, acknowledged or not, from the browser's midnight",
        )

    def test_secrets_are_masked_in_the_settings_form(self):
        form = self.arch("res.config.settings", "form")
        for name in ("qimen_app_secret", "qimen_callback_secret"):
            (field,) = form.xpath(f"//field[@name='{name}']")
            self.assertEqual(field.get("password"), "True", name)

    def test_settings_round_trip_per_company(self):
        other = self.env["res.company"].create({"name": "Second Store Co"})
        settings = (
            self.env["res.config.settings"]
            .with_company(self.company)
            .create(
                {
                    "qimen_app_key": "key-A",
                    "qimen_target_app_key": "erp-A",
                    "qimen_sign_method": "hmac-sha256",
                    "qimen_format": "xml",
                    "qimen_max_attempts": 5,
                    "qimen_callback_max_skew": 120,
                    "qimen_app_secret": "secret-A",
                    "qimen_refund_policy": "never",
                    "pos_config_id": self.config.id,
                    "pos_qimen_customerid": "SHOP-A",
                    "pos_qimen_bill_code_prefix": "A1-",
                }
            )
        )
        # the shop's fields say which shop they are of, and what the ERP will see
        self.assertEqual(settings.pos_qimen_customerid_label, f"Customer ID of {self.config.name}")
        self.assertEqual(
            settings.pos_qimen_bill_code_prefix_label, f"Bill Code Prefix of {self.config.name}"
        )
        self.assertEqual(settings.pos_qimen_bill_code_example, "A1-00012-001-0003")
        settings.execute()
        self.assertEqual(self.config.qimen_bill_code_prefix, "A1-")
        self.assertEqual(
            (
                self.company.qimen_app_key,
                self.company.qimen_sign_method,
                self.company.qimen_format,
                self.company.qimen_max_attempts,
                self.company.qimen_callback_max_skew,
                self.company.qimen_app_secret,
                self.company.qimen_refund_policy,
            ),
            ("key-A", "hmac-sha256", "xml", 5, 120, "secret-A", "never"),
        )
        self.assertEqual(self.config.qimen_customerid, "SHOP-A")
        settings_b = (
            self.env["res.config.settings"]
            .with_company(other)
            .create({"qimen_enabled": True, "qimen_app_key": "key-B", "qimen_gateway": "test"})
        )
        settings_b.execute()
        self.assertEqual(other.qimen_app_key, "key-B")
        self.assertEqual(self.company.qimen_app_key, "key-A", "the other company is untouched")
        reread = self.env["res.config.settings"].with_company(other).create({})
        self.assertEqual(
            (reread.qimen_app_key, reread.qimen_gateway_url),
            ("key-B", "https://qimen.api.taobao.com/router/qmtest"),
        )
        self.assertTrue(reread.qimen_callback_url.endswith("/qimen/callback"))

    def _test_connection(self, config=None, **company_values):
        self.company.write(company_values)
        settings = (
            self.env["res.config.settings"]
            .with_company(self.company)
            .create({"pos_config_id": (config or self.config).id})
        )
        return settings.action_qimen_test_connection()["params"]

    def test_connection_three_outcomes(self):
        params = self._test_connection()
        self.assertEqual((params["type"], params["title"]), ("success", "Reachable and accepted"))
        call = self.sandbox.calls("accepted")[0]
        self.assertTrue(call.params["orderBillCode"].startswith("QIMEN-CONNECTION-TEST-"))
        self.assertEqual(call.params["customerid"], "STORE_ERP_01", "the selected shop's own")
        self.assertIn(f"of the shop {self.config.name}: STORE_ERP_01", params["message"])
        self.assertFalse(self.Job.search([]), "no order job is created or changed")

        params = self._test_connection(qimen_app_secret="not-the-secret")
        self.assertEqual(
            (params["type"], params["title"]), ("danger", "Credentials or signature rejected")
        )
        self.assertIn("Invalid signature", params["message"])

        params = self._test_connection(
            qimen_app_secret=APP_SECRET, qimen_custom_url="http://127.0.0.1:9/router/qm"
        )
        self.assertEqual((params["type"], params["title"]), ("warning", "Gateway unreachable"))
        self.assertNotIn(APP_SECRET, params["message"])

        params = self._test_connection(qimen_app_key=False)
        self.assertEqual(params["title"], "Settings incomplete")

    def test_connection_tests_the_customerid_of_the_selected_shop(self):
        other_shop = self.config.copy({"name": "Shop Without Its Own", "qimen_customerid": False})
        params = self._test_connection(other_shop)
        self.assertEqual(params["type"], "success")
        self.assertEqual(self.sandbox.calls("accepted")[-1].params["customerid"], "COMPANY_ERP")
        self.assertIn("company's customerid", params["message"])
        self.assertIn("Shop Without Its Own has none of its own: COMPANY_ERP", params["message"])
        calls = len(self.sandbox.calls())
        params = self._test_connection(other_shop, qimen_customerid=False)
        self.assertEqual(params["title"], "Settings incomplete")
        self.assertIn("customer ID", params["message"])
        self.assertEqual(len(self.sandbox.calls()), calls, "nothing sent without a customerid")

    def test_void_wizard_values_reach_the_outbox(self):
        order = self.draft_order()
        action = order.action_qimen_void()
        wizard = Form(self.env[action["res_model"]].with_context(**action["context"]))
        wizard.void_type = "0"
        wizard.reason = "  不想买了  "
        wizard.save().action_void()
        self.assertEqual(order.state, "cancel")
        (job,) = self.jobs(order)
        self.assertEqual((job.payload["zf_type"], job.payload["zf_message"]), ("0", "不想买了"))
        paid = self.paid_order()
        wizard = self.env["qimen.void.wizard"].create(
            {"order_ids": paid.ids, "void_type": "1", "reason": "x"}
        )
        with self.assertRaisesRegex(UserError, "refund paid orders instead"):
            wizard.action_void()

    def test_pos_user_reads_status_not_secrets(self):
        order = self.paid_order()
        as_user = order.with_user(self.pos_user)
        self.assertEqual(as_user.qimen_sync_state, "pending")
        self.assertEqual(len(as_user.qimen_job_ids), 2)
        with self.assertRaises(AccessError):
            self.company.with_user(self.pos_user).read(["qimen_app_secret"])
        with self.assertRaises(AccessError):
            self.company.with_user(self.pos_manager).read(["qimen_callback_secret"])
        with self.assertRaises(AccessError):
            as_user.qimen_job_ids.with_user(self.pos_user).action_cancel()
        as_user.qimen_job_ids.with_user(self.pos_manager).action_cancel()
        self.assertEqual(set(order.qimen_job_ids.mapped("state")), {"cancelled"})
        with self.assertRaises(AccessError):
            as_user.qimen_job_ids.with_user(self.pos_user).action_retry()
        as_user.qimen_job_ids.with_user(self.pos_manager).action_retry()
        self.assertEqual(set(order.qimen_job_ids.mapped("state")), {"pending"})
        self.assertNotIn(
            "qimen_app_secret", self.env["res.company"].with_user(self.pos_manager).fields_get()
        )

    def test_users_do_not_see_another_companys_jobs(self):
        other = self.env["res.company"].create({"name": "Other Co"})
        foreign = self.Job.create(
            {
                "company_id": other.id,
                "bill_code": "FOREIGN-1",
                "event": "confirm",
                "payload": {"orderBillCode": "FOREIGN-1"},
            }
        )
        self.paid_order()
        for user in (self.pos_user, self.pos_manager):
            visible = self.Job.with_user(user).search([])
            self.assertTrue(visible)
            self.assertNotIn(foreign, visible)
            with self.assertRaises(AccessError):
                foreign.with_user(user).read(["bill_code"])

    def test_dead_job_tells_the_order_once(self):
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        messages = len(order.message_ids)
        self.sandbox.add_fault("isv")
        self.dispatch()
        self.assertEqual(confirm.state, "dead")
        self.assertEqual(len(order.message_ids), messages + 1)
        self.assertIn("could not be sent", order.message_ids[0].body)
        self.assertFalse(order.activity_ids, "the managers' to-do sums the company's up")
        health = self.env["qimen.sync.health"].sudo().search([("company_id", "=", self.company.id)])
        self.assertEqual(len(health.activity_ids), 1)
        self.assertIn(order.qimen_bill_code, str(health.activity_ids.note))
        confirm.action_retry()
        self.dispatch()
        self.assertEqual(confirm.state, "dead")
        self.assertEqual(len(order.message_ids), messages + 1, "not on every attempt")
        self.assertEqual(len(health.activity_ids), 1)

    def test_neutralize_disables_sending(self):
        order = self.paid_order()
        queries = list(get_neutralization_queries(["pos_qimen_sync"]))
        self.assertTrue(any("qimen_enabled" in query for query in queries))
        for query in queries:
            self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertFalse(self.company.qimen_enabled)
        self.dispatch()
        self.assertFalse(self.sandbox.calls())
        self.assertEqual(set(self.jobs(order).mapped("state")), {"pending"})

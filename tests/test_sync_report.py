"""The reconciliation report (qimen.sync.report, a SQL view) says what the queue and
the orders say: counted by shop, day and sync state over committed data, row by row
against each order's own fields, through the web client's calls, and in its filters."""

import uuid
from collections import Counter
from datetime import date, datetime, time, timedelta

from lxml import etree

from odoo import fields
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, HttpCase, get_db_name, new_test_user, tagged

from ..const import EVENT_STATUS
from ..sync_rules import recorded_events
from .common import (
    BrowserDateTime,
    QimenPosCase,
    browser_eval,
    env_on,
    remove_committed_orders,
)

REPORT = "qimen.sync.report"
EVENTS = ("confirm", "pickup", "void", "complete")
# Orders of each kind the committed test creates: what the order records, its jobs
# (event, state, attempts) and why none could be queued; the report's state, if any.
KINDS = {
    "pending": ({"qimen_confirm": "1"}, [("confirm", "pending", 0)], None, "pending"),
    "retrying": ({"qimen_confirm": "1"}, [("confirm", "failed", 2)], None, "pending"),
    "synced": (
        {"qimen_confirm": "1", "qimen_delivery": "1"},
        [("confirm", "done", 1), ("pickup", "done", 1)],
        None,
        "synced",
    ),
    "dead": (
        {"qimen_confirm": "1", "qimen_delivery": "1"},
        [("confirm", "dead", 3), ("pickup", "pending", 0)],
        None,
        "failed",
    ),
    "retained": ({"qimen_confirm": "1"}, [], None, "synced"),  # jobs deleted after retention
    "misconfigured": (
        {},
        [],
        "Qimen sync is enabled but not configured: missing app key.",
        "failed",
    ),
    "cancelled": ({"qimen_confirm": "1"}, [("confirm", "cancelled", 1)], None, "not_needed"),
    "unconcerned": ({}, [], None, None),
}


@tagged("post_install", "-at_install")
class TestSyncReportCommitted(BaseCase):
    """Counts over committed transactions, read from another cursor, as a manager's
    request reads them: the view reads the tables, not an ORM cache."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        cls.prefix = f"RPT-{uuid.uuid4().hex[:6]}-"
        cls.config_ids, cls.session_ids = [], []
        cls.addClassCleanup(cls._remove_committed_data)
        today = datetime.combine(fields.Date.today(), time(10, 0))
        cls.days = [today - timedelta(days=3), today - timedelta(days=2)]
        with cls.registry.cursor() as cr:
            env = cls.env_of(cr)
            for shop in range(2):
                config = env["pos.config"].create({"name": f"{cls.prefix}shop{shop}"})
                session = env["pos.session"].create(
                    {"config_id": config.id, "user_id": env.ref("base.user_admin").id}
                )
                cls.config_ids.append(config.id)
                cls.session_ids.append(session.id)
                for day_index, day in enumerate(cls.days):
                    for kind_index, kind in enumerate(KINDS):
                        count = 1 + (shop + 2 * day_index + kind_index) % 3
                        cls._create_orders(env, session, day, kind, count)

    @classmethod
    def _create_orders(cls, env, session, day, kind, count):
        recorded, jobs, config_error, _state = KINDS[kind]
        orders = env["pos.order"].create(
            [
                {
                    "session_id": session.id,
                    "pos_reference": f"{cls.prefix}{kind}-{uuid.uuid4().hex[:8]}",
                    "date_order": day,
                    "state": "paid",
                    "amount_total": 10,
                    "amount_tax": 0,
                    "amount_paid": 10,
                    "amount_return": 0,
                    "qimen_config_error": config_error,
                    **recorded,
                }
                for _i in range(count)
            ]
        )
        for event, state, attempts in jobs:
            status = EVENT_STATUS[event]
            queued = env["qimen.sync.job"]._enqueue(
                [
                    (order, event, {"orderBillCode": order.qimen_bill_code, "status": status})
                    for order in orders
                ]
            )
            env.cr.execute(
                "UPDATE qimen_sync_job SET state = %s, attempts = %s, "
                "date_done = CASE WHEN %s = 'done' THEN %s END WHERE id IN %s",
                [state, attempts, state, day + timedelta(minutes=5), tuple(queued.ids)],
            )

    @classmethod
    def _remove_committed_data(cls):
        with cls.registry.cursor() as cr:
            remove_committed_orders(cr, cls.prefix)
            cr.execute("DELETE FROM pos_session WHERE id IN %s", [tuple(cls.session_ids) or (0,)])
            cls.env_of(cr)["pos.config"].browse(cls.config_ids).active = False

    @classmethod
    def env_of(cls, cr):
        return env_on(cls.registry, cr)

    def test_counts_by_shop_and_day_agree_with_the_queue(self):
        with self.registry.cursor() as cr:
            env = self.env_of(cr)
            expected = Counter()
            for order in env["pos.order"].search([("config_id", "in", self.config_ids)]):
                concerned = (
                    order.qimen_job_ids or order.qimen_config_error or recorded_events(order)
                )
                if concerned:
                    key = (order.config_id.id, order.date_order.date(), order.qimen_sync_state)
                    expected[key] += 1
        with self.registry.cursor() as cr:  # another transaction: what a manager reads
            groups = self.env_of(cr)[REPORT].read_group(
                [("config_id", "in", self.config_ids)],
                ["nbr:sum"],
                ["config_id", "date:day", "sync_state"],
                lazy=False,
            )
        counted, nbr = Counter(), Counter()
        for group in groups:
            day = date.fromisoformat(group["__range"]["date:day"]["from"][:10])
            key = (group["config_id"][0], day, group["sync_state"])
            counted[key] += group["__count"]
            nbr[key] += group["nbr"]
        self.assertEqual(counted, expected)
        self.assertEqual(nbr, expected, "nbr counts orders")
        # the data covers every state in each shop and day (else the test proves little)
        states = {state for _kind, (*_facts, state) in KINDS.items() if state}
        for config_id in self.config_ids:
            for day in self.days:
                self.assertEqual(
                    {s for (c, d, s) in expected if (c, d) == (config_id, day.date())}, states
                )
        # and what each kind should be, so that a rule wrong in both places fails too
        shop, day = self.config_ids[0], self.days[0].date()
        per_state = Counter()
        for kind_index, (_facts, _jobs, _error, state) in enumerate(KINDS.values()):
            if state:
                per_state[state] += 1 + kind_index % 3
        self.assertEqual(
            {s: n for (c, d, s), n in counted.items() if (c, d) == (shop, day)}, per_state
        )


class QimenReportCase(QimenPosCase):
    """Orders in the states the report shows, made through the POS and the dispatcher."""

    def rows(self, orders):
        self.env.flush_all()  # the view reads the tables
        self.env.invalidate_all()
        report = self.env[REPORT].search([("order_id", "in", orders.ids)])
        return {row.order_id: row for row in report}

    def dead_order(self):
        order = self.paid_order()
        self.sandbox.add_fault("isv", bill_codes=[order.qimen_bill_code])
        self.dispatch()
        return order

    def misconfigured_order(self):
        """A paid order whose updates could not be queued; the settings stay incomplete
        (completing them queues what was missed), so it comes last."""
        self.company.qimen_app_key = False
        return self.paid_order()


@tagged("post_install", "-at_install")
class TestSyncReport(QimenReportCase):
    def test_each_row_has_the_orders_sync_state(self):
        synced = self.paid_order()
        retained = self.paid_order()  # acknowledged, then its jobs deleted
        self.dispatch()
        self.jobs(retained).unlink()
        dead = self.dead_order()
        retrying = self.paid_order()
        self.sandbox.add_fault("http500", bill_codes=[retrying.qimen_bill_code], count=1)
        self.dispatch()
        pending = self.paid_order()
        cancelled = self.paid_order()
        self.jobs(cancelled).action_cancel()
        draft = self.draft_order()  # nothing recorded, nothing queued: not concerned
        misconfigured = self.misconfigured_order()
        expected = {
            synced: "synced",
            retained: "synced",
            dead: "failed",
            retrying: "pending",
            pending: "pending",
            cancelled: "not_needed",
            misconfigured: "failed",
        }
        orders = synced.concat(*expected, draft)
        rows = self.rows(orders)
        self.assertEqual({order: row.sync_state for order, row in rows.items()}, expected)
        self.assertEqual(self.jobs(retrying)[0].state, "failed")
        for order, row in rows.items():
            with self.subTest(order=order.qimen_bill_code):
                order.invalidate_recordset()
                self.assertEqual(row.sync_state, order.qimen_sync_state)
                self.assertEqual(row.attempts, order.qimen_sync_attempts)
                self.assertEqual(row.last_ack, order.qimen_last_sync or False)
                for event in EVENTS:
                    self.assertEqual(row[f"{event}_state"], order[f"qimen_sent_{event}_state"])
                self.assertEqual(
                    (row.config_id, row.session_id, row.bill_code, row.order_state),
                    (order.config_id, order.session_id, order.qimen_bill_code, order.state),
                )
                self.assertEqual(row.amount_total, order.amount_total)
        self.assertEqual(rows[retrying].attempts, 1)
        self.assertEqual((rows[dead].confirm_state, rows[dead].pickup_state), ("dead", "pending"))
        self.assertEqual(rows[cancelled].confirm_state, "cancelled")
        self.assertTrue(rows[synced].last_ack)

    def test_the_erp_status_is_shown_as_the_erp_reported_it(self):
        order = self.paid_order()
        order.sudo().write(
            {"qimen_erp_status": "2", "qimen_erp_status_date": "2026-03-01 08:00:00"}
        )
        row = self.rows(order)[order]
        self.assertEqual((row.erp_status, row.erp_status_date), ("2", datetime(2026, 3, 1, 8)))

    def test_the_unacknowledged_filter_selects_paid_orders_waiting_over_an_hour(self):
        arch = self.env[REPORT].get_views([(False, "search")])["views"]["search"]["arch"]
        (domain,) = etree.fromstring(arch).xpath("//filter[@name='filter_unacknowledged']/@domain")
        dispatched = self.paid_order()
        self.dispatch()
        dead = self.dead_order()
        waiting = self.paid_order()
        recent = self.paid_order()
        cancelled = self.draft_order()
        cancelled.action_pos_order_cancel()  # voided in the ERP: not a paid order
        misconfigured = self.misconfigured_order()  # its confirmation never queued
        now = fields.Datetime.now()
        old = dispatched | waiting | dead | misconfigured | cancelled
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE pos_order SET date_order = %s WHERE id IN %s",
            [now - timedelta(hours=2), tuple(old.ids)],
        )
        self.env.cr.execute(
            "UPDATE pos_order SET date_order = %s WHERE id = %s",
            [now - timedelta(minutes=10), recent.id],
        )
        self.assertEqual(self.jobs(dispatched)[0].state, "done")
        self.assertEqual(set(self.rows(old | recent)), set(old | recent), "all in the report")
        found = self.env[REPORT].search([("config_id", "=", self.config.id), *browser_eval(domain)])
        self.assertEqual(found.order_id, waiting | dead | misconfigured)

    def test_the_day_filters_split_at_midnight_in_the_browser(self):
        arch = self.env[REPORT].get_views([(False, "search")])["views"]["search"]["arch"]
        search = etree.fromstring(arch)

        def domain(name):
            return browser_eval(search.xpath(f"//filter[@name='{name}']/@domain")[0])

        today = datetime.combine(BrowserDateTime.now().date(), time(0, 0))
        orders = [self.paid_order() for _i in range(4)]
        local_dates = [  # browser time: 00:30 and 23:30 yesterday, 00:30 today, 23:30 before
            today - timedelta(minutes=1410),
            today - timedelta(minutes=30),
            today + timedelta(minutes=30),
            today - timedelta(days=1, minutes=30),
        ]
        self.env.flush_all()
        for order, local in zip(orders, local_dates, strict=True):
            self.env.cr.execute(
                "UPDATE pos_order SET date_order = %s WHERE id = %s",
                [local - BrowserDateTime.OFFSET, order.id],
            )
        self.env.invalidate_all()
        shop = [("config_id", "=", self.config.id)]
        yesterday = self.env[REPORT].search([*shop, *domain("filter_yesterday")]).order_id
        today_found = self.env[REPORT].search([*shop, *domain("filter_today")]).order_id
        self.assertEqual(yesterday, orders[0] | orders[1])
        self.assertEqual(today_found, orders[2])


@tagged("post_install", "-at_install")
class TestSyncReportViews(QimenReportCase, HttpCase):
    """A POS manager opens the report as the web client does, through JSON-RPC."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            "qimen_report_manager",
            groups="point_of_sale.group_pos_manager",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )

    def call_kw(self, method, *args, **kwargs):
        return self.make_jsonrpc_request(
            f"/web/dataset/call_kw/{REPORT}/{method}",
            {"model": REPORT, "method": method, "args": list(args), "kwargs": kwargs},
        )

    def test_a_manager_opens_the_pivot_and_the_graph(self):
        synced = [self.paid_order() for _i in range(2)]
        dead = self.dead_order()  # its dispatch sends the two others
        pending = [self.paid_order() for _i in range(3)]
        self.env.flush_all()
        action = self.env.ref("pos_qimen_sync.qimen_sync_report_action")
        menu = self.env.ref("pos_qimen_sync.qimen_sync_report_menu")
        self.assertIn(menu.id, self.env["ir.ui.menu"].with_user(self.manager)._visible_menu_ids())
        self.authenticate(self.manager.login, self.manager.login)
        loaded = self.make_jsonrpc_request("/web/action/load", {"action_id": action.id})
        self.assertEqual(
            [view_type for _id, view_type in loaded["views"]], ["pivot", "graph", "list"]
        )
        views = self.call_kw(
            "get_views",
            views=[*loaded["views"], [loaded["search_view_id"][0], "search"]],
            options={"action_id": action.id, "load_filters": True},
        )["views"]
        pivot = etree.fromstring(views["pivot"]["arch"])
        self.assertEqual(pivot.xpath("//field[@type='row']/@name"), ["config_id"])
        self.assertEqual(pivot.xpath("//field[@type='col']/@name"), ["sync_state"])
        graph = etree.fromstring(views["graph"]["arch"])
        self.assertEqual(graph.xpath("//field[not(@type)]/@name"), ["date", "sync_state"])
        shop = [["config_id", "=", self.config.id]]
        # the pivot's call (lazy=False), then the graph's (web_read_group, as 18.0 does)
        pivot_groups = self.call_kw(
            "read_group", shop, ["nbr:sum"], ["config_id", "sync_state"], lazy=False
        )
        self.assertEqual(
            {(g["config_id"][0], g["sync_state"]): g["nbr"] for g in pivot_groups},
            {
                (self.config.id, "synced"): len(synced),
                (self.config.id, "pending"): len(pending),
                (self.config.id, "failed"): 1,
            },
        )
        graph_groups = self.call_kw(
            "web_read_group",
            shop,
            ["nbr:sum"],
            ["date:day", "sync_state"],
            lazy=False,
            context={"fill_temporal": True},
        )["groups"]
        self.assertEqual(
            {g["sync_state"]: g["nbr"] for g in graph_groups if g["__count"]},
            {"synced": 2, "pending": 3, "failed": 1},
        )
        self.assertEqual(dead.qimen_sync_state, "failed")

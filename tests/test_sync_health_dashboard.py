from contextlib import contextmanager
from datetime import datetime, timedelta

from lxml import etree

from odoo import fields
from odoo.osv import expression
from odoo.tests import new_test_user, tagged
from odoo.tools import SQL, mute_logger
from odoo.tools.safe_eval import safe_eval

from odoo.addons.point_of_sale.tests.test_frontend import TestPointOfSaleHttpCommon

from ..models.pos_config_sync_health import last_ack_sql, waiting_figures_sql
from .common import HEALTH_LOGGER, QimenPosCase, SandboxedPos

HOUR = datetime(2026, 3, 2, 9, 0)  # acknowledgements are moved to known hours


@tagged("post_install", "-at_install")
class TestSyncHealthDashboard(QimenPosCase):
    """Each shop card of the POS dashboard tells a manager how its ERP sync is doing."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pos_user = new_test_user(
            cls.env,
            "qimen_dash_user",
            groups="point_of_sale.group_pos_user",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
            tz="UTC",
        )
        journal = cls.env["account.journal"].create(
            {"name": "Cash Shop 2", "code": "QDSH2", "type": "cash"}
        )
        cash = cls.env["pos.payment.method"].create(
            {
                "name": "Cash Shop 2",
                "journal_id": journal.id,
                "receivable_account_id": cls.pos_receivable_cash.id,
                "company_id": cls.company.id,
            }
        )
        cls.shop1 = cls.config
        cls.shop2 = cls.env["pos.config"].create(
            {
                "name": "Second Shop",
                "qimen_customerid": "STORE_ERP_02",
                "invoice_journal_id": cls.invoice_journal.id,
                "available_pricelist_ids": cls.currency_pricelist.ids,
                "pricelist_id": cls.currency_pricelist.id,
                "payment_method_ids": [(6, 0, cash.ids)],
            }
        )

    # helpers ---------------------------------------------------------------------------
    @contextmanager
    def at_shop(self, shop):
        """Sell at ``shop``: the fixtures sell at self.config, in self.pos_session."""
        names = ("config", "pos_session", "currency", "pricelist")
        saved = {name: getattr(self, name, None) for name in names}
        self.config = shop
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def set_dates(self, jobs, **values):
        """Move jobs in time (create_date, date_done): the dashboard's figures are ages."""
        assignments = SQL(", ").join(
            SQL("%s = %s", SQL.identifier(name), value) for name, value in values.items()
        )
        self.env.cr.execute(
            SQL("UPDATE qimen_sync_job SET %s WHERE id IN %s", assignments, tuple(jobs.ids))
        )
        jobs.invalidate_recordset()

    def kanban(self, user):
        """The dashboard's kanban as ``user``'s web client loads it."""
        configs = self.env["pos.config"].with_user(user)
        views = configs.get_views([(False, "kanban")])
        arch = etree.fromstring(views["views"]["kanban"]["arch"])
        return arch, configs

    def card_values(self, user, shops):
        """The qimen figures of ``shops`` read through the kanban's own fields and the
        web client's call (web_search_read), as ``user``, in a fresh request."""
        self.env.invalidate_all()
        arch, configs = self.kanban(user)
        names = {node.get("name") for node in arch.iter("field")}
        shown = sorted(name for name in names if name.startswith("qimen_"))
        self.assertEqual(
            shown,
            sorted(
                [
                    "qimen_sync_enabled",
                    "qimen_breaker_state",
                    "qimen_breaker_reason",
                    "qimen_waiting_count",
                    "qimen_oldest_wait",
                    "qimen_dead_count",
                    "qimen_last_ack",
                ]
            ),
        )
        result = configs.web_search_read(
            [("id", "in", shops.ids)], {name: {} for name in shown}, order="id"
        )
        return [{k: v for k, v in rec.items() if k != "id"} for rec in result["records"]]

    def queue_domain(self, action):
        """What the queue that ``action`` opens shows: its domain and its default
        filters (one group of the search view: OR-ed), as the web client applies them."""
        search = etree.fromstring(
            self.env["qimen.sync.job"].get_views([(False, "search")])["views"]["search"]["arch"]
        )
        filters = []
        for key in action["context"]:
            if key.startswith("search_default_filter_"):
                (node,) = search.xpath(f"//filter[@name='{key[len('search_default_') :]}']")
                filters.append(safe_eval(node.get("domain")))
        return expression.AND([action["domain"], expression.OR(filters)])

    def two_shops(self):
        """Shop 1: an order acknowledged, one whose paid update died (its pick-up waits
        behind it, queued 75 minutes ago); shop 2: an order waiting for 12 minutes."""
        sold = self.paid_order()
        broken = self.paid_order()
        self.sandbox.add_fault("isv", bill_codes=[broken.qimen_bill_code])
        self.dispatch_quietly()
        with self.at_shop(self.shop2):
            waiting = self.paid_order()
        now = fields.Datetime.now()
        self.set_dates(self.jobs(broken)[1], create_date=now - timedelta(minutes=75))
        self.set_dates(self.jobs(waiting)[0], create_date=now - timedelta(minutes=12))
        self.set_dates(self.jobs(waiting)[1], create_date=now - timedelta(minutes=5))
        acknowledged = self.jobs(sold)
        self.set_dates(acknowledged[0], date_done=HOUR)
        self.set_dates(acknowledged[1], date_done=HOUR + timedelta(minutes=7))
        self.assertEqual(self.jobs(broken).mapped("state"), ["dead", "pending"])
        self.assertEqual(set(self.jobs(waiting).mapped("state")), {"pending"})
        return sold, broken, waiting

    # tests -----------------------------------------------------------------------------
    def test_each_shop_card_shows_its_own_figures(self):
        self.two_shops()
        self.assertEqual(
            self.card_values(self.pos_user, self.shop1 | self.shop2),
            [
                {
                    "qimen_sync_enabled": True,
                    "qimen_breaker_state": "running",
                    "qimen_breaker_reason": False,
                    "qimen_waiting_count": 1,
                    "qimen_oldest_wait": "oldest 1 h 15 min",
                    "qimen_dead_count": 1,
                    "qimen_last_ack": HOUR + timedelta(minutes=7),
                },
                {
                    "qimen_sync_enabled": True,
                    "qimen_breaker_state": "running",
                    "qimen_breaker_reason": False,
                    "qimen_waiting_count": 2,
                    "qimen_oldest_wait": "oldest 12 min",
                    "qimen_dead_count": 0,
                    "qimen_last_ack": False,
                },
            ],
        )
        # a company that does not sync shows nothing (its card hides the block)
        self.company.qimen_enabled = False
        (values,) = self.card_values(self.pos_user, self.shop1)
        self.assertEqual(
            (values["qimen_sync_enabled"], values["qimen_breaker_state"]), (False, False)
        )
        self.assertEqual((values["qimen_waiting_count"], values["qimen_dead_count"]), (0, 0))

    def test_a_week_old_update_reads_in_days(self):
        order = self.paid_order()
        self.set_dates(
            self.jobs(order), create_date=fields.Datetime.now() - timedelta(days=7, hours=3)
        )
        self.assertEqual(self.shop1.qimen_oldest_wait, "oldest 7 d 3 h")

    def test_figures_of_all_shops_take_two_queries_of_the_jobs(self):
        """However many shops the dashboard shows: one grouped query of the waiting and
        dead jobs, one of the acknowledgements."""
        self.two_shops()
        shops = self.shop1 | self.shop2 | self.shop1.copy({"name": "Third Shop"})
        shops.invalidate_recordset()
        with self.executed_queries() as executed:
            shops.with_user(self.pos_user).read(["qimen_waiting_count", "qimen_last_ack"])
        self.assertEqual(len([q for q in executed if "qimen_sync_job" in q]), 2, executed)

    def test_the_figures_queries_read_the_partial_indexes(self):
        """The dashboard's cost stays flat with millions of finished jobs: its queries
        can only be answered from the indexes of the waiting and of the done jobs."""
        self.two_shops()
        shops = (self.shop1 | self.shop2).ids
        # a table with few rows lets the planner take any index of the finished jobs;
        # with many superseded and cancelled ones, as a store has, only the done jobs'
        # index keeps this query flat
        self.env.flush_all()
        self.env.cr.execute(
            """INSERT INTO qimen_sync_job (company_id, order_id, config_id, bill_code, event,
                                           status, payload, state, attempts, write_date)
               SELECT company_id, order_id, config_id, bill_code || '-' || n, event, status,
                      payload, CASE WHEN n %% 2 = 0 THEN 'superseded' ELSE 'cancelled' END,
                      0, write_date
                 FROM qimen_sync_job, generate_series(1, 2000) n
                WHERE id = %s""",
            [self.jobs(self.paid_order())[0].id],
        )
        self.env.cr.execute("ANALYZE qimen_sync_job")
        self.env.cr.execute("SET LOCAL enable_seqscan = off")
        try:
            for query, index in (
                (waiting_figures_sql(self.company.ids, shops), "qimen_sync_job_waiting_idx"),
                (last_ack_sql(shops), "qimen_sync_job_done_idx"),
            ):
                self.env.cr.execute(SQL("EXPLAIN %s", query))
                plan = "\n".join(row[0] for row in self.env.cr.fetchall())
                self.assertIn(index, plan)
                self.assertNotIn("Seq Scan on qimen_sync_job", plan)
        finally:
            self.env.cr.execute("SET LOCAL enable_seqscan = on")

    def test_a_paused_company_shows_on_every_shop_card(self):
        for _index in range(4):
            self.paid_order()
        self.sandbox.add_fault("http500")
        self.dispatch_quietly()
        values = self.card_values(self.pos_user, self.shop1 | self.shop2)
        self.assertEqual(
            [(v["qimen_breaker_state"], v["qimen_breaker_reason"]) for v in values],
            [("paused", "gateway"), ("paused", "gateway")],
        )
        self.assertEqual(values[0]["qimen_waiting_count"], 8)
        # the red badge opens the company's health, readable by a POS user
        action = self.shop2.with_user(self.pos_user).action_qimen_open_health()
        health = self.env["qimen.sync.health"].with_user(self.pos_user).browse(action["res_id"])
        self.assertEqual((health.company_id, health.state), (self.company, "paused"))
        arch, _configs = self.kanban(self.pos_user)
        (badge,) = arch.xpath("//a[@name='action_qimen_open_health']")
        self.assertIn("text-bg-danger", badge.get("class"))

    def test_a_figure_opens_the_shop_s_queue_in_that_state(self):
        sold, broken, waiting = self.two_shops()
        Job = self.Job.with_user(self.pos_user)
        for shop, what, expected in (
            (self.shop1, "waiting", self.jobs(broken)[1]),
            (self.shop1, "dead", self.jobs(broken)[0]),
            (self.shop1, "done", self.jobs(sold)),
            (self.shop2, "waiting", self.jobs(waiting)),
            (self.shop2, "dead", self.Job),
        ):
            action = shop.with_user(self.pos_user).action_qimen_open_queue(what)
            self.assertEqual(action["res_model"], "qimen.sync.job")
            self.assertIn(shop.name, action["name"])
            self.assertEqual(Job.search(self.queue_domain(action)), expected, (shop.name, what))
        # the last acknowledgement opens the acknowledgements per hour
        action = self.shop1.action_qimen_open_queue("done")
        self.assertEqual(action["views"][0][1], "graph")
        self.assertEqual(action["context"].get("search_default_group_done_hour"), 1)
        # every figure the card links to is one of these
        arch, _configs = self.kanban(self.pos_user)
        linked = {
            safe_eval(node.get("args"))[0]
            for node in arch.xpath("//a[@name='action_qimen_open_queue']")
        }
        self.assertEqual(linked, {"waiting", "dead", "done"})

    def test_the_queue_graph_counts_acknowledgements_per_hour_and_failures_by_kind(self):
        sold, _broken, _waiting = self.two_shops()
        flaky = self.paid_order()
        self.sandbox.add_fault("http500", bill_codes=[flaky.qimen_bill_code], count=1)
        self.dispatch_quietly()
        self.expire_backoff(self.jobs(flaky))
        self.dispatch_quietly()
        self.assertEqual(self.jobs(flaky).mapped("state"), ["done", "done"])
        self.set_dates(self.jobs(flaky), date_done=HOUR + timedelta(hours=2, minutes=30))
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "pos_qimen_sync.qimen_sync_job_action"
        )
        self.assertIn("graph", action["view_mode"].split(","))
        Job = self.env["qimen.sync.job"].with_user(self.pos_user).with_context(tz="UTC")
        views = Job.get_views([(False, "graph"), (False, "search")])
        graph = etree.fromstring(views["views"]["graph"]["arch"])
        self.assertEqual(graph.xpath("//field/@interval"), ["hour"])
        search = etree.fromstring(views["views"]["search"]["arch"])

        def read(filter_name, groupby_filter):
            (node,) = search.xpath(f"//filter[@name='{filter_name}']")
            (group,) = search.xpath(f"//filter[@name='{groupby_filter}']")
            groupby = safe_eval(group.get("context"))["group_by"]
            groups = Job.with_context(fill_temporal=True).web_read_group(
                [("config_id", "=", self.shop1.id), *safe_eval(node.get("domain"))],
                ["__count"],
                [groupby],
                lazy=False,
            )["groups"]
            return groups, groupby

        groups, groupby = read("filter_done", "group_done_hour")
        self.assertEqual(
            [(g["__range"][groupby]["from"], g["__count"]) for g in groups],
            [
                ("2026-03-02 09:00:00", 2),
                ("2026-03-02 10:00:00", 0),
                ("2026-03-02 11:00:00", 2),
            ],
        )
        groups, groupby = read("filter_failed_once", "group_failure_kind")
        self.assertEqual(
            {g[groupby]: g["__count"] for g in groups},
            {"order": 1, "gateway": 1},  # broken's paid update; flaky's, sent since
        )
        self.assertNotIn(sold.id, Job.search([("failure_kind", "!=", False)]).order_id.ids)


@tagged("post_install", "-at_install")
class TestSyncHealthDashboardInBrowser(SandboxedPos, TestPointOfSaleHttpCommon):
    """The card as a POS user sees and clicks it in the web client: its figures, the
    queue each opens, the graph by hour (which Odoo 18's web client refuses without
    ``static/src/backend/hour_interval.js``), the company's health."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._sync_with_sandbox(cls.main_pos_config)

    def test_a_pos_user_reads_and_follows_the_card(self):
        now = fields.Datetime.now()
        jobs = self.Job.create(
            [
                {
                    "company_id": self.company.id,
                    "config_id": self.config.id,
                    "bill_code": code,
                    "event": "confirm",
                    "payload": {"orderBillCode": code},
                    "state": state,
                    "date_done": now - timedelta(hours=1) if state == "done" else False,
                }
                for code, state in (
                    ("DASH-DONE", "done"),
                    ("DASH-DEAD", "dead"),
                    ("DASH-WAIT-1", "pending"),
                    ("DASH-WAIT-2", "failed"),
                )
            ]
        )
        self.env.cr.execute(
            SQL(
                "UPDATE qimen_sync_job SET create_date = %s WHERE id = %s",
                now - timedelta(minutes=75),
                jobs[2].id,
            )
        )
        health = self.env["qimen.sync.health"]._locked(self.company.id)
        with mute_logger(HEALTH_LOGGER):
            health._pause("unreachable", "connect timeout", jobs[3].ids)
        self.start_tour("/odoo/point-of-sale", "QimenDashboardTour", login="pos_user")

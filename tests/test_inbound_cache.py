from unittest.mock import patch

from odoo.tests import new_test_user, tagged

from .inbound_common import QimenCallbackCase


@tagged("post_install", "-at_install")
class TestReceivingCompaniesCache(QimenCallbackCase):
    """The callback keeps the companies that receive calls (secrets, skew, routing, the
    readers' language) in the registry's cache: each test fills it with a first call,
    then changes what it holds, as a user would in the settings, and the next call sees
    the change."""

    def shipped(self, number, **kwargs):
        params = {"orderBillCode": self.bill, "status": "2", "shippingSn": number}
        return self.call(params, **kwargs)

    def test_a_rotated_secret_applies_to_the_next_call(self):
        self.assertTrue(self.shipped("S1")[1].ok)
        self.company.qimen_callback_secret = "rotated-secret-2"
        response, reply = self.shipped("S2")
        self.assertEqual((response.status_code, reply.code), (401, "25"), response.text)
        self.assertTrue(self.shipped("S3", secret="rotated-secret-2")[1].ok)

    def test_sync_turned_off_refuses_the_next_call(self):
        self.assertTrue(self.shipped("S1")[1].ok)
        self.company.qimen_enabled = False
        response, reply = self.shipped("S2")
        self.assertEqual((response.status_code, reply.code), (403, "29"), response.text)

    def test_a_shop_customerid_routes_the_next_call(self):
        self.assertTrue(self.shipped("S1")[1].ok)
        new_shop = {"customerid": "STORE_ERP_02"}
        response, reply = self.shipped("S2", query_changes=new_shop)
        self.assertEqual((response.status_code, reply.code), (403, "41"), response.text)
        self.config.qimen_customerid = "STORE_ERP_02"
        self.assertTrue(self.shipped("S3", query_changes=new_shop)[1].ok)
        response, reply = self.shipped("S4")  # the shop's old ID routes nothing now
        self.assertEqual((response.status_code, reply.code), (403, "41"), response.text)

    def note(self):
        return str(self.order.message_ids[0].body)

    def test_the_managers_language_written_on_their_partner(self):
        """On the partner's form, not the user's: Odoo clears nothing for it."""
        self._chinese()
        self.assertTrue(self.shipped("S1")[1].ok)
        self.assertIn("The ERP reported this order as Picked up.", self.note())
        self.company._qimen_managers()[0].partner_id.write({"lang": "zh_CN"})
        self.assertTrue(self.shipped("S2")[1].ok)
        self.assertIn("ERP 上报此订单状态为：已取货。", self.note())  # noqa: RUF001

    def test_a_new_manager_of_a_company_without_one(self):
        self._chinese()
        managers = self.company._qimen_managers()
        group = self.env.ref("point_of_sale.group_pos_manager")
        group.write({"users": [(3, user.id) for user in managers]})
        self.assertFalse(self.company._qimen_managers())
        self.assertTrue(self.shipped("S1")[1].ok)
        self.assertIn("The ERP reported this order as Picked up.", self.note())
        new_test_user(
            self.env,
            login="qimen-new-manager",
            groups="point_of_sale.group_pos_manager",
            company_id=self.company.id,
            company_ids=[(6, 0, self.company.ids)],
            lang="zh_CN",
        )
        self.assertTrue(self.shipped("S2")[1].ok)
        self.assertIn("ERP 上报此订单状态为：已取货。", self.note())  # noqa: RUF001

    def test_the_company_renamed_and_its_email_domain_deleted(self):
        """The note's reply-to is the company's name and catchall: renamed on the
        company's partner (not through the company's write), or its email domain deleted
        (the database empties the company's field; Odoo clears the cache on the way),
        the next call uses the new ones."""
        domain = self.env["mail.alias.domain"].create(
            {"name": "qimen-shop.example.com", "catchall_alias": "catchall"}
        )
        self.company.alias_domain_id = domain
        self.assertTrue(self.shipped("S1")[1].ok)
        self.assertIn(self.company.name, self.order.message_ids[0].reply_to)
        self.assertIn("catchall@qimen-shop.example.com", self.order.message_ids[0].reply_to)
        self.company.partner_id.name = "Qimen Renamed Shop"
        self.assertTrue(self.shipped("S2")[1].ok)
        self.assertIn("Qimen Renamed Shop", self.order.message_ids[0].reply_to)
        aliases = self.env["mail.alias"].search([("alias_domain_id", "=", domain.id)])
        aliases.alias_domain_id = False  # a domain in use cannot be deleted
        domain.unlink()
        response, reply = self.shipped("S3")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertTrue(reply.ok, response.text)
        self.assertFalse(self.order.message_ids[0].reply_to)

    def test_a_customer_language_clears_no_cache(self):
        """The till edits customers, users rename themselves: neither is any of the
        callback's."""
        customer = self.env["res.partner"].create({"name": "Qimen customer"})
        with patch.object(self.registry, "clear_cache", wraps=self.registry.clear_cache) as clear:
            customer.write({"lang": "en_US"})
            self.company._qimen_managers()[0].partner_id.write({"name": "Renamed manager"})
            clear.assert_not_called()
            self.company.partner_id.write({"lang": "en_US"})
            clear.assert_called()

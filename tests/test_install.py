from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestInstall(TransactionCase):
    def test_module_installed_with_its_manifest(self):
        module = self.env["ir.module.module"].search([("name", "=", "pos_qimen_sync")])
        self.assertEqual(module.state, "installed")
        self.assertEqual(module.latest_version, "18.0.1.0.0")
        self.assertEqual(module.license, "LGPL-3")
        self.assertIn("point_of_sale", module.dependencies_id.mapped("name"))

    def test_protocol_package_is_importable_from_the_addon(self):
        from odoo.addons.pos_qimen_sync.qimen import sign

        self.assertEqual(sign({"a": "1"}, "k", "hmac"), sign({"a": "1", "b": " "}, "k", "hmac"))

from pathlib import Path

import polib

from odoo.tests import TransactionCase, tagged
from odoo.tools.translate import TranslationModuleReader

I18N = Path(__file__).resolve().parent.parent / "i18n"


@tagged("post_install", "-at_install")
class TestTranslations(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("zh_CN")
        cls.env["ir.module.module"]._load_module_terms(
            ["pos_qimen_sync"], ["zh_CN"], overwrite=True
        )

    def test_pot_is_current(self):
        """Every term of the code, views and data is in the committed .pot, and no stale one."""
        terms = {row[4] for row in TranslationModuleReader(self.env.cr, ["pos_qimen_sync"])}
        pot = {entry.msgid for entry in polib.pofile(str(I18N / "pos_qimen_sync.pot"))}
        self.assertEqual(terms - pot, set(), "terms missing from the .pot: export it again")
        self.assertEqual(pot - terms, set(), "stale terms in the .pot")

    def test_zh_cn_has_no_missing_term(self):
        rows = list(TranslationModuleReader(self.env.cr, ["pos_qimen_sync"], lang="zh_CN"))
        self.assertGreater(len(rows), 200)
        po = polib.pofile(str(I18N / "zh_CN.po"))
        self.assertEqual(po.untranslated_entries() + po.fuzzy_entries(), [])
        # Odoo reports a translation equal to its source (JSON, MD5, URL…) as empty
        same_in_chinese = {e.msgid for e in po if e.msgstr == e.msgid}
        missing = sorted({row[4] for row in rows if not row[5]} - same_in_chinese)
        self.assertEqual(missing, [], "terms without a zh_CN translation")
        self.assertLess(len(same_in_chinese), 15)

    def test_zh_cn_reaches_the_ui(self):
        po = {entry.msgid: entry.msgstr for entry in polib.pofile(str(I18N / "zh_CN.po"))}
        env = self.env(context=dict(self.env.context, lang="zh_CN"))
        menu = env.ref("pos_qimen_sync.qimen_sync_job_menu")
        self.assertEqual(menu.name, po["Qimen Sync Queue"])
        state = env["qimen.sync.job"].fields_get(["state"])["state"]
        self.assertEqual(state["string"], po["State"])
        self.assertIn(("dead", po["Dead"]), state["selection"])
        order_fields = env["pos.order"].fields_get(["qimen_void_type"])["qimen_void_type"]
        self.assertIn(("0", po["Customer return"]), order_fields["selection"])
        company = env["res.company"].browse(self.env.company.id)
        _order, error = env["pos.order"]._qimen_find_by_bill_code(company, "NO-SUCH")
        self.assertEqual(error, po["Order %s not found"] % "NO-SUCH")

"""Notes and to-dos about an order, for its readers in their language."""

from odoo import models


class PosOrder(models.Model):
    _inherit = "pos.order"

    def _qimen_for_readers(self):
        """The order in the language of its readers: the company's (the context key
        ``qimen_reader_lang`` may give it)."""
        lang = self.env.context.get("qimen_reader_lang") or self.company_id.partner_id.lang
        return self.with_context(lang=lang or self.env.lang)

    def _qimen_ask_manager(self, summary, note):
        """One to-do for a POS manager of the company (the order's user if none).

        ``summary`` and ``note`` are texts, or functions of an environment that give them
        in the language of the user the to-do is for."""
        self.ensure_one()
        managers = self.env.ref("point_of_sale.group_pos_manager").users.filtered(
            lambda u: self.company_id in u.company_ids and not u.share
        )
        user = managers.sorted("id")[:1] or self.user_id
        env = self.with_context(lang=user.lang or self.env.lang).env
        summary = summary(env) if callable(summary) else summary
        note = note(env) if callable(note) else note
        if self.activity_ids.filtered(lambda a: a.summary == summary):
            return  # already asked, not again on every attempt or repeat
        self.activity_schedule(
            "mail.mail_activity_data_todo", summary=summary, note=note, user_id=user.id
        )

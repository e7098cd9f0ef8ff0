"""Notes and to-dos about an order, for its readers in their language."""

from odoo import models


def erp_void_summary(env):
    """The to-do's summary when the ERP voids a paid order (closed once it is refunded)."""
    return env._("Voided in the ERP: refund this order")


class PosOrder(models.Model):
    _inherit = "pos.order"

    def _qimen_for_readers(self):
        """The order in the language of its readers: the company's POS managers (the
        context key ``qimen_reader_lang`` may give it)."""
        lang = self.env.context.get("qimen_reader_lang") or (
            self.company_id.sudo()._qimen_readers_lang()
        )
        return self.with_context(lang=lang or self.env.lang)

    def _qimen_ask_manager(self, summary, note):
        """One to-do for a POS manager of the company (the order's user if none).

        ``summary`` and ``note`` are texts, or functions of an environment that give them
        in the language of the user the to-do is for."""
        self.ensure_one()
        user = self.company_id._qimen_managers()[:1] or self.user_id
        env = self.with_context(lang=user.lang or self.env.lang).env
        summary = summary(env) if callable(summary) else summary
        note = note(env) if callable(note) else note
        if self.activity_ids.filtered(lambda a: a.summary == summary):
            return  # already asked, not again on every attempt or repeat
        self.activity_schedule(
            "mail.mail_activity_data_todo", summary=summary, note=note, user_id=user.id
        )

    def _qimen_close_todo(self, summary, feedback):
        """Mark done, with ``feedback`` as its note, the to-do :meth:`_qimen_ask_manager`
        gave with ``summary`` (both functions of an environment): its cause is gone. The
        texts are compared in the language of the user the to-do is for."""
        for order in self:
            for activity in order.sudo().activity_ids:
                env = self.with_context(lang=activity.user_id.lang or self.env.lang).env
                if activity.summary == summary(env):
                    activity.with_env(env).sudo().action_feedback(feedback=feedback(env))

from odoo import api, fields, models

from ..const import VOID_TYPE_SELECTION


class QimenVoidWizard(models.TransientModel):
    """Cancel draft orders from the back office with the void type and reason the ERP
    receives (zf_type, zf_message)."""

    _name = "qimen.void.wizard"
    _description = "Void POS Orders with a Reason"

    order_ids = fields.Many2many("pos.order", string="Orders", required=True)
    reason_id = fields.Many2one(
        "qimen.void.reason",
        string="Preset",
        help="Fills the void type and reason; the reason can still be edited.",
    )
    void_type = fields.Selection(
        VOID_TYPE_SELECTION,
        required=True,
        default="1",
    )
    reason = fields.Char(required=True)

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        if "order_ids" in fields_list and self.env.context.get("active_model") == "pos.order":
            values["order_ids"] = [(6, 0, self.env.context.get("active_ids", []))]
        return values

    @api.onchange("reason_id")
    def _onchange_reason_id(self):
        if self.reason_id:
            self.void_type = self.reason_id.void_type
            self.reason = self.reason_id.name

    def action_void(self):
        self.ensure_one()
        self.order_ids._qimen_check_voidable()
        self.order_ids.write(
            {"qimen_void_type": self.void_type, "qimen_void_reason": self.reason.strip()}
        )
        self.order_ids.action_pos_order_cancel()
        return {"type": "ir.actions.act_window_close"}

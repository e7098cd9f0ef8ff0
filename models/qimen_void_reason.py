from odoo import api, fields, models

from ..const import VOID_TYPE_SELECTION


class QimenVoidReason(models.Model):
    """A preset reason for voiding or returning an order: the cashier picks it at the
    till, and the ERP receives its type and name verbatim (zf_type, zf_message)."""

    _name = "qimen.void.reason"
    _inherit = ["pos.load.mixin"]
    _description = "Void Reason"
    _order = "sequence, id"
    _check_company_auto = True

    name = fields.Char(
        "Reason",
        required=True,
        help="Sent to the ERP as the void reason (zf_message), exactly as written.",
    )
    void_type = fields.Selection(
        VOID_TYPE_SELECTION,
        required=True,
        default="1",
        help="Sent to the ERP as zf_type: 0 customer return, 1 other reason.",
    )
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    company_id = fields.Many2one(
        "res.company",
        index=True,
        default=lambda self: self.env.company,
        help="Empty: offered in every company.",
    )

    _sql_constraints = [
        (
            "name_not_blank",
            "CHECK (btrim(name) <> '')",
            "A void reason needs a name: the ERP receives it.",
        )
    ]

    # -- what the Point of Sale loads ----------------------------------------------------
    @api.model
    def _load_pos_data_domain(self, data):
        config = data["pos.config"]["data"][0]
        company = self.env["res.company"].browse(config["company_id"])
        if not company.qimen_enabled:
            return False  # nothing of the ERP sync at a till whose company does not sync
        return [("company_id", "in", [company.id, False])]

    @api.model
    def _load_pos_data_fields(self, config_id):
        return ["id", "name", "void_type", "sequence"]

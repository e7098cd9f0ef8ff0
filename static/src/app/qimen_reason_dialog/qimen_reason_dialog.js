import { Component, useState } from "@odoo/owl";
import { Dialog } from "@web/core/dialog/dialog";
import { _t } from "@web/core/l10n/translation";

/**
 * Ask the cashier why an order is voided or returned: a preset reason of the shop, or a
 * typed one with its type. The payload is what the ERP receives: {type, message}
 * (zf_type "0" customer return / "1" other reason, zf_message).
 */
export class QimenReasonDialog extends Component {
    static template = "pos_qimen_sync.QimenReasonDialog";
    static components = { Dialog };
    static props = {
        title: String,
        body: String,
        reasons: Array, // [{id, name, void_type}]
        selectedReasonId: { type: Number, optional: true },
        typedReasonType: { type: String, optional: true }, // type of a typed reason
        confirmLabel: String,
        optional: { type: Boolean, optional: true }, // a return reason may be skipped
        getPayload: Function,
        close: Function,
    };
    static defaultProps = { typedReasonType: "1", optional: false };

    setup() {
        this.state = useState({
            reasonId: this.props.selectedReasonId || 0,
            text: "",
            type: this.props.typedReasonType,
        });
        this.typeLabels = { 0: _t("Customer return"), 1: _t("Other reason") };
    }
    selectReason(reason) {
        this.state.reasonId = reason.id;
        this.state.text = "";
    }
    isSelected(reason) {
        return this.state.reasonId === reason.id && !this.state.text.trim();
    }
    /** A typed reason wins over the preset that was selected before. */
    get payload() {
        const text = this.state.text.trim();
        if (text) {
            return { type: this.state.type, message: text };
        }
        const reason = this.props.reasons.find((r) => r.id === this.state.reasonId);
        return reason ? { type: reason.void_type, message: reason.name } : null;
    }
    confirm() {
        const payload = this.payload;
        if (payload) {
            this.props.getPayload(payload);
            this.props.close();
        }
    }
    skip() {
        this.props.getPayload(null);
        this.props.close();
    }
}

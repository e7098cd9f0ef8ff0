import { Component } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";

/** An order's ERP sync state, with the colours of the back office's badge. */
export class QimenSyncBadge extends Component {
    static template = "pos_qimen_sync.QimenSyncBadge";
    static props = { state: String }; // "synced", "pending", "failed" or "" (none)

    get label() {
        return { synced: _t("Synced"), pending: _t("Pending"), failed: _t("Failed") }[
            this.props.state
        ];
    }
    get colour() {
        return { synced: "text-bg-success", pending: "text-bg-info", failed: "text-bg-danger" }[
            this.props.state
        ];
    }
}

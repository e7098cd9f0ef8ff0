import { TicketScreen } from "@point_of_sale/app/screens/ticket_screen/ticket_screen";
import { ConnectionLostError } from "@web/core/network/rpc";
import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";
import { QimenSyncBadge } from "@pos_qimen_sync/app/qimen_sync_badge/qimen_sync_badge";

patch(TicketScreen, {
    components: { ...TicketScreen.components, QimenSyncBadge },
});

patch(TicketScreen.prototype, {
    /**
     * A draft voided from this screen comes back from the server cancelled (the answer
     * of action_pos_order_cancel is loaded): it is no paid order, as the server's own
     * list of paid orders says. Offline it is gone from the till already.
     */
    getFilteredOrderList() {
        const orders = super.getFilteredOrderList(...arguments);
        if (this.state.filter !== "SYNCED") {
            return orders;
        }
        return orders.filter((order) => order.state !== "cancel");
    },
    async onFilterSelected(selectedFilter) {
        await super.onFilterSelected(...arguments);
        if (selectedFilter !== "SYNCED") {
            await this.qimenRefreshSyncStates(); // the paid filter refreshes on fetching
        }
    },
    async _fetchSyncedOrders() {
        await super._fetchSyncedOrders(...arguments);
        await this.qimenRefreshSyncStates();
    },
    /**
     * The dispatcher sends orders after the till saved them: read the sync state of the
     * orders on screen again (one small read), keep the last one known when offline.
     */
    async qimenRefreshSyncStates() {
        if (!this.pos.qimenSyncEnabled) {
            return;
        }
        const ids = this.getFilteredOrderList()
            .filter((order) => typeof order.id === "number" && order.finalized)
            .map((order) => order.id);
        if (!ids.length) {
            return;
        }
        try {
            await this.pos.data.read("pos.order", [...new Set(ids)], ["qimen_sync_state"]);
        } catch (error) {
            if (!(error instanceof ConnectionLostError)) {
                throw error;
            }
        }
    },
    /**
     * A refund that voids the refunded order in the ERP asks why the goods come back:
     * that void carries the reason. A refund that voids nothing asks nothing.
     */
    async addAdditionalRefundInfo(order, destinationOrder) {
        await super.addAdditionalRefundInfo(...arguments);
        if (
            !this.pos.qimenRefundVoids(order, destinationOrder) ||
            destinationOrder.uiState.qimenReturnAsked
        ) {
            return; // asked once per refund, even when the cashier skipped
        }
        destinationOrder.uiState.qimenReturnAsked = true;
        const reason = await this.pos.qimenAskReason({
            title: _t("Return Reason"),
            body: _t(
                "Why does the customer return the goods of %s? The ERP receives the reason with the void of that order.",
                order.pos_reference
            ),
            confirmLabel: _t("Apply"),
            selectedReasonId: this.pos.config.qimen_return_reason_id?.id,
            typedReasonType: "0",
            optional: true,
        });
        if (reason) {
            destinationOrder.update({
                qimen_return_type: reason.type,
                qimen_return_reason: reason.message,
            });
        }
    },
});

import { PosData } from "@point_of_sale/app/models/data_service";
import { PosStore } from "@point_of_sale/app/store/pos_store";
import { makeAwaitable } from "@point_of_sale/app/store/make_awaitable_dialog";
import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";
import { QimenReasonDialog } from "@pos_qimen_sync/app/qimen_reason_dialog/qimen_reason_dialog";

/**
 * Void reasons the cashier picked, by order id, until the cancellation of those orders
 * is sent. They go in the context of that very call (action_pos_order_cancel): offline,
 * the POS queues the call with its arguments, so the reason travels with the void.
 */
const pendingVoids = new Map();

patch(PosData.prototype, {
    async callRelated(model, method, args = [], kwargs = {}, queue = true) {
        if (model !== "pos.order" || method !== "action_pos_order_cancel") {
            return super.callRelated(...arguments);
        }
        const voids = {};
        for (const id of args[0] || []) {
            if (pendingVoids.has(id)) {
                voids[id] = pendingVoids.get(id);
                pendingVoids.delete(id);
            }
        }
        if (Object.keys(voids).length) {
            kwargs = { ...kwargs, context: { ...kwargs.context, qimen_voids: voids } };
        }
        const data = await this.execute({ type: "call", model, method, args, kwargs, queue });
        if (!data) {
            // Offline: the call is queued with its arguments and sent once back online.
            // (Odoo 18.0's callRelated then fails on the missing answer; later 18.0
            // releases return false like this.)
            return false;
        }
        this.deviceSync.dispatch(data);
        return this.models.loadData(data, [], true);
    },
});

patch(PosStore.prototype, {
    /** Nothing of the ERP sync shows at a till whose company does not sync. */
    get qimenSyncEnabled() {
        return Boolean(this.config.qimen_sync_enabled);
    },
    get qimenReasons() {
        return (this.models["qimen.void.reason"]?.getAll() || []).sort(
            (a, b) => a.sequence - b.sequence || a.id - b.id
        );
    },
    /** "synced", "pending", "failed", or "" when there is nothing to show. */
    qimenSyncState(order) {
        if (!this.qimenSyncEnabled || !order) {
            return "";
        }
        if (typeof order.id !== "number") {
            return order.finalized ? "pending" : ""; // paid offline: not on the server yet
        }
        const state = order.qimen_sync_state;
        return ["synced", "pending", "failed"].includes(state) ? state : "";
    },
    /**
     * Only an order the server knows can be known to the ERP: the others go as before,
     * and so does a refund (its cancellation voids nothing in the ERP).
     */
    qimenAsksVoidReason(order) {
        return (
            this.qimenSyncEnabled &&
            typeof order.id === "number" &&
            !order.finalized &&
            order.get_orderlines().length > 0 &&
            !order._isRefundOrder()
        );
    },
    /**
     * Whether paying ``refund`` voids ``order`` in the ERP, by the company's refund
     * policy (as pos.order._qimen_on_refund decides it): only then is a reason asked.
     */
    qimenRefundVoids(order, refund) {
        const policy = this.config.qimen_refund_policy;
        if (!this.qimenSyncEnabled || policy === "never") {
            return false;
        }
        if (policy !== "full") {
            return true;
        }
        const refunding = {};
        for (const line of refund.lines) {
            const original = line.refunded_orderline_id;
            if (original) {
                refunding[original.id] = (refunding[original.id] || 0) - line.qty;
            }
        }
        const sold = order.lines.filter((line) => line.qty > 0);
        return (
            sold.length > 0 &&
            sold.every(
                (line) => (line.refunded_qty || 0) + (refunding[line.id] || 0) >= line.qty - 1e-6
            )
        );
    },
    async qimenAskReason(props) {
        return makeAwaitable(this.dialog, QimenReasonDialog, {
            reasons: this.qimenReasons.map((r) => ({
                id: r.id,
                name: r.name,
                void_type: r.void_type,
            })),
            ...props,
        });
    },
    async onDeleteOrder(order) {
        if (!this.qimenAsksVoidReason(order)) {
            return super.onDeleteOrder(...arguments);
        }
        // The reason dialog replaces Odoo's "are you sure?": it confirms the deletion too.
        const reason = await this.qimenAskReason({
            title: _t("Void %s", order.pos_reference),
            body: _t(
                "%s has a total amount of %s. Why is it voided? The ERP receives the reason.",
                order.pos_reference,
                this.env.utils.formatCurrency(order.get_total_with_tax())
            ),
            confirmLabel: _t("Void Order"),
        });
        if (!reason) {
            return false;
        }
        pendingVoids.set(order.id, reason);
        const orderIsDeleted = await this.deleteOrders([order]);
        if (orderIsDeleted) {
            order.uiState.displayed = false;
            this.afterOrderDeletion();
        } else {
            pendingVoids.delete(order.id);
        }
        return orderIsDeleted;
    },
});

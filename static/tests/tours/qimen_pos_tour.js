import * as Chrome from "@point_of_sale/../tests/tours/utils/chrome_util";
import * as Dialog from "@point_of_sale/../tests/tours/utils/dialog_util";
import * as PaymentScreen from "@point_of_sale/../tests/tours/utils/payment_screen_util";
import * as ProductScreen from "@point_of_sale/../tests/tours/utils/product_screen_util";
import * as ReceiptScreen from "@point_of_sale/../tests/tours/utils/receipt_screen_util";
import * as TicketScreen from "@point_of_sale/../tests/tours/utils/ticket_screen_util";
import { negate } from "@point_of_sale/../tests/tours/utils/common";
import { registry } from "@web/core/registry";
import { waitUntil } from "@odoo/hoot-dom";
/* global posmodel */

// The Python side (tests/test_pos_frontend.py) prepares the data, runs the dispatcher
// between tours and checks what the sandbox gateway received.

function sellAndPay(product) {
    return [
        ProductScreen.addOrderline(product, "1"),
        ProductScreen.clickPayButton(),
        PaymentScreen.clickPaymentMethod("Bank"),
        PaymentScreen.clickValidate(),
        ReceiptScreen.isShown(),
        ReceiptScreen.clickNextOrder(),
    ].flat();
}
function rowWith(text) {
    return `.ticket-screen .orders .order-row:has(.col:contains("${text}"))`;
}
function badgeIs(rowText, state, label) {
    return {
        content: `the order of ${rowText} is ${state} in the ERP`,
        trigger: `${rowWith(rowText)} .o_qimen_sync_badge.o_qimen_sync_${state}:contains("${label}")`,
    };
}
const reasonDialog = ".modal .o_qimen_reason_dialog";
function pickReason(name) {
    return [
        {
            content: `pick the reason ${name}`,
            trigger: `${reasonDialog} .o_qimen_reason:contains("${name}")`,
            run: "click",
        },
        { trigger: `${reasonDialog} .o_qimen_reason.active:contains("${name}")` },
    ];
}
function typeReason(text, type) {
    const steps = [
        { content: "type a reason", trigger: `${reasonDialog} .o_qimen_reason_text`, run: `edit ${text}` },
    ];
    if (type !== undefined) {
        steps.push({
            content: `reason type ${type}`,
            trigger: `${reasonDialog} .o_qimen_reason_type input[value="${type}"]`,
            run: "click",
        });
    }
    return steps;
}
function confirmReason() {
    return {
        content: "confirm the reason",
        trigger: `${reasonDialog} .o_qimen_reason_confirm:not([disabled])`,
        run: "click",
    };
}

registry.category("web_tour.tours").add("QimenSellAndPayTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            sellAndPay("Qimen Tea"),
            sellAndPay("Qimen Cake"),
            Chrome.clickMenuOption("Orders"),
            TicketScreen.selectFilter("Paid"),
            badgeIs("13.57", "pending", "Pending"),
            badgeIs("24.68", "pending", "Pending"),
        ].flat(),
});

registry.category("web_tour.tours").add("QimenSyncBadgeTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            Chrome.clickMenuOption("Orders"),
            TicketScreen.selectFilter("Paid"),
            badgeIs("13.57", "synced", "Synced"),
            badgeIs("24.68", "failed", "Failed"),
            TicketScreen.selectOrderByPrice("13.57"),
            { trigger: ".ticket-screen .o_qimen_sync_details .o_qimen_sync_synced" },
            TicketScreen.selectOrderByPrice("24.68"),
            {
                content: "a failed order tells the cashier to call a manager",
                trigger: ".ticket-screen .o_qimen_sync_details:has(.o_qimen_sync_failed) .o_qimen_sync_call_manager:contains('call a manager')",
            },
        ].flat(),
});

registry.category("web_tour.tours").add("QimenVoidSavedDraftTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            // an order the server never saw: deleted as in Odoo, no reason asked
            Chrome.createFloatingOrder(),
            ProductScreen.addOrderline("Qimen Tea", "1"),
            Chrome.clickMenuOption("Orders"),
            TicketScreen.deleteOrder("13.57"),
            Dialog.is({ title: "Existing orderlines" }),
            { trigger: negate(reasonDialog) },
            Dialog.confirm(),
            { trigger: negate(rowWith("13.57")) },
            // a saved draft, from the Orders screen's trash: a preset reason
            TicketScreen.deleteOrder("09901-001-0001"),
            Dialog.is({ title: "Void" }),
            { trigger: `${reasonDialog} .o_qimen_reason_confirm[disabled]` },
            pickReason("缺货"),
            confirmReason(),
            { trigger: negate(rowWith("09901-001-0001")) },
            // a saved draft, from Actions > Cancel Order: a typed reason and its type
            TicketScreen.selectOrder("09901-001-0002"),
            TicketScreen.loadSelectedOrder(),
            ProductScreen.isShown(),
            ProductScreen.clickControlButton("Cancel Order"),
            Dialog.is({ title: "Void" }),
            typeReason("顾客改主意了", "0"),
            confirmReason(),
            ProductScreen.isShown(),
            Chrome.clickMenuOption("Orders"),
            { trigger: negate(rowWith("09901-001-0002")) },
        ].flat(),
});

// A shop that shares its open orders (Trusted POS, as in the demo): the cashier saves an
// order for later, then voids it from the Orders screen; it is no paid order after that.
registry.category("web_tour.tours").add("QimenSaveForLaterThenVoidTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            sellAndPay("Qimen Tea"),
            ProductScreen.addOrderline("Qimen Cake", "1"),
            {
                content: "save the order for later: the server knows it",
                trigger: ".product-screen button:has(> i.fa-upload):not([disabled])",
                run: "click",
            },
            {
                content: "saved: it has a server id",
                trigger: ".product-screen",
                run: async () => {
                    await waitUntil(() =>
                        posmodel.models["pos.order"].some(
                            (o) => typeof o.id === "number" && o.amount_total === 24.68
                        )
                    );
                },
            },
            Chrome.clickMenuOption("Orders"),
            TicketScreen.deleteOrder("24.68"),
            Dialog.is({ title: "Void" }),
            pickReason("缺货"),
            confirmReason(),
            { trigger: negate(rowWith("24.68")) },
            TicketScreen.selectFilter("Paid"),
            { content: "the paid order is listed", trigger: rowWith("13.57") },
            { content: "the voided one is not", trigger: negate(rowWith("24.68")) },
            {
                content: "and it stays unlisted once the cancellation came back",
                trigger: ".ticket-screen",
                run: async () => {
                    await waitUntil(() =>
                        posmodel.models["pos.order"].some(
                            (o) => o.state === "cancel" && o.amount_total === 24.68
                        )
                    );
                },
            },
            {
                content: "the paid order is the only one listed under Paid",
                trigger: rowWith("13.57"),
                run: async () => {
                    await new Promise((resolve) => setTimeout(resolve, 300)); // rendered
                    const rows = [...document.querySelectorAll(".ticket-screen .orders .order-row")];
                    const texts = rows.map((row) => row.innerText.replace(/\s+/g, " "));
                    if (rows.length !== 1 || !texts[0].includes("13.57")) {
                        throw new Error(`Paid lists more than the paid order: ${JSON.stringify(texts)}`);
                    }
                },
            },
        ].flat(),
});

registry.category("web_tour.tours").add("QimenRefundWithReasonTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            sellAndPay("Qimen Tea"),
            ProductScreen.clickRefund(),
            TicketScreen.selectOrderByPrice("13.57"),
            ProductScreen.clickNumpad("1"),
            TicketScreen.toRefundTextContains("To Refund: 1.00"),
            TicketScreen.confirmRefund(),
            Dialog.is({ title: "Return Reason" }),
            // the shop's default return reason is selected; the cashier types another
            { trigger: `${reasonDialog} .o_qimen_reason.active:contains("顾客退货")` },
            typeReason("尺码不合适"),
            { trigger: `${reasonDialog} .o_qimen_reason_type input[value="0"]:checked` },
            confirmReason(),
            ProductScreen.isShown(),
            ProductScreen.clickPayButton(),
            PaymentScreen.clickPaymentMethod("Bank"),
            PaymentScreen.clickValidate(),
            ReceiptScreen.isShown(),
        ].flat(),
});

registry.category("web_tour.tours").add("QimenPartialRefundTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            ProductScreen.addOrderline("Qimen Tea", "2"),
            ProductScreen.clickPayButton(),
            PaymentScreen.clickPaymentMethod("Bank"),
            PaymentScreen.clickValidate(),
            ReceiptScreen.isShown(),
            ReceiptScreen.clickNextOrder(),
            ProductScreen.clickRefund(),
            TicketScreen.selectOrderByPrice("27.14"),
            ProductScreen.clickNumpad("1"),
            TicketScreen.toRefundTextContains("To Refund: 1.00"),
            TicketScreen.confirmRefund(),
            // one of two teas back: the order stays sold in the ERP, no reason is asked
            ProductScreen.isShown(),
            { trigger: negate(reasonDialog) },
            ProductScreen.clickPayButton(),
            PaymentScreen.clickPaymentMethod("Bank"),
            PaymentScreen.clickValidate(),
            ReceiptScreen.isShown(),
        ].flat(),
});

registry.category("web_tour.tours").add("QimenSyncOffTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            Chrome.clickMenuOption("Orders"),
            { trigger: rowWith("09901-001-0001") },
            { trigger: negate(".ticket-screen .o_qimen_sync_col") },
            TicketScreen.deleteOrder("09901-001-0001"),
            Dialog.is({ title: "Existing orderlines" }),
            { trigger: negate(reasonDialog) },
            Dialog.confirm(),
            { trigger: negate(rowWith("09901-001-0001")) },
        ].flat(),
});

registry.category("web_tour.tours").add("QimenOfflineVoidTour", {
    steps: () =>
        [
            Chrome.startPoS(),
            Chrome.clickMenuOption("Orders"),
            {
                content: "the till goes offline",
                trigger: ".ticket-screen",
                run: () => window.dispatchEvent(new Event("offline")),
            },
            TicketScreen.deleteOrder("09901-001-0001"),
            Dialog.is({ title: "Void" }),
            pickReason("收银错误"),
            confirmReason(),
            { trigger: negate(rowWith("09901-001-0001")) },
            {
                content: "the cancellation waits in the offline queue with its reason",
                trigger: ".ticket-screen",
                run: () => {
                    const queued = posmodel.data.network.unsyncData.map((d) => d.args[0]);
                    const cancel = queued.find((q) => q.method === "action_pos_order_cancel");
                    const voids = cancel?.kwargs.context?.qimen_voids || {};
                    if (!Object.values(voids).some((v) => v.message === "收银错误")) {
                        throw new Error(`no queued void with its reason: ${JSON.stringify(queued)}`);
                    }
                },
            },
            {
                content: "back online: the queue is sent",
                trigger: ".ticket-screen",
                run: async () => {
                    window.dispatchEvent(new Event("online"));
                    await waitUntil(() => posmodel.data.network.unsyncData.length === 0);
                },
            },
            // a sale after it, so that the Paid list has a row to wait for
            Chrome.createFloatingOrder(),
            sellAndPay("Qimen Tea"),
            Chrome.clickMenuOption("Orders"),
            TicketScreen.selectFilter("Paid"),
            {
                content: "the voided draft is no paid order either (the paid one is listed)",
                trigger: rowWith("13.57"),
                run: async () => {
                    await new Promise((resolve) => setTimeout(resolve, 300)); // rendered
                    const rows = [...document.querySelectorAll(".ticket-screen .orders .order-row")];
                    const listed = rows.filter((row) => row.innerText.includes("09901-001-0001"));
                    if (listed.length) {
                        throw new Error(`the voided draft is listed under Paid: ${listed[0].innerText}`);
                    }
                },
            },
        ].flat(),
});

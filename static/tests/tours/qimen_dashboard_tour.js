import { registry } from "@web/core/registry";

// The Python side (tests/test_sync_health_dashboard.py) queues the jobs of the shop
// "Shop" and pauses its company's sending before each tour.
const card = `.o_kanban_record:has(.fw-bold:contains("Shop")) [name=qimen_sync_health]`;

function backToTheDashboard() {
    return {
        content: "back to the dashboard",
        trigger: `.o_breadcrumb .breadcrumb-item a:contains("Point of Sale")`,
        run: "click",
    };
}

registry.category("web_tour.tours").add("QimenDashboardTour", {
    steps: () => [
        {
            content: "the card shows the paused sending and why",
            trigger: `${card} .o_qimen_breaker.text-bg-danger:contains("Paused")`,
        },
        {
            content: "the reason",
            trigger: `${card} .text-danger:contains("The gateway does not answer")`,
        },
        {
            content: "the updates waiting, and the oldest's age",
            trigger: `${card}:contains("oldest 1 h 15 min") .o_qimen_waiting`,
            run: function ({ anchor }) {
                if (anchor.innerText.trim() !== "2") {
                    throw new Error(`waiting: ${anchor.innerText}, not 2`);
                }
                anchor.click();
            },
        },
        {
            content: "they open in the shop's queue",
            trigger: `.o_breadcrumb:contains("Qimen Sync Queue: Shop")`,
        },
        {
            content: "its two waiting updates, and only them",
            trigger: `.o_list_view:has(.o_data_row:contains("DASH-WAIT-1")):has(.o_data_row:contains("DASH-WAIT-2")):not(:has(.o_data_row:contains("DASH-DEAD"))):not(:has(.o_data_row:contains("DASH-DONE")))`,
        },
        backToTheDashboard(),
        {
            content: "the dead update, in red, opens the queue",
            trigger: `${card} .o_qimen_dead.text-bg-danger:contains("1")`,
            run: "click",
        },
        {
            content: "the dead update",
            trigger: `.o_list_view:has(.o_data_row:contains("DASH-DEAD")):not(:has(.o_data_row:contains("DASH-WAIT"))):not(:has(.o_data_row:contains("DASH-DONE")))`,
        },
        backToTheDashboard(),
        {
            content: "the last acknowledgement opens the acknowledgements per hour",
            trigger: `${card} .o_qimen_last_ack`,
            run: "click",
        },
        {
            content: "a graph by hour",
            trigger: `.o_graph_view .o_graph_renderer canvas`,
        },
        {
            content: "grouped by the hour acknowledged",
            trigger: `.o_searchview_facet:contains("Hour")`,
        },
        backToTheDashboard(),
        {
            content: "the paused badge opens the company's sync health",
            trigger: `${card} .o_qimen_breaker`,
            run: "click",
        },
        {
            content: "its form says why",
            trigger: `.o_form_view:contains("The gateway does not answer")`,
        },
    ],
});

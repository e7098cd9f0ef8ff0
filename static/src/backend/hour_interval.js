import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";
import { SearchModel } from "@web/search/search_model";
import { INTERVAL_OPTIONS } from "@web/search/utils/dates";

/**
 * The sync queue's acknowledgements per hour (group by "date_done:hour"): Odoo 18's server
 * groups dates by hour, its web client refuses any interval finer than a day. The hour is
 * accepted everywhere (a group-by in a URL or a favorite stays valid) but offered in the
 * group-by menus of the sync queue only.
 */
INTERVAL_OPTIONS.hour = { description: _t("Hour"), id: "hour", groupNumber: 1 };

export const HOURLY_MODELS = ["qimen.sync.job"];

patch(SearchModel.prototype, {
    async load(config) {
        if (!HOURLY_MODELS.includes(config.resModel)) {
            this.intervalOptions = this.intervalOptions.filter((option) => option.id !== "hour");
        }
        return super.load(...arguments);
    },
});

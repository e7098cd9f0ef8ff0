# Copyright 2026 pos_qimen_sync authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0).
{
    "name": "POS Qimen ERP Sync",
    "summary": "Sync POS order statuses with the retailer's ERP through Alibaba's Qimen gateway",
    "version": "18.0.1.0.0",
    "category": "Point of Sale",
    "license": "LGPL-3",
    "author": "pos_qimen_sync authors",
    "website": "https://github.com/pos-qimen-sync/pos_qimen_sync",
    "depends": ["point_of_sale", "mail"],
    "external_dependencies": {"python": ["requests", "lxml"]},
    "data": [
        "security/ir.model.access.csv",
        "security/pos_qimen_sync_security.xml",
        "data/ir_cron.xml",
        "data/qimen_void_reason_data.xml",
        "views/qimen_sync_job_views.xml",
        "views/qimen_callback_log_views.xml",
        "views/pos_order_views.xml",
        "views/res_config_settings_views.xml",
        "wizard/qimen_void_wizard_views.xml",
        "views/qimen_void_reason_views.xml",
        "views/pos_order_void_action.xml",
        "views/pos_order_return_reason_views.xml",
        "views/res_config_settings_void_reason_views.xml",
        "report/qimen_sync_report_views.xml",
    ],
    "demo": ["demo/pos_qimen_sync_demo.xml", "demo/qimen_void_reason_demo.xml"],
    "assets": {
        "point_of_sale._assets_pos": ["pos_qimen_sync/static/src/**/*"],
        "web.assets_tests": ["pos_qimen_sync/static/tests/tours/**/*"],
    },
}

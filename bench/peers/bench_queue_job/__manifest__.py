# Copyright 2026 pos_qimen_sync authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0).
{
    "name": "POS Qimen Sync: queue_job benchmark peer",
    "summary": "Bench only (bench/queue_job.py): one salesorder.update per OCA queue_job job",
    "version": "18.0.1.0.0",
    "category": "Hidden",
    "license": "LGPL-3",
    "author": "pos_qimen_sync authors",
    "depends": ["pos_qimen_sync", "queue_job"],
}

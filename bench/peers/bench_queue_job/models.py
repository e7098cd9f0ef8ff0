"""The job bench/queue_job.py runs through OCA queue_job: one update, sent as the
dispatcher's lanes send it (the company's client, the same validation and call)."""

from odoo import api, models

from odoo.addons.queue_job.exception import RetryableJobError


class BenchQueueJobSender(models.AbstractModel):
    _name = "bench.queue.job.sender"
    _description = "Benchmark: a salesorder.update as a queue_job job"

    @api.model
    def send_update(self, company_id, payload):
        """Send one ``qimen.taobao.pos.salesorder.update`` with the company's settings; a
        refused or failed call fails the job (queue_job retries it later)."""
        company = self.env["res.company"].browse(company_id)
        result = company._qimen_client().salesorder_update(payload)
        if not result.ok:
            raise RetryableJobError(result.describe())
        return result.describe()

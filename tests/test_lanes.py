import threading
import time

from odoo.tests import BaseCase, tagged

from ..dispatch.lanes import Claim, Lane
from ..qimen.client import SendResult


class _Queue:
    """The queue as a lane sees it (claims, outcomes) and the gateway its caller calls:
    no database, so that the lane's hand-over between its two threads is all there is."""

    def __init__(self, count, record=None):
        self.waiting = list(range(1, count + 1))
        self.events, self.handed, self.most_handed = [], 0, 0
        self.lock = threading.Lock()
        self.record = record  # called with each job recorded, before it is

    def _claim_next(self, claim_until, lane, lease):
        if not self.waiting:
            return None
        claim = Claim(self.waiting.pop(0), None, "BILL")
        claim.client, claim.params = self, {}
        claim.params["job"] = claim.job_id
        with self.lock:
            self.handed += 1
            self.most_handed = max(self.most_handed, self.handed)
        return claim

    def _record(self, claim, result, lane):
        if self.record:
            self.record(claim.job_id)
        with self.lock:
            self.handed -= 1
            self.events.append(("recorded", claim.job_id, result.message))

    def _record_done_and_claim(self, claim, result, lane, lease):
        self._record(claim, result, lane)
        return self._claim_next(None, lane, lease)

    def call(self, method, params):  # the gateway
        with self.lock:
            self.events.append(("sent", params["job"], None))
        time.sleep(0.01)
        return SendResult("success", message=f"job {params['job']}")

    def of(self, kind):
        return [job for event, job, _ in self.events if event == kind]


class _Enclosing:
    @staticmethod
    def run(work):
        return work()

    run_alone = run


@tagged("post_install", "-at_install")
class TestLane(BaseCase):
    """A lane's two threads: its caller sends, the lane claims and records."""

    def run_lane(self, jobs):
        return Lane(jobs, _Enclosing()).run(time.time() + 60, 60)

    def test_each_job_is_sent_once_in_order_with_one_waiting_at_most(self):
        jobs = _Queue(7)
        self.assertEqual(self.run_lane(jobs), 7)
        self.assertEqual(jobs.of("sent"), list(range(1, 8)))
        self.assertEqual(jobs.of("recorded"), list(range(1, 8)))
        recorded = [message for event, _, message in jobs.events if event == "recorded"]
        self.assertEqual(recorded, [f"job {job}" for job in range(1, 8)], "its own outcome")
        self.assertEqual(jobs.most_handed, 2, "one under way, the next waiting for its turn")

    def test_the_next_call_starts_while_an_outcome_is_recorded(self):
        second_sent = threading.Event()

        def record(job):
            if job == 1:  # waits for the next call: a lane that sent after would hang
                self.assertTrue(second_sent.wait(5), "the next call waited for the outcome")

        jobs = _Queue(3, record)
        original = jobs.call

        def call(method, params):
            if params["job"] == 2:
                second_sent.set()
            return original(method, params)

        jobs.call = call
        self.assertEqual(self.run_lane(jobs), 3)

    def test_a_lane_that_fails_to_record_stops_its_caller(self):
        def record(job):
            if job == 2:
                raise RuntimeError("the database went away")

        jobs = _Queue(6, record)
        with self.assertRaisesRegex(RuntimeError, "went away"):
            self.run_lane(jobs)
        self.assertEqual(jobs.of("recorded"), [1])
        self.assertEqual(jobs.of("sent"), [1, 2, 3], "only what it was handed")
        caller = f"{threading.current_thread().name}-call"  # this lane's, not another test's
        self.assertNotIn(caller, [t.name for t in threading.enumerate()], "its caller is gone")

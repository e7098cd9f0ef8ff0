import pytest

from qimen.client import SendResult
from qimen.health import CREDENTIALS, GATEWAY, ORDER, UNREACHABLE, failure_kind
from qimen.responses import PERMANENT, SUCCESS, TRANSIENT, parse_reply


def result_of(body, http_status=200):
    reply = parse_reply(body, http_status)
    return SendResult(
        reply.outcome, code=reply.code, sub_code=reply.sub_code, http_status=http_status
    )


@pytest.mark.parametrize(
    ("body", "http_status", "kind"),
    [
        (
            '{"response":{"flag":"failure","code":25,"message":"Invalid signature"}}',
            200,
            CREDENTIALS,
        ),
        ('{"error_response":{"code":29,"msg":"Invalid app Key"}}', 200, CREDENTIALS),
        ('{"error_response":{"code":28,"msg":"Missing app key"}}', 200, CREDENTIALS),
        (
            '{"error_response":{"code":41,"msg":"x","sub_code":"isv.invalid-signature"}}',
            200,
            CREDENTIALS,
        ),
        (
            '{"error_response":{"code":15,"msg":"x","sub_code":"isp.remote-service-error"}}',
            200,
            GATEWAY,
        ),
        ('{"error_response":{"code":7,"msg":"App Call Limited"}}', 200, GATEWAY),
        ("<html>Service Unavailable</html>", 503, GATEWAY),
        ('{"response":{"flag":"failure","code":"0","message":"busy"}}', 429, GATEWAY),
        ("not a reply", 200, GATEWAY),
        (
            '{"error_response":{"code":41,"msg":"x","sub_code":"isv.invalid-parameter"}}',
            200,
            ORDER,
        ),
        ('{"response":{"flag":"failure","code":"0","message":"order unknown"}}', 200, ORDER),
    ],
)
def test_each_reply_is_the_company_s_or_the_order_s(body, http_status, kind):
    assert failure_kind(result_of(body, http_status)) == kind


def test_no_answer_at_all_is_an_unreachable_gateway():
    assert failure_kind(SendResult(TRANSIENT, message="timeout: read timed out")) == UNREACHABLE


def test_a_success_is_no_failure():
    assert failure_kind(SendResult(SUCCESS, code="1")) is None
    assert failure_kind(SendResult(PERMANENT, message="invalid orderBillCode")) == ORDER

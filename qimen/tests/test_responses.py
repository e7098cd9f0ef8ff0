import json

import pytest

from qimen.responses import PERMANENT, SUCCESS, TRANSIENT, parse_reply

XML_OK = (
    '<?xml version="1.0" encoding="utf-8"?><response><flag>success</flag><code>1</code>'
    "<message>OK</message></response>"
)
XML_ERROR = (
    "<error_response><code>50</code><msg>Remote service error</msg>"
    "<sub_code>isv.invalid-parameter</sub_code><sub_msg>非法参数</sub_msg></error_response>"
)


@pytest.mark.parametrize(
    ("body", "status", "outcome", "code", "sub_code"),
    [
        ('{"response":{"flag":"success","code":"1","message":"OK"}}', 200, SUCCESS, "1", ""),
        ('{"flag":"success","code":1,"message":"成功"}', 200, SUCCESS, "1", ""),
        (XML_OK, 200, SUCCESS, "1", ""),
        ("<result><flag>success</flag><code>1</code></result>", 200, SUCCESS, "1", ""),
        (
            '{"response":{"flag":"failure","code":"0","message":"单据不存在"}}',
            200,
            PERMANENT,
            "0",
            "",
        ),
        ('{"response":{"flag":"success","code":"0","message":"?"}}', 200, PERMANENT, "0", ""),
        (
            '{"response":{"flag":"failure","code":25,"message":"Invalid signature","request_id":"r1"}}',
            200,
            PERMANENT,
            "25",
            "",
        ),
        (
            '{"response":{"flag":"failure","code":41,"message":"Invalid arguments",'
            '"sub_message":"status"}}',
            200,
            PERMANENT,
            "41",
            "",
        ),
        ('{"error_response":{"code":7,"msg":"App Call Limited"}}', 200, TRANSIENT, "7", ""),
        ('{"error_response":{"code":10,"msg":"Service unavailable"}}', 200, TRANSIENT, "10", ""),
        (
            '{"error_response":{"code":15,"msg":"x","sub_code":"isp.timeout"}}',
            200,
            TRANSIENT,
            "15",
            "isp.timeout",
        ),
        (
            '{"error_response":{"code":15,"msg":"x","sub_code":"isv.bad"}}',
            200,
            PERMANENT,
            "15",
            "isv.bad",
        ),
        ('{"error_response":{"code":29,"msg":"Invalid app key"}}', 200, PERMANENT, "29", ""),
        (
            '{"error_response":{"code":40,"msg":"Missing required arguments"}}',
            200,
            PERMANENT,
            "40",
            "",
        ),
        (XML_ERROR, 200, PERMANENT, "50", "isv.invalid-parameter"),
        (
            "<error_response><code>50</code><sub_code>isp.unknown</sub_code></error_response>",
            200,
            TRANSIENT,
            "50",
            "isp.unknown",
        ),
        ("<html><body>502 Bad Gateway</body></html>", 502, TRANSIENT, "", ""),
        ("Service Unavailable", 503, TRANSIENT, "", ""),
        ("slow down", 429, TRANSIENT, "", ""),
        ('{"error_response":{"code":41,"sub_code":"isv.x"}}', 500, PERMANENT, "41", "isv.x"),
        ("not json, not xml", 200, TRANSIENT, "", ""),
        (b"\x00\xff\xfe garbage", 200, TRANSIENT, "", ""),
        ("", 200, TRANSIENT, "", ""),
        ("[1, 2]", 200, TRANSIENT, "", ""),
        ('{"foo":"bar"}', 200, TRANSIENT, "", ""),
        ("<html>Not Found</html>", 404, TRANSIENT, "", ""),
        ("Forbidden", 403, TRANSIENT, "", ""),
        ('{"response":{"flag":"success","code":"1"}}', 404, PERMANENT, "1", ""),
    ],
)
def test_shapes_and_classification(body, status, outcome, code, sub_code):
    reply = parse_reply(body if isinstance(body, bytes) else body.encode("utf-8"), status)
    assert (reply.outcome, reply.code, reply.sub_code) == (outcome, code, sub_code)
    assert reply.http_status == status


def test_fields_are_extracted():
    reply = parse_reply(XML_ERROR.encode("utf-8"))
    assert reply.flag == "failure"
    assert reply.message == "Remote service error"
    assert reply.sub_message == "非法参数"
    wrapped = parse_reply(
        json.dumps(
            {
                "response": {
                    "flag": "failure",
                    "code": 25,
                    "message": "Invalid signature",
                    "request_id": "abc",
                }
            }
        ).encode()
    )
    assert wrapped.request_id == "abc" and wrapped.message == "Invalid signature"
    assert parse_reply(b'{"error_response":{"code":"29"}}').message == "Invalid app key"


def test_gbk_body_is_decoded():
    body = '{"response":{"flag":"failure","code":"0","message":"单据不存在"}}'.encode("gbk")
    assert parse_reply(body).message == "单据不存在"


def test_hostile_xml_reply_is_not_expanded():
    body = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r><flag>&x;</flag></r>'
    reply = parse_reply(body)
    assert reply.outcome == TRANSIENT and "root" not in reply.message

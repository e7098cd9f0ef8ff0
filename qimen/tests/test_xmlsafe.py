import pytest

from qimen.errors import QimenXMLError
from qimen.xmlsafe import element_to_data, parse_xml

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE request [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<request><orderBillCode>&xxe;</orderBillCode></request>"""
XXE_NETWORK = b"""<?xml version="1.0"?>
<!DOCTYPE request SYSTEM "http://127.0.0.1:9/evil.dtd"><request/>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x"> %p;]><r/>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol9;</lolz>"""
LOWERCASE_DOCTYPE = b"<!doctype r><r/>"


@pytest.mark.parametrize(
    "payload", [XXE_FILE, XXE_NETWORK, PARAMETER_ENTITY, BILLION_LAUGHS, LOWERCASE_DOCTYPE]
)
def test_hostile_documents_are_refused(payload):
    with pytest.raises(QimenXMLError, match="DTD or entity"):
        parse_xml(payload)


def test_size_limit():
    body = b"<request><a>" + b"x" * 2000 + b"</a></request>"
    with pytest.raises(QimenXMLError, match="larger than 1000 bytes"):
        parse_xml(body, max_bytes=1000)
    assert parse_xml(body, max_bytes=5000).tag == "request"


@pytest.mark.parametrize("payload", [b"<request><a></request>", b"", b"   ", b"<a>&undefined;</a>"])
def test_malformed(payload):
    with pytest.raises(QimenXMLError):
        parse_xml(payload)


def test_element_to_data_unicode_and_lists():
    root = parse_xml(
        "<request><zf_message>不想买了</zf_message><mx_list><mx><sku>A</sku>"
        "<goods_number>1</goods_number></mx><mx><sku>B</sku><goods_number>2</goods_number>"
        "</mx></mx_list><!-- c --><empty/></request>"
    )
    data = element_to_data(root)
    assert data["zf_message"] == "不想买了"
    assert data["mx_list"]["mx"] == [
        {"sku": "A", "goods_number": "1"},
        {"sku": "B", "goods_number": "2"},
    ]
    assert data["empty"] == ""

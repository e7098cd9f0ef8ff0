"""Hardened XML parsing: no DTD, no entities, no network, bounded size.

XXE and billion-laughs documents are rejected before anything is expanded.
"""

import re

from lxml import etree

from .errors import QimenXMLError

MAX_XML_BYTES = 1024 * 1024
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser():
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data, max_bytes=MAX_XML_BYTES):
    """Parse ``data`` (bytes or str) and return the root element."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise QimenXMLError(f"XML document larger than {max_bytes} bytes")
    if _FORBIDDEN.search(data):
        raise QimenXMLError("XML documents with a DTD or entity declarations are refused")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise QimenXMLError(f"malformed XML: {exc.msg}") from None
    if root is None:
        raise QimenXMLError("empty XML document")
    if root.getroottree().docinfo.internalDTD is not None:  # belt and braces
        raise QimenXMLError("XML documents with a DTD are refused")
    return root


def element_to_data(element):
    """Convert an element to plain data: text for a leaf, a dict for children
    (a name repeated becomes a list)."""
    children = [child for child in element if isinstance(child.tag, str)]
    if not children:
        return (element.text or "").strip()
    data = {}
    for child in children:
        name = etree.QName(child).localname
        value = element_to_data(child)
        if name in data:
            if not isinstance(data[name], list):
                data[name] = [data[name]]
            data[name].append(value)
        else:
            data[name] = value
    return data


XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'


def xml_document(root):
    """Serialize ``root`` as UTF-8 with the declaration Qimen examples use."""
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")

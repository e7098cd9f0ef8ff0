from qimen.text import storable


def test_controls_are_escaped_and_the_rest_kept():
    assert storable("a\x00b\x1fc\td\ne\rf 中文") == "a\\x00b\\x1fc\td\ne\rf 中文"
    assert storable(None) == ""
    assert storable(41) == "41"


def test_bytes_surrogates_and_length():
    assert storable("a\x00b") == "a\\x00b"
    assert storable("\ud800x") == "\\ud800x"
    assert storable(b"\xff\x00") == "\ufffd\\x00"
    assert storable("abcdef", max_chars=3) == "abc…"
    assert storable("不想买了") == "不想买了"

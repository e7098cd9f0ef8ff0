from qimen.text import storable


def test_controls_are_escaped_and_the_rest_kept():
    assert storable("a\x00b\x1fc\td\ne\rf 中文") == "a\\x00b\\x1fc\td\ne\rf 中文"
    assert storable(None) == ""
    assert storable(41) == "41"

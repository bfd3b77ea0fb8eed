"""strip_quotes keeps the newest reply only; html_to_text gives safe readable text."""
from __future__ import annotations

import pytest

from gateway.channels.email import html_to_text, strip_quotes


@pytest.mark.parametrize("text, expected", [
    ("Sounds good.\n\nOn Mon, Jan 8, 2024 at 10:30 AM Acme <a@b.com> wrote:\n> Hello?\n", "Sounds good."),
    # attribution wrapped over two lines (Gmail wraps long names/addresses)
    ("Yes.\n\nOn Mon, Jan 8, 2024 at 10:30 AM Acme Support <\nreply+x@reply.example.com> wrote:\n\n> Hi\n",
     "Yes."),
    ("D'accord.\n\nLe lun. 8 janv. 2024 à 10:30, Acme <a@b.com> a écrit :\n> Bonjour\n", "D'accord."),
    ("Passt.\n\nAm 08.01.2024 um 10:30 schrieb Acme <a@b.com>:\n> Hallo\n", "Passt."),
    ("Vale.\n\nEl lun, 8 ene 2024 a las 10:30, Acme (<a@b.com>) escribió:\n> Hola\n", "Vale."),
    ("Fine by me.\n\n-----Original Message-----\nFrom: Acme\nSent: Monday\n\nHello\n", "Fine by me."),
    ("OK\n\nFrom: Acme Support <a@b.com>\nSent: Monday, January 8, 2024 10:30 AM\nTo: me\nSubject: x\n\nHi",
     "OK"),
    ("Thanks\n\n________________________________\nFrom: Acme <a@b.com>\nDate: 8 Jan 2024\n\nHi", "Thanks"),
    ("See you then.\n-- \nJane Doe\nACME Corp | +1 555 0100\n", "See you then."),
    ("On my way\n\nSent from my iPhone\n\n> On 8 Jan 2024, at 10:30, Acme <a@b.com> wrote:\n> Where?", "On my way"),
    ("Top reply\n> quoted line\n> another\n", "Top reply"),
    # bottom-posting and inline answers keep the answer, not the quote
    ("On Mon, Jan 8, 2024 at 10:30 AM Acme <a@b.com> wrote:\n> When?\n\nTuesday.\n\n-- \nJane", "Tuesday."),
    ("> Size?\nLarge\n> Colour?\nBlue\n", "Large\nBlue"),
    # not attributions: no date or address in the line
    ("On Monday my colleague wrote:\nthe report is late", "On Monday my colleague wrote:\nthe report is late"),
    ("Line one\r\nLine two\r\n", "Line one\nLine two"),
])
def test_strip_quotes(text, expected):
    assert strip_quotes(text) == expected


def test_only_quoted_text_is_returned_whole():
    text = "> just a forwarded quote\n> nothing else\n"
    assert strip_quotes(text) == text.strip()
    assert strip_quotes("") == ""


def test_html_to_text_blocks_links_entities_and_dropped_parts():
    html = ("<html><head><title>T</title><style>.x{}</style></head><body>"
            "<h1>Order&nbsp;#12</h1><p>Hello <b>Ana</b>,<br>your   order\n  shipped.</p>"
            "<ul><li>Shoes</li><li>Socks &amp; laces</li></ul>"
            "<p><a href='https://shop.example/track?id=1&amp;x=2'>Track it</a> or "
            "<a href='mailto:help@shop.example'>help@shop.example</a> "
            "<a href='javascript:alert(1)'>evil</a></p>"
            "<script>document.write('x')</script><table><tr><td>A</td><td>B</td></tr></table>"
            "<blockquote>old <br>text</blockquote></body></html>")
    assert html_to_text(html) == (
        "Order #12\n\nHello Ana,\nyour order shipped.\n\n- Shoes\n- Socks & laces\n\n"
        "Track it (https://shop.example/track?id=1&x=2) or help@shop.example evil\n\n"
        "A B\n\n> old\n> text")


def test_html_to_text_pre_keeps_lines_and_bad_html_does_not_crash():
    assert html_to_text("<pre>a  b\n  c</pre>") == "a  b\n  c"
    assert html_to_text("<div><p>unclosed <a href=x>link<td></html></html>") == "unclosed link"
    assert html_to_text("") == ""

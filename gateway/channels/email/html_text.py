"""HTML email bodies reduced to safe plain text (html.parser based, no markup survives).

Block elements and <br> become line breaks, links become "text (url)", <blockquote> content is
prefixed with "> " so quote stripping works on HTML-only mail just as on plain text.
"""
from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser

_SKIP = {"script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "blockquote",
              "dl", "figure"}
_LINE = {"div", "li", "tr", "section", "article", "header", "footer", "address", "dd", "dt",
         "hr", "center", "form", "fieldset", "main", "nav", "aside", "caption"}
_CELL = {"td", "th"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr", "source"}
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.quote_depth = 0
        self.links: list[tuple[str | None, int]] = []   # (href, length of self.current at <a>)

    # --- line handling ---
    def _flush(self) -> None:
        line = "".join(self.current)
        self.current = []
        if self.pre_depth == 0:
            line = re.sub(r"[ \t\r\n\f\v\u00a0]+", " ", line).strip()
        else:
            line = line.rstrip()
        if line:
            self.lines.append("> " * self.quote_depth + line)

    def _break(self, blank: bool = False) -> None:
        self._flush()
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    # --- parser callbacks ---
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "br":
            self._flush()
        elif tag in _PARAGRAPH or tag in _LINE:
            self._break(blank=tag in _PARAGRAPH)
        elif tag in _CELL and self.current:
            self.current.append(" ")
        if tag == "li":
            self.current.append("- ")
        elif tag == "blockquote":
            self.quote_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.current)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            self._close_link(*self.links.pop())
        elif tag in _PARAGRAPH or tag in _LINE:
            self._break(blank=tag in _PARAGRAPH)
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)

    def _close_link(self, href: str | None, start: int) -> None:
        if not href:
            return
        href = href.strip()
        if not href.lower().startswith(_LINK_SCHEMES):
            return   # javascript:, cid:, relative links: nothing useful to show
        label = "".join(self.current[start:]).strip()
        shown = href[len("mailto:"):] if href.lower().startswith("mailto:") else href
        if label and label not in (href, shown):
            self.current.append(f" ({href})")
        elif not label:
            self.current.append(shown)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            first, *rest = data.split("\n")
            self.current.append(first)
            for line in rest:
                self._flush()
                self.current.append(line)
        else:
            self.current.append(data)

    def text(self) -> str:
        self._flush()
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body; scripts, styles and the head are dropped."""
    parser = _TextExtractor()
    with contextlib.suppress(Exception):   # html.parser is lenient; this guards pathological input
        parser.feed(html or "")
        parser.close()
    return parser.text()

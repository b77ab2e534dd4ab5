"""Agent text as safe HTML: markdown-it-py renders (raw HTML escaped, unsafe link schemes refused), then nh3
(ammonia) keeps only an allow-list of tags and attributes, so nothing a model writes can run in the page."""
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from django.utils.safestring import mark_safe

TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h1", "h2", "h3",
    "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "img",
}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "code": {"class"}, "th": {"style"}, "td": {"style"}}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"])


def render_markdown(text: str):
    html = _parser().render(text or "")
    cleaned = nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                        link_rel="noopener noreferrer nofollow")
    return mark_safe(cleaned)  # noqa: S308 - sanitized by nh3 just above

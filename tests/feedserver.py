"""A real HTTP server on loopback serving an RSS feed, as the newsroom's site would: with
an ETag and Last-Modified, answering 304 to a conditional GET when nothing changed."""

from __future__ import annotations

import hashlib

from tests.loopback import LoopbackServer, QuietHandler

LAST_MODIFIED = "Wed, 02 Dec 2026 08:00:00 GMT"


def item(n: int, *, url: str | None = None, title: str | None = None, extra: str = "") -> str:
    link = url or f"https://www.themoscowtimes.com/2026/12/02/story-from-the-site-a{7000 + n}"
    return f"""<item>
  <title>{title if title is not None else f"Story {n} from the site"}</title>
  <link>{link}</link>
  <description>&lt;p&gt;The lead of story {n}, as the site &lt;b&gt;writes&lt;/b&gt; it.&lt;/p&gt;</description>
  <author>news@themoscowtimes.com (By AFP)</author>
  <category>Features</category>
  <media:content url="https://static.themoscowtimes.com/image/{n}.jpg" medium="image">
    <media:description>Picture of story {n}</media:description>
    <media:credit>AFP</media:credit>
  </media:content>{extra}
</item>"""


def rss(items: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        "<title>The Moscow Times</title><link>https://www.themoscowtimes.com/</link>"
        "<description>News</description>" + "".join(items) + "</channel></rss>"
    )


class FeedServer(LoopbackServer):
    """`with FeedServer(body) as f:` - f.url; f.body can change; f.requests records headers."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.status = 200
        self.requests: list[dict[str, str]] = []
        feed = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                feed.requests.append(dict(self.headers))
                if feed.status != 200:
                    self.send_response(feed.status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                data = feed.body.encode("utf-8")
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)
        self.url = self.base + "/feed.xml"

"""Small pages served as plain HTML outside Gradio (curator login, "not found"), in the playground's look.

Each has a link back to the playground, so a visitor who lands on one is never stuck.
"""
from __future__ import annotations

import html
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #fafafa; color: #1f2937;
       margin: 0; padding: 4rem 1rem; }
main { max-width: 24rem; margin: 0 auto; background: #fff; border: 1px solid #e5e7eb; border-radius: 12px;
       padding: 1.5rem 1.75rem; box-shadow: 0 1px 3px rgba(0, 0, 0, .06); }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
label { display: block; font-weight: 600; margin: .8rem 0 .3rem; }
input { display: block; box-sizing: border-box; width: 100%; padding: .55rem .7rem; border: 1px solid #d1d5db;
        border-radius: 8px; font-size: 1rem; }
button { margin-top: 1.2rem; width: 100%; padding: .65rem; border: 0; border-radius: 8px; background: #f97316;
         color: #fff; font-size: 1rem; font-weight: 600; cursor: pointer; }
button:hover { background: #ea580c; }
[role=alert] { color: #b91c1c; background: #fef2f2; border-radius: 8px; padding: .5rem .7rem; }
.back { display: inline-block; margin-top: 1.2rem; color: #c2410c; }
"""


def page(title: str, body: str, home: str = "/") -> str:
    """A whole HTML document: `title` as heading, `body` (trusted HTML) below it, a link back to `home`."""
    safe_title = html.escape(title)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gelato · {safe_title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body><main><h1>{safe_title}</h1>{body}
<a class="back" id="back-home" href="{html.escape(home, quote=True)}">&larr; Back to the playground</a>
</main></body></html>"""


def not_found_page(path: str) -> str:
    return page("Page not found", f"<p>There is no page at <code>{html.escape(path)}</code>.</p>")


def add_not_found_page(app: Any) -> None:
    """Browsers asking for an unknown URL get a small HTML page; programs keep the JSON answer."""
    from fastapi.responses import HTMLResponse

    @app.middleware("http")
    async def html_not_found(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if response.status_code == 404 and wants_page:
            return HTMLResponse(not_found_page(request.url.path), status_code=404)
        return response

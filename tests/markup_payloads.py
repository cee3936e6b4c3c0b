"""Hostile model text: every way a reply could try to run script or restyle the page.

Each payload, if it ran, leaves a trace a test can see: ``window.__pwned`` set, the
document's title changed, a request to the loopback ``beacon`` URL, or the page
restyled by ``<style>`` (the body turned red). The words ``INERT-MARKER`` must stay
readable as text.
"""

from __future__ import annotations

MARKER = "INERT-MARKER"
PWNED_TITLE = "pwned-by-model"
ESCAPES = "\x1b]52;c;cHduZWQ=\x07\x1b[2K\r\x08\u202eevil\u202c"


def hostile_markdown(beacon: str) -> str:
    """Markdown a steered model might reply with; ``beacon`` is a loopback URL to watch."""
    js = f"window.__pwned=1;document.title='{PWNED_TITLE}';fetch('{beacon}?js')"
    return "\n".join([
        f"# {MARKER} explanation",
        "",
        f"<script>{js}</script>",
        f'<img src="{beacon}?img" onerror="{js}">',
        f'<svg onload="{js}"><circle r="5"/></svg>',
        "<style>body, .jp-OutputArea { background: rgb(255, 0, 0) !important; }</style>",
        '<iframe src="javascript:parent.window.__pwned=1"></iframe>',
        f'<a href="javascript:{js}">click me</a> and <details open ontoggle="{js}">x</details>',
        "",
        f"[a javascript link](javascript:{js}) [a data link](data:text/html,<script>{js}</script>)",
        f"![an image]({beacon}?markdown-image) <{beacon}?autolink>",
        "",
        f"Plain words stay readable: {MARKER} <b>not bold</b> & so on.",
        f"Escape sequences: {ESCAPES}",
    ])

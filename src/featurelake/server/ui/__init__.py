"""The feature catalog in the browser, under `/ui` on the feature server.

Server-rendered pages (Jinja2 templates, inline SVG charts from the quality report, no CDN and
no build step): search, group pages, lineage and training sets. The page asks for an API key
once and keeps it in an HttpOnly session cookie (never in a URL); every page shows only what
that key may read, with the same rules as the JSON routes (`server.access`). Pages read the
registry through delta-rs and start no Spark session.
"""

from __future__ import annotations

from featurelake.server.ui.routes import UI_PREFIX, router

__all__ = ["UI_PREFIX", "router"]

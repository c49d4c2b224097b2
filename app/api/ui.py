"""The web interface: static ES modules and CSS from app/static, served under /ui/.

The files are listed once at import, so a request can only ever name one of them (no path from
the URL touches the file system). Every response carries a strict Content-Security-Policy: the
page runs only its own scripts and styles and talks only to this origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from core.errors import RagError

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the package: revalidate rather than serve a stale module.
    "Cache-Control": "no-cache",
}


def load_assets(folder: Path) -> dict[str, tuple[bytes, str]]:
    """name (relative, '/'-separated) -> (content, media type) of every servable file."""
    assets: dict[str, tuple[bytes, str]] = {}
    for path in sorted(folder.rglob("*")):
        media_type = MEDIA_TYPES.get(path.suffix)
        if path.is_file() and media_type is not None:
            assets[path.relative_to(folder).as_posix()] = (path.read_bytes(), media_type)
    return assets


ASSETS = load_assets(STATIC_DIR)


@router.api_route("/", methods=["GET", "HEAD"])
def root() -> RedirectResponse:
    """The web interface lives under /ui/."""
    return RedirectResponse("/ui/", status_code=307)


@router.api_route("/ui", methods=["GET", "HEAD"])
def ui_root() -> RedirectResponse:
    """Relative module paths need the trailing slash."""
    return RedirectResponse("/ui/", status_code=307)


# HEAD as well as GET: link checkers and monitors ask with HEAD (the server sends no body).
@router.api_route("/ui/{asset:path}", methods=["GET", "HEAD"])
def ui_asset(asset: str) -> Response:
    """One of the interface's files; the empty name is the page itself."""
    found = ASSETS.get(asset or "index.html")
    if found is None:
        raise RagError("asset_not_found", f"the web interface has no file {asset!r}")
    content, media_type = found
    return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

"""The verify page: what an employer sees after scanning a certificate's QR.

Server-rendered HTML from ``templates/verify.html`` with ``string.Template``
and ``html.escape`` (no template engine, no build step). Every value that
comes from the ledger or the URL is escaped before it reaches the page.

The page states one status in a banner (icon, colour *and* words, so it
reads without colour), the document's details in the chosen language and the
checkpoint the status is taken from. For a document that exists it offers a
file check: ``static/verify.js`` reads the salt from the URL fragment and
recomputes ``doc_id = SHA-256(DOC_ID || salt || SHA-256(file))`` with
WebCrypto on the reader's device. The page's Content-Security-Policy sets
``connect-src 'none'``, so the browser itself forbids the script from sending
the file (or anything else) anywhere.

The page works without JavaScript except for the file check; the language
link then drops the fragment, which only the file check needs.

Caching: the page itself is ``no-cache`` (a status changes with a
revocation, so every view asks the node), while its CSS and JS are linked
under a hash of their bytes and kept for a year (``VersionedStaticFiles``).
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from functools import cache, lru_cache
from pathlib import Path
from string import Template
from typing import Final
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from api.i18n import (
    LANGS,
    detail_text,
    doc_type_name,
    format_count,
    format_time,
    revoke_reason_name,
    shown_time,
    status_text,
    text,
)
from ledger.domains import DOC_ID
from ledger.errors import STATUSES

logger = logging.getLogger(__name__)

PACKAGE_DIR: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = PACKAGE_DIR / "static"
TEMPLATE_PATH: Final = PACKAGE_DIR / "templates" / "verify.html"
# Where the app mounts STATIC_DIR; the page links its CSS and JS from here.
STATIC_PREFIX: Final = "/static"
VERIFY_PREFIX: Final = "/v/"

# In the page itself, so the policy holds whichever app serves it.
# connect-src 'none' is what guarantees the file check makes no request.
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'none'; base-uri 'none'"
)
# For the app to send with the page; frame-ancestors only works as a header.
VERIFY_PAGE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": PAGE_CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A status can change at any time (a revocation): no cache, shared or
    # the browser's, may show a copy without asking the node first.
    "Cache-Control": "no-cache",
}
# A static file asked for under the hash of the bytes served: those bytes
# are what that URL names for ever (VersionedStaticFiles).
STATIC_IMMUTABLE: Final = "public, max-age=31536000, immutable"
# Any other request for a static file: use it only after asking again (a
# cheap 304 with the ETag), so no cache keeps one release's file under the
# URL of another's.
STATIC_REVALIDATE: Final = "no-cache"

DOC_ID_HEX: Final = re.compile(r"[0-9a-f]{64}")
# A malformed id comes from the URL; cap what we echo of it.
MAX_ECHO: Final = 128
# Statuses under which the ledger holds the document, so its file can be
# checked against the id.
FOUND: Final = frozenset(
    {"valid", "revoked", "superseded", "expired", "not_yet_valid", "stale"}
)
TONES: Final[Mapping[str, str]] = {
    "valid": "ok",
    "revoked": "bad",
    "superseded": "info",
    "expired": "warn",
    "not_yet_valid": "warn",
    "not_found": "bad",
    "tampered": "bad",
    "unknown_issuer": "bad",
    "stale": "warn",
    "malformed": "warn",
}
_SVG = (
    '<svg viewBox="0 0 24 24" width="28" height="28" fill="none" '
    'stroke="currentColor" stroke-width="2.5" stroke-linecap="round" '
    'stroke-linejoin="round" focusable="false">{}</svg>'
)
_ICON_PATHS: Final[Mapping[str, str]] = {
    "check": '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
    "cross": '<path d="M6.5 6.5l11 11M17.5 6.5l-11 11"/>',
    "arrow": '<path d="M4 12h15M13 6l6 6-6 6"/>',
    "clock": '<circle cx="12" cy="12" r="8.5"/><path d="M12 7.5V12l3 2"/>',
    "question": (
        '<path d="M9 9.2a3 3 0 1 1 4.2 2.8c-.8.4-1.2 1-1.2 1.8v.7"/>'
        '<path d="M12 18v.01"/>'
    ),
    "alert": '<path d="M12 7v6.5M12 17.5v.01"/>',
}
ICONS: Final[Mapping[str, str]] = {
    "valid": "check",
    "revoked": "cross",
    "superseded": "arrow",
    "expired": "clock",
    "not_yet_valid": "clock",
    "not_found": "question",
    "tampered": "cross",
    "unknown_issuer": "question",
    "stale": "clock",
    "malformed": "alert",
}


@dataclass(frozen=True, kw_only=True)
class VerifyView:
    """What the verify page shows about one document; times in Unix ms.

    ``status`` is one of ``ledger.errors.STATUSES``. For ``not_found`` and
    ``malformed`` only ``doc_id_hex`` (as it came in the URL), the checkpoint
    fields and ``detail`` are meaningful. ``issuer_names`` maps ``vi`` and
    ``en`` to the agency's names from the trust list. ``detail`` is an
    optional extra line: the verifier's English message (why a proof
    failed), shown in the page's language by ``i18n.detail_text``.
    """

    doc_id_hex: str
    status: str
    issuer_id: str | None = None
    issuer_names: Mapping[str, str] | None = None
    doc_type: str | None = None
    issued_at_ms: int | None = None
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    revoked_at_ms: int | None = None
    revoke_reason: str | None = None
    superseded_by_hex: str | None = None
    checkpoint_time_ms: int | None = None
    tree_size: int | None = None
    height: int | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


def render_verify_page(view: VerifyView, lang: str = "vi") -> str:
    """The complete HTML page for ``view`` in ``lang`` (``vi`` or ``en``).

    Raises ``ValueError`` for another language; use ``i18n.normalize_lang``
    on a query parameter first.
    """
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; expected one of {LANGS}")
    other = LANGS[1] if lang == LANGS[0] else LANGS[0]
    title, explanation = status_text(view.status, lang)
    page = _template().substitute(
        lang=lang,
        csp=PAGE_CSP,
        page_title=_e(f"{title} – {text('heading', lang)}"),
        css_url=_static_url("verify.css"),
        js_url=_static_url("verify.js"),
        skip=_e(text("skip", lang)),
        brand=_e(text("brand", lang)),
        lang_nav=_e(text("lang_nav", lang)),
        # Query only: the browser keeps the path; verify.js adds the fragment.
        switch_href=f"?lang={other}",
        other_lang=other,
        switch_text=_e(text("switch_to", lang)),
        heading=_e(text("heading", lang)),
        tone=TONES[view.status],
        status=view.status,
        icon=_SVG.format(_ICON_PATHS[ICONS[view.status]]),
        status_label=_e(text("status_label", lang)),
        status_title=_e(title),
        status_text=_e(explanation),
        details=_details(view, lang),
        file_check=_file_check(view, lang),
        as_of=_as_of(view, lang),
        footer=_e(text("footer", lang)),
    )
    logger.debug("verify page rendered status=%s lang=%s", view.status, lang)
    return page


def _e(value: str) -> str:
    return html.escape(value, quote=True)


@cache
def _template() -> Template:
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8"))


def _static_url(name: str) -> str:
    # A content hash in the URL lets the app cache static files for long
    # while a new release still reaches every phone at once.
    return f"{STATIC_PREFIX}/{name}?v={static_version(STATIC_DIR / name)}"


def static_version(path: PathLike) -> str:
    """The version a static file is linked under: a hash of its bytes.

    Cached by the file's identity and change time, so a file replaced on
    disk gets a new version without a restart, and the page and the file
    server (``VersionedStaticFiles``) always agree.
    """
    return _version_of(os.fspath(path), os.stat(path))


def _version_of(path: str, found: os.stat_result) -> str:
    # Not the modification time alone: a copy that keeps (or is given) the
    # old mtime and size must not keep the old version, which is served as
    # immutable for a year. The inode changes when a file is replaced and
    # the ctime when it is written or its times are set, by anyone.
    key = (found.st_ino, found.st_ctime_ns, found.st_mtime_ns, found.st_size)
    return _digest(path, key)


@lru_cache(maxsize=16)
def _digest(path: str, key: tuple[int, int, int, int]) -> str:
    # ``key`` only keys the cache: a changed file is read again.
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


class VersionedStaticFiles(StaticFiles):
    """The page's static files, with a cache policy by URL.

    ``?v=`` equal to the hash of the bytes served: ``STATIC_IMMUTABLE``.
    Anything else (no ``v``, or the ``v`` of another release, as a page
    from a node of another version behind the same name asks during an
    upgrade): ``STATIC_REVALIDATE``; a year's immutable copy of this file
    under that URL would be the wrong file there for a year.
    """

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        # A 304 too: it carries the Cache-Control a 200 would (RFC 9110 15.4.5).
        response = super().file_response(full_path, stat_result, scope, status_code)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        # Read once per version of the file; the page has mostly read it first.
        served = _version_of(os.fspath(full_path), stat_result)
        versioned = query.get("v") == [served]
        response.headers["Cache-Control"] = (
            STATIC_IMMUTABLE if versioned else STATIC_REVALIDATE
        )
        return response


def _row(label: str, value_html: str, row_id: str) -> str:
    return (
        f'<div class="row" id="row-{row_id}">'
        f"<dt>{_e(label)}</dt><dd>{value_html}</dd></div>"
    )


def _details(view: VerifyView, lang: str) -> str:
    rows = [
        _row(
            text("doc_id", lang),
            f'<code class="hex">{_e(view.doc_id_hex[:MAX_ECHO])}</code>',
            "doc-id",
        )
    ]
    if view.status in FOUND or view.status in ("tampered", "unknown_issuer"):
        rows.extend(_document_rows(view, lang))
    if view.detail:
        detail = detail_text(view.detail, view.status, lang)
        rows.append(_row(text("detail", lang), _e(detail), "detail"))
    body = "\n".join(rows)
    return (
        '<section class="card" aria-labelledby="details-title">\n'
        f'<h2 id="details-title">{_e(text("details", lang))}</h2>\n'
        f'<dl class="facts">\n{body}\n</dl>\n'
        f"{_superseded_note(view, lang)}</section>"
    )


def _document_rows(view: VerifyView, lang: str) -> list[str]:
    rows = []
    issuer = _issuer_name(view, lang)
    if issuer is not None:
        rows.append(_row(text("issuer", lang), _e(issuer), "issuer"))
    if view.doc_type is not None:
        rows.append(
            _row(
                text("doc_type", lang),
                _e(doc_type_name(view.doc_type, lang)),
                "doc-type",
            )
        )
    if view.issued_at_ms is not None:
        rows.append(
            _row(text("issued_at", lang), _time(view.issued_at_ms, lang), "issued-at")
        )
    if view.valid_from_ms is not None:
        rows.append(
            _row(
                text("valid_from", lang), _time(view.valid_from_ms, lang), "valid-from"
            )
        )
    if view.status in FOUND:
        until = (
            _e(text("no_expiry", lang))
            if view.valid_until_ms is None
            else _time(view.valid_until_ms, lang)
        )
        rows.append(_row(text("valid_until", lang), until, "valid-until"))
    if view.revoked_at_ms is not None:
        rows.append(
            _row(
                text("revoked_at", lang), _time(view.revoked_at_ms, lang), "revoked-at"
            )
        )
    if view.revoke_reason is not None:
        reason = revoke_reason_name(view.revoke_reason, lang)
        rows.append(_row(text("revoke_reason", lang), _e(reason), "revoke-reason"))
    if view.superseded_by_hex is not None:
        rows.append(
            _row(
                text("superseded_by", lang), _new_doc_link(view, lang), "superseded-by"
            )
        )
    return rows


def _issuer_name(view: VerifyView, lang: str) -> str | None:
    names = view.issuer_names or {}
    # The chosen language first, then any name we have, then the bare id.
    for candidate in (names.get(lang), *names.values(), view.issuer_id):
        if candidate:
            return candidate
    return None


def _time(ms: int, lang: str) -> str:
    shown = shown_time(ms)
    if shown is None:
        # Past the year 9999: words and the raw value, and no <time>, whose
        # datetime attribute would need a date datetime cannot compute.
        return _e(format_time(ms, lang))
    iso = shown.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return f'<time datetime="{iso}">{_e(format_time(ms, lang))}</time>'


def _new_doc_link(view: VerifyView, lang: str) -> str:
    new = view.superseded_by_hex or ""
    if not DOC_ID_HEX.fullmatch(new):
        return f'<code class="hex">{_e(new[:MAX_ECHO])}</code>'
    query = "" if lang == LANGS[0] else f"?lang={lang}"
    href = f"{VERIFY_PREFIX}{new}{query}"
    return f'<a id="superseded-link" href="{href}"><code class="hex">{new}</code></a>'


def _superseded_note(view: VerifyView, lang: str) -> str:
    if view.superseded_by_hex is None:
        return ""
    note = _e(text("superseded_note", lang))
    return f'<p class="note" id="superseded-note">{note}</p>\n'


def _file_check(view: VerifyView, lang: str) -> str:
    if view.status not in FOUND or not DOC_ID_HEX.fullmatch(view.doc_id_hex):
        return ""
    data = {
        "doc-id": view.doc_id_hex,
        "domain": DOC_ID.decode("ascii"),
        "msg-checking": text("file_checking", lang),
        "msg-match": text("file_match", lang),
        "msg-mismatch": text("file_mismatch", lang),
        "msg-no-crypto": text("no_crypto", lang),
        "msg-read-error": text("read_error", lang),
        "msg-too-large": text("too_large", lang),
    }
    attrs = " ".join(f'data-{name}="{_e(value)}"' for name, value in data.items())
    # The input starts disabled; verify.js enables it once it has a salt and
    # WebCrypto, so without either nothing pretends to work. The browser
    # writes a file input's button and "no file chosen" in its own language,
    # not the page's: the input is hidden from sight (still focusable and
    # labelled), its label, after it, is the button, and verify.js shows
    # the chosen file's name.
    return (
        f'<section id="file-check" class="card" aria-labelledby="file-title" {attrs}>\n'
        f'<h2 id="file-title">{_e(text("file_title", lang))}</h2>\n'
        f"<p>{_e(text('file_intro', lang))}</p>\n"
        f'<p id="salt-missing" class="notice" hidden>{_e(text("no_salt", lang))}</p>\n'
        '<div id="drop-zone" class="drop">\n'
        '<input id="file-input" class="file" type="file" '
        'accept="application/pdf,.pdf" disabled>\n'
        f'<label for="file-input" class="button">{_e(text("file_label", lang))}'
        "</label>\n"
        '<p id="file-name" class="file-name" hidden></p>\n'
        f'<p class="hint">{_e(text("file_drop", lang))}</p>\n'
        "</div>\n"
        '<p id="file-result" class="result" role="status" aria-live="polite"></p>\n'
        f'<noscript><p class="notice">{_e(text("noscript", lang))}</p></noscript>\n'
        "</section>"
    )


def _as_of(view: VerifyView, lang: str) -> str:
    parts = []
    if view.checkpoint_time_ms is not None:
        when = _time(view.checkpoint_time_ms, lang)
        # The placeholder is filled after escaping: `when` is markup.
        parts.append(_e(text("as_of", lang, time="\x00")).replace("\x00", when))
    if view.height is not None and view.tree_size is not None:
        position = text(
            "ledger_position",
            lang,
            height=format_count(view.height, lang),
            size=format_count(view.tree_size, lang),
        )
        parts.append(_e(position))
    if not parts:
        return ""
    return f'<p class="as-of" id="as-of">{" ".join(parts)}</p>'

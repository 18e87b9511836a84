"""Vietnamese and English text of the verify page.

Vietnamese is the default: the page is read mostly by employers and clerks in
the province. English is one click away for foreign employers and embassies.
Every user-facing string lives here, in both languages, so a missing
translation is a test failure rather than a blank on a printed screen.

Times are shown in Vietnam time with the zone written after them:
``05/03/2025 14:30 UTC+7`` in Vietnamese, ``5 March 2025, 14:30 UTC+7`` in
English (``format_time`` says why). Vietnam has kept UTC+7 with no daylight
saving since 1975, so a fixed offset gives the same answer as
``Asia/Ho_Chi_Minh`` without depending on the host's tz database (slim
containers often have none).

The detail line under a failed check is the verifier's own English message
(``ledger.verify`` and what it calls, or the store's error for ``stale``).
``detail_text`` says it in Vietnamese on a Vietnamese page: a known message
in words, its variable parts (ids, numbers, an exception's own text) kept as
they came; any other behind a Vietnamese lead-in.

The ledger takes any u64 millisecond time, up to the year 584 million;
``datetime`` stops at 31/12/9999. A time past that is shown in words with its
raw value rather than failing the page (``format_time``, ``shown_time``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

LANGS: Final = ("vi", "en")
DEFAULT_LANG: Final = "vi"
# Written after every time shown, in both languages.
ZONE_LABEL: Final = "UTC+7"
VIETNAM_TZ: Final = timezone(timedelta(hours=7), ZONE_LABEL)
# Spelt out here rather than strftime's %B, which follows the process's
# locale: a host with another LC_TIME would print its own month names.
MONTHS_EN: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The last millisecond datetime can hold in Vietnam time (31/12/9999 23:59:59
# UTC+7); in UTC that moment is 7 hours earlier, so it fits there too.
_LAST_SHOWN: Final = datetime.max.replace(tzinfo=VIETNAM_TZ)
MAX_SHOWN_MS: Final = (_LAST_SHOWN - _EPOCH) // timedelta(milliseconds=1)

# (vi, en) for each message; ``{name}`` placeholders are filled by ``text``.
MESSAGES: Final[Mapping[str, tuple[str, str]]] = {
    "brand": ("Agency Ledger · Xác thực văn bản", "Agency Ledger · Document check"),
    "heading": ("Kiểm tra văn bản", "Document verification"),
    "skip": ("Bỏ qua, đến nội dung chính", "Skip to main content"),
    "lang_nav": ("Ngôn ngữ", "Language"),
    "switch_to": ("English", "Tiếng Việt"),
    "status_label": ("Trạng thái văn bản", "Document status"),
    "details": ("Thông tin văn bản", "Document details"),
    "doc_id": ("Mã văn bản", "Document ID"),
    "issuer": ("Cơ quan cấp", "Issued by"),
    "doc_type": ("Loại văn bản", "Document type"),
    "issued_at": ("Ngày cấp", "Issued on"),
    "valid_from": ("Có hiệu lực từ", "Valid from"),
    "valid_until": ("Có hiệu lực đến", "Valid until"),
    "no_expiry": ("Không thời hạn", "No expiry date"),
    "revoked_at": ("Ngày thu hồi", "Revoked on"),
    "revoke_reason": ("Lý do thu hồi", "Reason for revocation"),
    "superseded_by": ("Văn bản thay thế", "Replaced by"),
    "superseded_note": (
        "Liên kết trên cho biết trạng thái của văn bản mới, nhưng không kiểm tra "
        "được tệp của văn bản đó: mã bí mật (salt) của văn bản mới chỉ có trong "
        "mã QR in trên văn bản mới.",
        "The link above shows the new document's status, but cannot check its "
        "file: the new document's secret salt is only in the QR code printed on "
        "the new document.",
    ),
    "detail": ("Chi tiết", "Details"),
    # A time datetime cannot show; the raw value lets a reader check it.
    "beyond_year_9999": (
        "sau năm 9999 ({ms} mili giây kể từ 01/01/1970 UTC)",
        "after the year 9999 ({ms} milliseconds since 1 January 1970 UTC)",
    ),
    # {time} ends with its zone (UTC+7); the words say which zone that is.
    "as_of": (
        "Trạng thái tính đến {time} (giờ Việt Nam).",
        "Status as of {time} (Vietnam time).",
    ),
    "ledger_position": (
        "Sổ cái: khối {height}, {size} bản ghi.",
        "Ledger: block {height}, {size} entries.",
    ),
    "file_title": ("Kiểm tra tệp PDF", "Check the PDF file"),
    "file_intro": (
        "Chọn hoặc kéo thả tệp PDF của văn bản để biết đó có đúng là tệp đã được "
        "ghi nhận hay không. Tệp được kiểm tra ngay trên thiết bị của bạn và "
        "không được gửi đi đâu.",
        "Choose or drop the document's PDF file to find out whether it is exactly "
        "the file that was recorded. The file is checked on your device and is "
        "never sent anywhere.",
    ),
    "file_label": ("Chọn tệp PDF", "Choose the PDF file"),
    "file_drop": (
        "hoặc kéo thả tệp vào khung này",
        "or drop the file into this box",
    ),
    "file_checking": ("Đang kiểm tra tệp…", "Checking the file…"),
    "file_match": (
        "Tệp khớp: đây đúng là tệp đã được ghi nhận cho mã văn bản này.",
        "File matches: this is exactly the file recorded for this document ID.",
    ),
    "file_mismatch": (
        "Tệp KHÔNG khớp (đã bị sửa đổi hoặc là văn bản khác). Không tin cậy tệp này.",
        "File does NOT match (tampered, or a different document). "
        "Do not rely on this file.",
    ),
    "no_salt": (
        "Liên kết QR không đầy đủ: thiếu mã bí mật sau dấu # nên không thể kiểm "
        "tra tệp. Hãy quét lại mã QR in trên văn bản.",
        "The QR link is incomplete: the secret code after the # is missing, so "
        "the file cannot be checked. Scan the QR code printed on the document "
        "again.",
    ),
    "no_crypto": (
        "Trình duyệt này không kiểm tra được tệp (cần trình duyệt mới và kết nối "
        "an toàn https).",
        "This browser cannot check files (a recent browser and a secure https "
        "connection are needed).",
    ),
    "read_error": ("Không đọc được tệp.", "The file could not be read."),
    "too_large": (
        "Tệp quá lớn để kiểm tra trong trình duyệt (tối đa 1 GB). Hãy dùng lệnh "
        "ledger verify.",
        "The file is too large to check in the browser (1 GB at most). Use the "
        "ledger verify command.",
    ),
    "noscript": (
        "Cần bật JavaScript để kiểm tra tệp. Trạng thái ở trên không cần JavaScript.",
        "Checking a file needs JavaScript. The status above does not.",
    ),
    "footer": (
        "Trang này chỉ hiển thị những gì sổ cái ghi nhận. Sổ cái không lưu nội "
        "dung văn bản hay thông tin cá nhân.",
        "This page shows only what the ledger records. The ledger holds no "
        "document content and no personal data.",
    ),
}

# Per status: (title, explanation) in (vi, en).
STATUS_TEXT: Final[Mapping[str, tuple[tuple[str, str], tuple[str, str]]]] = {
    "valid": (
        ("Hợp lệ", "Văn bản do cơ quan cấp ghi nhận trên sổ cái và còn hiệu lực."),
        (
            "Valid",
            "The issuing agency recorded this document on the ledger and it is "
            "in force.",
        ),
    ),
    "revoked": (
        (
            "Đã bị thu hồi",
            "Cơ quan cấp đã thu hồi văn bản này; văn bản không còn giá trị.",
        ),
        ("Revoked", "The issuing agency revoked this document; it is no longer valid."),
    ),
    "superseded": (
        (
            "Đã được thay thế",
            "Văn bản này đã được sửa đổi và cấp lại. Hãy dùng văn bản mới.",
        ),
        ("Superseded", "This document was amended and reissued. Use the new document."),
    ),
    "expired": (
        ("Hết hiệu lực", "Văn bản này đã hết thời hạn hiệu lực."),
        ("Expired", "This document's period of validity has ended."),
    ),
    "not_yet_valid": (
        ("Chưa có hiệu lực", "Văn bản này chưa đến ngày có hiệu lực."),
        ("Not yet valid", "This document does not take effect until a later date."),
    ),
    "not_found": (
        (
            "Không tìm thấy",
            "Không có văn bản nào mang mã này trên sổ cái. Văn bản "
            "có thể là giả, hoặc mã QR bị sai.",
        ),
        (
            "Not found",
            "No document with this ID is on the ledger. The document "
            "may be forged, or the QR code may be wrong.",
        ),
    ),
    "tampered": (
        (
            "Dữ liệu bị sửa đổi",
            "Bằng chứng không khớp với dữ liệu đã ghi nhận. Không tin cậy văn bản này.",
        ),
        (
            "Tampered",
            "The proof does not match what was recorded. Do not rely on this document.",
        ),
    ),
    "unknown_issuer": (
        (
            "Cơ quan cấp không xác định",
            "Văn bản được ký bởi một cơ quan không có trong danh sách tin cậy.",
        ),
        (
            "Unknown issuer",
            "The document was signed by an agency that is not on the trust list.",
        ),
    ),
    "stale": (
        (
            "Chưa cập nhật",
            "Dữ liệu sổ cái mới nhất đã quá cũ nên trạng thái có "
            "thể đã thay đổi. Hãy thử lại sau.",
        ),
        (
            "Out of date",
            "The latest ledger data is too old, so the status may have "
            "changed. Try again later.",
        ),
    ),
    "malformed": (
        ("Mã không hợp lệ", "Mã văn bản hoặc dữ liệu không đúng định dạng."),
        ("Malformed", "The document ID or the data is not in the expected format."),
    ),
}

DOC_TYPE_NAMES: Final[Mapping[str, tuple[str, str]]] = {
    "criminal_record": ("Phiếu lý lịch tư pháp", "Criminal record certificate"),
    "birth_registration": ("Giấy khai sinh", "Birth certificate"),
    "marriage_registration": ("Giấy chứng nhận kết hôn", "Marriage certificate"),
    "land_use": ("Giấy chứng nhận quyền sử dụng đất", "Land use right certificate"),
    "health_record": ("Hồ sơ sức khỏe", "Health record"),
}

REVOKE_REASON_NAMES: Final[Mapping[str, tuple[str, str]]] = {
    "issued_in_error": ("Cấp nhầm", "Issued in error"),
    "withdrawn": ("Cơ quan cấp rút lại", "Withdrawn by the issuer"),
    "court_order": ("Theo quyết định của tòa án", "By court order"),
    "holder_request": ("Theo yêu cầu của người được cấp", "At the holder's request"),
    "key_compromise": (
        "Khóa ký của cơ quan cấp bị lộ",
        "Issuer's signing key compromised",
    ),
    "other": ("Lý do khác", "Other reason"),
}


def normalize_lang(value: str | None) -> str:
    """``value`` if it is a supported language, else the default (``vi``).

    For a query parameter: an unknown ``?lang=`` shows the page, not an error.
    """
    if value is not None and value.lower() in LANGS:
        return value.lower()
    return DEFAULT_LANG


def _index(lang: str) -> int:
    try:
        return LANGS.index(lang)
    except ValueError:
        raise ValueError(
            f"unsupported language {lang!r}; expected one of {LANGS}"
        ) from None


def text(key: str, lang: str, **values: str) -> str:
    """The message ``key`` in ``lang`` with ``{name}`` placeholders filled.

    Raises ``KeyError`` for an unknown key, ``ValueError`` for a language
    other than ``LANGS``.
    """
    message = MESSAGES[key][_index(lang)]
    return message.format(**values) if values else message


def status_text(status: str, lang: str) -> tuple[str, str]:
    """(title, explanation) of a verifier status in ``lang``."""
    return STATUS_TEXT[status][_index(lang)]


def doc_type_name(doc_type: str, lang: str) -> str:
    """The document type's name in ``lang``; an unknown type shows its code."""
    names = DOC_TYPE_NAMES.get(doc_type)
    return doc_type if names is None else names[_index(lang)]


def revoke_reason_name(reason: str, lang: str) -> str:
    """The revocation reason in ``lang``; an unknown code shows itself."""
    names = REVOKE_REASON_NAMES.get(reason)
    return reason if names is None else names[_index(lang)]


# The verifier's English messages a verify page can show (ledger.verify,
# ledger.checkpoint, ledger.note, ledger.merkle, ledger.stateproof,
# ledger.keys; ledger.bundle and the store for ``stale``), each matched as a
# whole, and their Vietnamese. Named groups carry the variable parts into
# the Vietnamese unchanged, except that a group whose name ends in ``_n`` is
# an integer, written with the Vietnamese thousands separator, one ending in
# ``_ms`` a duration in milliseconds, written in days, hours and minutes
# (``_duration``), and ``raw``
# is an exception's own text, left in English. A message not listed here
# gets its status's lead-in (DETAIL_LEADS) before it.
DETAIL_TEXT: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern), vi)
    for pattern, vi in (
        # The checkpoint: a quorum of the agencies' node keys, this ledger.
        (
            r"quorum not met: (?P<got_n>\d+) of (?P<need_n>\d+) required distinct "
            r"keys signed \((?P<lines_n>\d+) signature lines\)",
            "Điểm kiểm tra chưa đủ chữ ký: mới có {got_n} trong số {need_n} khóa "
            "bắt buộc đã ký ({lines_n} dòng chữ ký).",
        ),
        (
            r"signature by (?P<signer>\S+) fails",
            "Chữ ký của {signer} trên điểm kiểm tra không hợp lệ.",
        ),
        (
            r"checkpoint of origin (?P<got>.+), expected (?P<want>.+)",
            "Điểm kiểm tra thuộc sổ cái {got}, trong khi cần sổ cái {want}.",
        ),
        (
            r"bundle of log (?P<got>.+), trust list of (?P<want>.+)",
            "Bằng chứng thuộc sổ cái {got}, còn danh sách tin cậy là của sổ cái "
            "{want}.",
        ),
        (r"bad checkpoint: (?P<raw>.*)", "Điểm kiểm tra không hợp lệ: {raw}"),
        (
            r"checkpoint is (?P<age_ms>\d+) ms old, limit (?P<limit_ms>\d+)",
            "Điểm kiểm tra mới nhất đã được lập cách đây {age_ms}, quá giới hạn "
            "{limit_ms}.",
        ),
        # The leaves: in the log, signed by their issuer, about this document.
        (
            r"inclusion proof: expected (?P<want>[0-9a-f]+), "
            r"computed (?P<got>[0-9a-f]+)",
            "Bằng chứng ghi nhận không dẫn tới mã băm gốc của điểm kiểm tra: cần "
            "{want}, tính được {got}.",
        ),
        (
            "inclusion proof longer than the tree is high",
            "Bằng chứng ghi nhận dài hơn chiều cao của cây Merkle.",
        ),
        (
            "inclusion proof shorter than the tree is high",
            "Bằng chứng ghi nhận ngắn hơn chiều cao của cây Merkle.",
        ),
        (
            r"proof has (?P<got_n>\d+) hashes, want (?P<want_n>\d+)",
            "Bằng chứng có {got_n} mã băm, trong khi cần {want_n}.",
        ),
        (
            r"leaf index (?P<leaf_n>\d+) outside tree of size (?P<size_n>\d+)",
            "Bản ghi số {leaf_n} nằm ngoài sổ cái chỉ có {size_n} bản ghi.",
        ),
        (
            r"leaf (?P<leaf_n>\d+) does not decode: (?P<raw>.*)",
            "Bản ghi số {leaf_n} không giải mã được: {raw}",
        ),
        (
            r"leaf issued by (?P<issuer>\S+), signed by (?P<signer>\S+)",
            "Bản ghi ghi cơ quan cấp là {issuer} nhưng lại do {signer} ký.",
        ),
        (
            r"agency (?P<agency>\S+) is not in the trust list",
            "Cơ quan {agency} không có trong danh sách tin cậy.",
        ),
        (
            r"key (?P<key>[0-9a-f]+) is not a key of (?P<agency>\S+)",
            "Khóa {key} không phải là khóa ký của cơ quan {agency}.",
        ),
        (
            r"batch of (?P<size_n>\d+) entries",
            "Lô ký có số bản ghi không hợp lệ: {size_n}.",
        ),
        # Signature lines of the checkpoint say "signature by ... fails", so
        # a bare Ed25519 failure is the issuer's signature of a leaf's batch.
        (
            "Ed25519 signature does not verify",
            "Chữ ký Ed25519 của cơ quan cấp trên bản ghi không hợp lệ.",
        ),
        (
            r"public key of (?P<size_n>\d+) bytes",
            "Khóa công khai có độ dài sai: {size_n} byte.",
        ),
        (
            r"signature of (?P<size_n>\d+) bytes",
            "Chữ ký có độ dài sai: {size_n} byte.",
        ),
        (
            "the anchor leaf does not anchor this document",
            "Bản ghi gốc trong bằng chứng không phải là bản ghi ghi nhận văn bản này.",
        ),
        (
            "changes without an anchor",
            "Bằng chứng có bản ghi thay đổi nhưng không có bản ghi gốc của văn bản.",
        ),
        (
            r"change leaf (?P<leaf_n>\d+) out of order",
            "Bản ghi thay đổi số {leaf_n} không đúng thứ tự.",
        ),
        (
            r"leaf (?P<leaf_n>\d+) does not change this document",
            "Bản ghi số {leaf_n} không phải là thay đổi của văn bản này.",
        ),
        (
            r"the changes cannot follow one another: (?P<raw>.*)",
            "Các thay đổi của văn bản không thể nối tiếp nhau theo quy tắc của sổ "
            "cái: {raw}",
        ),
        # The state: the proven status record, and the one the leaves make.
        (
            r"state root: expected (?P<want>[0-9a-f]+), computed (?P<got>[0-9a-f]+)",
            "Bằng chứng trạng thái không dẫn tới gốc trạng thái của điểm kiểm tra: "
            "cần {want}, tính được {got}.",
        ),
        (
            "the state proof is for another key",
            "Bằng chứng trạng thái là của một mã khác, không phải của văn bản này.",
        ),
        (
            "state proof kind contradicts the claim",
            "Loại bằng chứng trạng thái mâu thuẫn với điều nó chứng minh.",
        ),
        (
            "other_leaf is the key's own leaf",
            "Bằng chứng vắng mặt (other_leaf) lại trỏ tới chính bản ghi của mã này.",
        ),
        (
            "other_leaf is off the key's path",
            "Bằng chứng vắng mặt (other_leaf) nằm ngoài đường dẫn của mã này.",
        ),
        (
            r"state proof: (?P<raw>.*)",
            "Bằng chứng trạng thái sai định dạng: {raw}",
        ),
        (
            r"the proven status record does not decode: (?P<raw>.*)",
            "Bản ghi trạng thái được chứng minh không giải mã được: {raw}",
        ),
        (
            "the state and the log disagree on whether it exists",
            "Bằng chứng trạng thái và sổ cái mâu thuẫn nhau về việc văn bản có tồn "
            "tại hay không.",
        ),
        (
            "the proven status is not the one its leaves produce",
            "Trạng thái được chứng minh khác với trạng thái suy ra từ các bản ghi "
            "của văn bản.",
        ),
        (
            r"bundle version (?P<got>\d+), expected (?P<want>\d+)",
            "Bằng chứng có phiên bản {got}, trong khi cần phiên bản {want}.",
        ),
        # The store (shown as stale): nothing final yet, or a race with pruning.
        (
            "no checkpoint is final yet",
            "Chưa có điểm kiểm tra nào được đủ số cơ quan ký xác nhận.",
        ),
        (
            r"no undo record of block (?P<height_n>\d+)",
            "Điểm kiểm tra của khối {height_n} vừa được thay bằng điểm kiểm tra "
            "mới hơn. Hãy tải lại trang.",
        ),
    )
)
# Before a message DETAIL_TEXT does not know, by status; {raw} is the
# message itself. Under ``stale`` such a message is the store's error.
DETAIL_LEADS: Final[Mapping[str, str]] = {
    "tampered": "Bằng chứng không khớp. Chi tiết kỹ thuật (tiếng Anh): {raw}",
    "unknown_issuer": (
        "Không xác minh được cơ quan cấp. Chi tiết kỹ thuật (tiếng Anh): {raw}"
    ),
    "stale": (
        "Máy chủ không đọc được dữ liệu sổ cái. Chi tiết kỹ thuật (tiếng Anh): {raw}"
    ),
    "malformed": ("Dữ liệu không đúng định dạng. Chi tiết kỹ thuật (tiếng Anh): {raw}"),
}
DETAIL_LEAD_OTHER: Final = "Chi tiết kỹ thuật (tiếng Anh): {raw}"


def shown_time(ms: int) -> datetime | None:
    """Unix milliseconds (whole seconds of them) as a Vietnam-time datetime,
    or None after the year 9999, which ``datetime`` cannot hold."""
    if ms > MAX_SHOWN_MS:
        return None
    # Whole seconds: the display shows minutes, and no float enters the math.
    # Epoch plus a timedelta rather than fromtimestamp, which depends on the
    # platform's time_t and raises OSError or OverflowError instead.
    return (_EPOCH + timedelta(seconds=ms // 1000)).astimezone(VIETNAM_TZ)


def format_time(ms: int, lang: str = DEFAULT_LANG) -> str:
    """Unix milliseconds in Vietnam time, its zone written after it: in
    Vietnamese ``05/03/2025 14:30 UTC+7``, in English ``5 March 2025, 14:30
    UTC+7``; a time after the year 9999 in words of ``lang``, with its raw
    value.

    Vietnamese readers write day/month/year. An English reader may read
    05/03 as the 3rd of May (American order), so English names the month:
    no reading order makes "5 March" another day. ISO 8601 (2025-03-05) is
    as unambiguous but reads as a code to a clerk checking a certificate.
    """
    shown = shown_time(ms)
    if shown is None:
        return text("beyond_year_9999", lang, ms=format_count(ms, lang))
    clock = f"{shown.hour:02d}:{shown.minute:02d} {ZONE_LABEL}"
    if _index(lang) == 0:
        return f"{shown.day:02d}/{shown.month:02d}/{shown.year} {clock}"
    return f"{shown.day} {MONTHS_EN[shown.month - 1]} {shown.year}, {clock}"


def format_count(n: int, lang: str) -> str:
    """An integer with the language's thousands separator (10.000 / 10,000)."""
    grouped = f"{n:,}"
    return grouped.replace(",", ".") if _index(lang) == 0 else grouped


def detail_text(detail: str, status: str, lang: str) -> str:
    """The verify page's detail line for ``detail``, the verifier's English
    message behind ``status``, in ``lang``.

    English shows the message as the verifier wrote it (the words ``ledger
    verify`` prints, which a support desk can search for). Vietnamese says
    a message of ``DETAIL_TEXT`` in Vietnamese and puts the status's lead-in
    (``DETAIL_LEADS``) before any other.
    """
    if _index(lang) != 0:
        return detail
    for pattern, vi in DETAIL_TEXT:
        found = pattern.fullmatch(detail)
        if found is not None:
            values = {
                name: _field(name, value, lang)
                for name, value in found.groupdict().items()
            }
            return vi.format(**values)
    return DETAIL_LEADS.get(status, DETAIL_LEAD_OTHER).format(raw=detail)


def _count(digits: str, lang: str) -> str:
    # A u64 has 20 digits; anything longer is shown as it came (int() of
    # thousands of digits would raise).
    return digits if len(digits) > 20 else format_count(int(digits), lang)


def _field(name: str, value: str, lang: str) -> str:
    if name.endswith("_n"):
        return _count(value, lang)
    if name.endswith("_ms") and len(value) <= 20:
        return _duration(int(value))
    return value


# Vietnamese units, largest first, with their length in seconds.
_UNITS: Final = (("ngày", 86_400), ("giờ", 3_600), ("phút", 60), ("giây", 1))


def _duration(ms: int) -> str:
    """``ms`` as its two largest non-zero Vietnamese units ("1 ngày 1 giờ");
    under a second, in milliseconds. A reader weighs how stale a checkpoint
    is in hours, not in millions of milliseconds."""
    if ms < 1_000:
        return f"{ms} ms"
    left, parts = ms // 1_000, []
    for unit, seconds in _UNITS:
        count, left = divmod(left, seconds)
        if count:
            parts.append(f"{format_count(count, 'vi')} {unit}")
    return " ".join(parts[:2])

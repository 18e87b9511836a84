"""Documents on the agency's side: hashing, salting, receipts and QR files.

Everything here runs on the issuing agency's machine: a document's bytes
are read and hashed here and never sent anywhere. The salt drawn for each
document is what makes its id unguessable; it is kept in the holder's
receipt and in the QR code, and nowhere on the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger.entries import Anchor, derive_doc_id
from ledger.errors import ConfigError, LedgerError

SALT_SIZE: Final = 16
RECEIPT_SUFFIX: Final = ".receipt.json"
QR_SUFFIX: Final = ".qr.png"
# Below this many QR images, starting worker processes costs more than it saves.
PARALLEL_QR_MIN: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorReceipt:
    """What the holder of an anchored document keeps: the receipt file.

    The salt is the secret that makes the document findable; whoever holds
    the receipt (or the QR code) can verify, nobody else can test a guess.
    """

    doc_id: bytes
    salt: bytes
    file_sha256: bytes
    file_name: str
    doc_type: str
    issuer: str
    leaf_index: int
    block_height: int
    verify_url: str | None = None

    def to_json(self) -> dict[str, object]:
        """The receipt file's fields (docs/internals.md), hashes in hex."""
        return {
            "doc_id": self.doc_id.hex(),
            "salt": self.salt.hex(),
            "file_sha256": self.file_sha256.hex(),
            "file_name": self.file_name,
            "doc_type": self.doc_type,
            "issuer": self.issuer,
            "leaf_index": self.leaf_index,
            "block_height": self.block_height,
            "verify_url": self.verify_url,
        }

    @classmethod
    def from_json(cls, obj: object) -> AnchorReceipt:
        """Parse a receipt file; ConfigError naming the bad field."""
        if not isinstance(obj, dict):
            raise ConfigError("receipt: expected a JSON object")
        values: dict[str, object] = {}
        for name, parse in _RECEIPT_FIELDS.items():
            if name not in obj:
                raise ConfigError(f"receipt: no {name!r}")
            try:
                values[name] = parse(obj[name])
            except ValueError as exc:
                raise ConfigError(f"receipt: bad {name!r}: {exc}") from None
        receipt = cls(**values, verify_url=obj.get("verify_url"))  # type: ignore[arg-type]
        if derive_doc_id(receipt.salt, receipt.file_sha256) != receipt.doc_id:
            raise ConfigError("receipt: doc_id does not match salt and file hash")
        return receipt


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedDocument:
    """A document hashed and salted locally, with its anchor entry."""

    path: Path
    file_sha256: bytes
    salt: bytes
    anchor: Anchor

    @property
    def doc_id(self) -> bytes:
        return self.anchor.doc_id


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def unhex(value: object, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected hex, got {type(value).__name__}")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes of hex, got {len(raw)}")
    return raw


# A receipt's fields and how each is read (ValueError when it is not).
_RECEIPT_FIELDS: Final[dict[str, Callable[[object], object]]] = {
    "doc_id": lambda v: unhex(v, 32),
    "salt": lambda v: unhex(v, SALT_SIZE),
    "file_sha256": lambda v: unhex(v, 32),
    "file_name": _text,
    "doc_type": _text,
    "issuer": _text,
    "leaf_index": _int,
    "block_height": _int,
}


def as_doc_id(value: bytes | str) -> bytes:
    """A doc id given as 32 bytes or 64 hex digits; ValueError otherwise."""
    raw = unhex(value.strip().lower(), 32) if isinstance(value, str) else value
    if len(raw) != 32:
        raise ValueError("a doc id is 32 bytes")
    return raw


def hash_file(path: Path) -> bytes:
    """SHA-256 of a file's bytes, read in chunks; ConfigError if unreadable."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").digest()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def prepare_documents(
    paths: Sequence[Path],
    *,
    agency: str,
    doc_type: str,
    issued_at: int | None = None,
    valid_from: int | None = None,
    valid_until: int | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> list[PreparedDocument]:
    """Hash each file, draw a fresh 16-byte salt for it, build its anchor.

    A fresh salt per document, even for two identical files: each issued
    copy is its own document, and a shared salt would link them.
    """
    issued = now_ms() if issued_at is None else issued_at
    out: list[PreparedDocument] = []
    for path in paths:
        file_hash = hash_file(path)
        salt = random_bytes(SALT_SIZE)
        anchor = Anchor(
            issuer=agency,
            doc_id=derive_doc_id(salt, file_hash),
            doc_type=doc_type,
            issued_at=issued,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        out.append(
            PreparedDocument(path=path, file_sha256=file_hash, salt=salt, anchor=anchor)
        )
    return out


def collect_files(items: Sequence[Path]) -> list[Path]:
    """Files given, and the files under folders given (sorted), each once.

    Hidden files, files in hidden folders (``.git/``, say) and our own
    outputs (receipts, QR images) are skipped, so anchoring a folder twice
    never anchors a receipt. A file named twice (itself, and inside a
    folder also given) is anchored once.
    """
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                inside = path.relative_to(item).parts
                if not path.is_file() or any(p.startswith(".") for p in inside):
                    continue
                if path.name.endswith((RECEIPT_SUFFIX, QR_SUFFIX)):
                    continue
                files.append(path)
        elif item.is_file():
            files.append(item)
        else:
            raise ConfigError(f"no such file or folder: {item}")
    seen: set[Path] = set()
    unique: list[Path] = []
    for path in files:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            unique.append(path)
    if not unique:
        raise ConfigError("no files to anchor")
    return unique


def output_names(
    receipts: Sequence[AnchorReceipt], out_dir: Path | None = None
) -> list[str]:
    """A distinct base name per receipt: the file's name (``cert.pdf`` gives
    ``cert.pdf.receipt.json``), numbered when two files share a name or a
    receipt of that name is already in ``out_dir``: a receipt holds the only
    copy of its document's salt, so it is never overwritten."""
    names: list[str] = []
    seen: set[str] = set()

    def taken(name: str) -> bool:
        if name in seen:
            return True
        return out_dir is not None and (out_dir / f"{name}{RECEIPT_SUFFIX}").exists()

    for receipt in receipts:
        base = receipt.file_name or receipt.doc_id.hex()
        name, n = base, 2
        while taken(name):
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        names.append(name)
    return names


def write_receipt(
    receipt: AnchorReceipt, out_dir: Path, name: str, *, qr: bool = True
) -> Path | None:
    """``<name>.receipt.json`` and, with a verify URL, ``<name>.qr.png``.

    Returns the QR image's path. Each file is written whole or not at all.
    """
    png = None
    if qr and receipt.verify_url:
        from api.qr import qr_png

        png = qr_png(receipt.verify_url)
    return _write_pair(receipt, out_dir, name, png)


def _write_pair(
    receipt: AnchorReceipt, out_dir: Path, name: str, png: bytes | None
) -> Path | None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(receipt.to_json(), indent=2) + "\n"
        _replace(out_dir / f"{name}{RECEIPT_SUFFIX}", data.encode("utf-8"))
        if png is None:
            return None
        qr_path = out_dir / f"{name}{QR_SUFFIX}"
        _replace(qr_path, png)
    except OSError as exc:
        raise ConfigError(f"cannot write the receipt into {out_dir}: {exc}") from exc
    return qr_path


def _qr_images(urls: Sequence[str]) -> Iterator[bytes]:
    """PNG images for ``urls``, in order; on every CPU when there are many.

    A QR image takes tens of milliseconds of pure Python (segno), which for
    a batch of thousands is minutes on one core.
    """
    from api.qr import qr_png

    workers = os.cpu_count() or 1
    if workers == 1 or len(urls) < PARALLEL_QR_MIN:
        yield from map(qr_png, urls)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(qr_png, urls, chunksize=16)


def write_receipts(
    receipts: Sequence[AnchorReceipt],
    out_dir: Path,
    *,
    qr: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict[bytes, str]:
    """One receipt and (with ``qr``) one QR image per document.

    Returns doc id -> QR path; ``progress`` is called once per receipt.
    """
    paths: dict[bytes, str] = {}
    names = output_names(receipts, out_dir)
    urls = [r.verify_url for r in receipts if r.verify_url] if qr else []
    images = iter(_qr_images([u for u in urls if u]))
    for receipt, name in zip(receipts, names, strict=True):
        png = next(images) if qr and receipt.verify_url else None
        qr_path = _write_pair(receipt, out_dir, name, png)
        if qr_path is not None:
            paths[receipt.doc_id] = str(qr_path)
        if progress is not None:
            progress(1)
    return paths


def receipted_ids(folder: Path) -> set[bytes]:
    """The doc ids of the readable receipts in ``folder``."""
    found: set[bytes] = set()
    for path in folder.glob("*.receipt.json"):
        try:
            found.add(read_receipt(path).doc_id)
        except ConfigError:
            continue  # not ours, or damaged: it names no document
    return found


def read_receipt(path: Path) -> AnchorReceipt:
    """A receipt file; ConfigError naming the file if it is not one."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read receipt {path}: {exc}") from exc
    try:
        return AnchorReceipt.from_json(obj)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def check_writable(folder: Path) -> None:
    """Make ``folder`` and prove a file can be written there (ConfigError
    otherwise): receipts are written after the documents reach the ledger,
    too late to find out."""
    probe = folder / f".write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write receipts into {folder}: {exc}") from exc


class SaltJournal:
    """The salts of documents about to be sent, kept in the receipts folder
    until their receipts are written: a document on the ledger without its
    salt can never be verified. A hidden file (mode 0600), so anchoring the
    folder again skips it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        # Random too: two anchors in one second of one process (or of two
        # processes with one pid, a container apart) must not collide.
        tag = f"{stamp}-{os.getpid()}-{os.urandom(4).hex()}"
        self.path = folder / f".anchor-{tag}.salts.json"
        self.docs: list[PreparedDocument] = []

    def keep(self, docs: Sequence[PreparedDocument]) -> None:
        """Write ``docs``' salts (ConfigError if that fails: send nothing)."""
        self.docs = list(docs)
        rows = [
            {
                "doc_id": d.doc_id.hex(),
                "salt": d.salt.hex(),
                "file_sha256": d.file_sha256.hex(),
                "file_name": d.path.name,
                "doc_type": d.anchor.doc_type,
                "issuer": d.anchor.issuer,
                # The rest of the anchor, so ``read_journal`` can rebuild it
                # byte for byte and find it on the ledger.
                "issued_at": d.anchor.issued_at,
                "valid_from": d.anchor.valid_from,
                "valid_until": d.anchor.valid_until,
            }
            for d in self.docs
        ]
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(rows, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise ConfigError(f"cannot keep the salts in {self.path}: {exc}") from exc

    def touch(self) -> None:
        """A batch is about to be signed: the file's time says when the last
        one was, which bounds how long its documents may still land."""
        if self.docs:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def discard(self) -> None:
        """Every receipt is written: the salts live on in them."""
        self.path.unlink(missing_ok=True)


JOURNAL_GLOB: Final = ".anchor-*.salts.json"
# .anchor-{UTC stamp}-{pid}[-{random}].salts.json (no random part before).
_JOURNAL_NAME: Final = re.compile(
    r"\.anchor-[0-9TZ]+-(\d+)(?:-[0-9a-f]+)?\.salts\.json"
)


def journal_writer_alive(path: Path) -> int | None:
    """The id of the process that writes the salts file ``path``, if that
    process still runs here (an anchor in progress), else None."""
    found = _JOURNAL_NAME.fullmatch(path.name)
    if found is None:
        return None
    pid = int(found.group(1))
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # it runs, as another user
    return pid


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRow:
    """One document of a salts file. ``anchor`` is None in files written
    before they kept the anchor's times; it is then read off the ledger."""

    file_name: str
    file_sha256: bytes
    salt: bytes
    doc_id: bytes
    issuer: str
    doc_type: str
    anchor: Anchor | None

    def prepared(self, anchor: Anchor) -> PreparedDocument:
        return PreparedDocument(
            path=Path(self.file_name),
            file_sha256=self.file_sha256,
            salt=self.salt,
            anchor=anchor,
        )


def read_journal(path: Path) -> list[JournalRow]:
    """The documents of a salts file (``SaltJournal``) that an interrupted
    anchor left; ConfigError naming the file and row if it is not one, or if
    a row's doc id is not derived from its salt and file hash."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read salts file {path}: {exc}") from exc
    if not isinstance(rows, list):
        raise ConfigError(f"{path} is not a salts file (not a list)")
    out: list[JournalRow] = []
    for i, row in enumerate(rows):
        try:
            salt = unhex(row["salt"], SALT_SIZE)
            file_hash = unhex(row["file_sha256"], 32)
            doc_id = derive_doc_id(salt, file_hash)
            if doc_id.hex() != row["doc_id"]:
                raise ValueError("doc_id is not derived from salt and file_sha256")
            anchor = None
            if "issued_at" in row:
                anchor = Anchor(
                    issuer=row["issuer"],
                    doc_id=doc_id,
                    doc_type=row["doc_type"],
                    issued_at=row["issued_at"],
                    valid_from=row["valid_from"],
                    valid_until=row["valid_until"],
                )
            out.append(
                JournalRow(
                    file_name=Path(_text(row["file_name"])).name,
                    file_sha256=file_hash,
                    salt=salt,
                    doc_id=doc_id,
                    issuer=_text(row["issuer"]),
                    doc_type=_text(row["doc_type"]),
                    anchor=anchor,
                )
            )
        except KeyError as exc:
            raise ConfigError(f"{path}: row {i}: no {exc}") from exc
        except (TypeError, ValueError, LedgerError) as exc:
            raise ConfigError(f"{path}: row {i}: {exc}") from exc
    return out

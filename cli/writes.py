"""The agency's write commands: anchor, revoke, supersede, record; and proof.

Each signs with the agency's issuer key (the agency is the key file's
folder name unless ``--agency`` says otherwise) and talks to one node,
which forwards writes to the leader.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from cli import common, render
from cli.client import LedgerClient, SubmitResult
from cli.common import (
    MAX_TABLE_ROWS,
    AgencyOpt,
    KeyOpt,
    NodeOpt,
    TimeoutOpt,
    WaitOpt,
    agency_for_key,
    check_wait,
    handled,
    load_key,
    parse_when,
)
from cli.documents import (
    JOURNAL_GLOB,
    AnchorReceipt,
    JournalRow,
    PreparedDocument,
    SaltJournal,
    as_doc_id,
    check_writable,
    collect_files,
    hash_file,
    journal_writer_alive,
    read_journal,
    receipted_ids,
    write_receipts,
)
from cli.verifying import EXIT_NETWORK, UsageError, load_receipt
from cli.wire import ClientError, NetworkError
from ledger.bundle_binary import BundleFormat
from ledger.checkpoint import verify_checkpoint
from ledger.entries import DOC_TYPES, REVOKE_REASONS
from ledger.errors import ConfigError
from ledger.rules import TIMESTAMP_WINDOW_MS

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT
EXIT_TRY_LATER = 75  # sysexits' EX_TEMPFAIL: `ledger recover` is not done yet


def _with_progress(
    total: int, what: str, run: Callable[[Callable[[int], None]], _T]
) -> _T:
    with render.progress_bar() as bar:
        task = bar.add_task(what, total=total, rate="")
        return run(lambda n: bar.advance(task, n))


def anchor(
    node: NodeOpt,
    key: KeyOpt,
    doc_type: Annotated[
        str, typer.Option("--type", help=f"Document type, e.g. {', '.join(DOC_TYPES)}.")
    ],
    files: Annotated[list[Path], typer.Argument(help="Files or folders to anchor.")],
    agency: AgencyOpt = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for receipts and QR codes.")
    ] = Path("."),
    wait: WaitOpt = "applied",
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="Base of the verify URLs.")
    ] = None,
    valid_from: Annotated[str | None, typer.Option("--valid-from")] = None,
    valid_until: Annotated[str | None, typer.Option("--valid-until")] = None,
    qr: Annotated[
        bool, typer.Option("--qr/--no-qr", help="Write a QR image per document.")
    ] = True,
    timeout: TimeoutOpt = 60.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List the files that would be anchored, check the options, the "
            "agency's grant and key with the node; send and write nothing.",
        ),
    ] = False,
) -> None:
    """Anchor documents: hash locally, salt, sign in batches, write receipts.

    Each document gets DIR/<name>.receipt.json (keep it: its salt is what
    lets anyone verify the document) and DIR/<name>.qr.png. A folder means
    every file under it but hidden ones and receipts or QR images; see
    which with --dry-run.
    """
    with handled():
        paths = collect_files(files)
        signer = load_key(key)
        issuer = agency_for_key(key, agency)
        mode = check_wait(wait)
        since, until = parse_when(valid_from), parse_when(valid_until)
        if since is not None and until is not None and since >= until:
            raise UsageError("--valid-from must be before --valid-until")
        if not dry_run:
            check_writable(out)  # before anything reaches the ledger
        journal = SaltJournal(out)
        with common.make_client(node, timeout=timeout) as client:
            common.check_issuer(
                client.trust_list(), issuer, signer.public_key, doc_type
            )
            base = _checked_public_url(public_url or client.public_url())
            if dry_run:
                # Plain lines, so that a script can read the paths as they are.
                for path in paths:
                    typer.echo(str(path))
                typer.echo(
                    f"{len(paths)} file(s) for {issuer} as {doc_type!r}; "
                    "--dry-run: nothing sent"
                )
                return
            _note_unfinished(out, node)
            try:
                receipts = _with_progress(
                    len(paths),
                    "anchoring",
                    lambda tick: client.anchor_files(
                        paths,
                        signer,
                        issuer,
                        doc_type,
                        wait=mode,
                        valid_from=since,
                        valid_until=until,
                        public_url=base,
                        progress=_touching(journal, tick),
                        before_submit=journal.keep,
                    ),
                )
            except (ClientError, NetworkError) as exc:
                try:
                    receipts = _recover(client, journal, exc, base, qr=qr)
                except KeyboardInterrupt:
                    _interrupted(journal, node)  # while looking them up
            except KeyboardInterrupt:
                _interrupted(journal, node)
        try:
            qr_paths = _save_receipts(receipts, out, qr=qr)
        except KeyboardInterrupt:
            _interrupted(journal, node, landed=len(receipts), folder=out)
        journal.discard()
    render.out.print(render.receipts_table(receipts[:MAX_TABLE_ROWS], qr_paths))
    if len(receipts) > MAX_TABLE_ROWS:
        render.out.print(f"… and {len(receipts) - MAX_TABLE_ROWS} more, in {out}")


def _touching(
    journal: SaltJournal, tick: Callable[[int], None]
) -> Callable[[int], None]:
    """``tick``, after touching the salts file: a batch was acknowledged and
    the next is about to be signed (see ``SaltJournal.touch``)."""

    def progress(count: int) -> None:
        journal.touch()
        tick(count)

    return progress


def _checked_public_url(base: str) -> str:
    """``base`` if verify URLs can be made from it (UsageError otherwise):
    checked before anything is sent, since receipts come after."""
    from api.qr import check_fits

    try:
        check_fits(base)
    except ValueError as exc:
        raise UsageError(f"cannot make verify links: {exc}") from None
    return base


def _note_unfinished(folder: Path, node: str) -> None:
    """Say so if an earlier anchor into ``folder`` was cut short."""
    for path in sorted(folder.glob(JOURNAL_GLOB)):
        if journal_writer_alive(path) is not None:
            continue  # another anchor into this folder, still running
        render.err.print(
            f"[yellow]note: {path} holds the salts of an anchor that did not "
            f"finish; `ledger recover --node {node} {path}` writes the receipts "
            "of its documents that reached the ledger[/]"
        )


def _interrupted(
    journal: SaltJournal,
    node: str,
    *,
    landed: int | None = None,
    folder: Path | None = None,
) -> None:
    """Ctrl-C: say what may be on the ledger and where its salts are.
    ``landed``: every document was acknowledged, and the receipts were
    being written into ``folder``."""
    if not journal.docs:
        render.err.print("[yellow]interrupted; nothing was sent[/]")
    elif landed is not None and folder is not None:
        written = len(receipted_ids(folder) & {d.doc_id for d in journal.docs})
        render.err.print(
            f"[red]interrupted: all {landed} document(s) are on the ledger, "
            f"{written} receipt(s) written; the salts are kept in "
            f"{journal.path}. `ledger recover --node {node} {journal.path}` "
            "writes the other receipts.[/]"
        )
    else:
        render.err.print(
            f"[red]interrupted: up to {len(journal.docs)} document(s) may be on "
            f"the ledger; their salts are kept in {journal.path}. "
            f"`ledger recover --node {node} {journal.path}` writes the receipts "
            "of those that are.[/]"
        )
    raise typer.Exit(EXIT_INTERRUPTED)


def recover(
    node: NodeOpt,
    salts: Annotated[
        list[Path],
        typer.Argument(
            help="Salts files (.anchor-*.salts.json) an interrupted anchor left."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the receipts (default: the file's)."),
    ] = None,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="Base of the verify URLs.")
    ] = None,
    qr: Annotated[
        bool, typer.Option("--qr/--no-qr", help="Write a QR image per document.")
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Even if the process named in the file's name still runs (its "
            "id was reused by another).",
        ),
    ] = False,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """Write the receipts an interrupted `ledger anchor` did not.

    Each document of the salts file is looked up on the ledger by its doc id
    (its anchor must be the leaf, byte for byte). Those found get their
    receipt (and QR image) unless the folder has it already. The salts file
    is removed once every document is accounted for. A document not on the
    ledger may still land until the ledger has a final checkpoint dated
    after its batch's time window (about six minutes after the anchor
    stopped): until then the file is kept and the command exits 75; run it
    again later. After that, such documents were never anchored: anchor
    their files again.
    """
    with handled():
        for path in salts:
            pid = journal_writer_alive(path)
            if pid is not None and not force:
                raise UsageError(
                    f"{path} is being written by a running anchor (process {pid}); "
                    "let it finish (or, if that process is another, pass --force)"
                )
        journals = [(path, read_journal(path)) for path in salts]
        with common.make_client(node, timeout=timeout) as client:
            base = _checked_public_url(public_url or client.public_url())
            outcomes = [
                _recover_journal(client, path, rows, out, base, qr=qr)
                for path, rows in journals
            ]
    if any(o == "unchecked" for o in outcomes):
        raise typer.Exit(EXIT_NETWORK)
    if any(o == "early" for o in outcomes):
        raise typer.Exit(EXIT_TRY_LATER)


# A document not found may still land while a submission signed before the
# anchor stopped is within its time window (plus this much clock skew).
CLOCK_MARGIN_MS = 60_000


def _recover_journal(
    client: LedgerClient,
    path: Path,
    rows: Sequence[JournalRow],
    out: Path | None,
    public_url: str,
    *,
    qr: bool,
) -> str:
    """Recover one salts file: "done", "early" (documents not found may still
    land) or "unchecked" (the node did not answer for some)."""
    folder = path.parent if out is None else out
    check_writable(folder)
    have = receipted_ids(folder)
    todo = [r for r in rows if r.doc_id not in have]
    # The file's time is when the anchor signed its last batch (it touches
    # the file before each): nothing signed later exists.
    settled_ms = int(path.stat().st_mtime * 1000) + TIMESTAMP_WINDOW_MS
    settled_ms += CLOCK_MARGIN_MS
    docs, unknown = _prepared(client, todo)
    found, not_checked = _looked_up(client, docs, public_url)
    unchecked = {d.doc_id for d in not_checked} | unknown
    if found:
        write_receipts(found, folder, qr=qr)
    accounted = {r.doc_id for r in found} | unchecked
    absent = [r for r in todo if r.doc_id not in accounted]
    # Plain lines (no wrapping), so that a script can read them.
    typer.echo(
        f"{path}: {len(rows)} document(s): {len(rows) - len(todo)} had a receipt "
        f"in {folder}, {len(found)} found on the ledger (receipts written), "
        f"{len(absent)} not on the ledger, {len(unchecked)} could not be checked"
    )
    if unchecked:
        render.err.print(f"[red]{path} is kept: try again when the node answers[/]")
        return "unchecked"
    if absent and not _ledger_past(client, settled_ms):
        after = render.fmt_time(settled_ms)
        render.err.print(
            f"[yellow]{path} is kept: the documents not found may still land, "
            f"until the ledger has a final checkpoint dated after {after}; "
            "run `ledger recover` again then[/]"
        )
        return "early"
    path.unlink(missing_ok=True)
    if absent:
        names = ", ".join(sorted(r.file_name for r in absent))
        typer.echo(f"never anchored (anchor these files again): {names}")
    return "done"


def _ledger_past(client: LedgerClient, moment_ms: int) -> bool:
    """Whether the ledger has a final checkpoint dated after ``moment_ms``.

    Only the ledger can say a batch will never land: one cut before that
    moment may sit in a majority's logs while no leader is elected, and
    commit when one is. Once a later block is final, every entry before it
    is committed or gone, and a copy sent again now falls outside its time
    window. (A local clock cannot tell: an idle ledger writes no block.)
    """
    try:
        note = client.checkpoint().get("note")
    except ClientError as exc:
        if exc.status == 404:
            return False  # no final checkpoint yet
        raise
    trust = client.trust_list()
    if not isinstance(note, str):
        return False
    cp, _ = verify_checkpoint(
        note, trust.note_verifiers(), trust.quorum, origin=trust.origin
    )
    return cp.time_ms > moment_ms


def _prepared(
    client: LedgerClient, rows: Sequence[JournalRow]
) -> tuple[list[PreparedDocument], set[bytes]]:
    """The rows as documents to look up; a row of an older salts file (no
    anchor times kept) takes its anchor off the ledger, which its doc id,
    derived from its salt and file hash, ties to it. Also the doc ids the
    node could not answer for."""
    docs: list[PreparedDocument] = []
    unknown: set[bytes] = set()
    for row in rows:
        if row.anchor is not None:
            docs.append(row.prepared(row.anchor))
            continue
        try:
            anchor = client.anchor_of(row.doc_id)
        except (ClientError, NetworkError):
            unknown.add(row.doc_id)
            continue
        if anchor is not None and (anchor.issuer, anchor.doc_type) == (
            row.issuer,
            row.doc_type,
        ):
            docs.append(row.prepared(anchor))
    return docs, unknown


def _recover(
    client: LedgerClient,
    journal: SaltJournal,
    error: ClientError | NetworkError,
    public_url: str,
    *,
    qr: bool,
) -> list[AnchorReceipt]:
    """After a failed anchor: the receipts of the documents that reached the
    ledger all the same, found by doc id. If any is not found, or could not
    be checked, its salt stays in the journal and the error stands (after
    the receipts found are written)."""
    if not journal.docs:
        raise error  # nothing was sent
    render.err.print(f"[yellow]{error}; looking the documents up on the ledger[/]")
    found, unchecked = _looked_up(client, journal.docs, public_url)
    total = len(journal.docs)
    absent = total - len(found) - len(unchecked)
    if len(found) == total:
        render.err.print("[yellow]every document is on the ledger after all[/]")
        return found
    if found:
        write_receipts(found, journal.folder, qr=qr)
    # A refusal (a 4xx other than a replay) proposed nothing: documents not
    # found now never will be, and their salts are of no use.
    status = error.status if isinstance(error, ClientError) else None
    refused = status is not None and 400 <= status < 500 and status != 409
    if refused and not unchecked and not found:
        journal.discard()
        raise error
    parts = [f"{len(found)} of {total} on the ledger (receipts written)"]
    if absent:
        parts.append(f"{absent} not on the ledger (yet)")
    if unchecked:
        parts.append(f"{len(unchecked)} could not be checked")
    render.err.print(
        f"[red]{'; '.join(parts)}; the salts of all {total} are kept in "
        f"{journal.path}[/]"
    )
    raise error


def _looked_up(
    client: LedgerClient, docs: Sequence[PreparedDocument], public_url: str
) -> tuple[list[AnchorReceipt], list[PreparedDocument]]:
    """``client.recover_receipts`` under a progress bar (two reads each)."""
    if not docs:
        return [], []
    return _with_progress(
        len(docs),
        "looking up",
        lambda tick: client.recover_receipts(
            docs, public_url=public_url, progress=tick
        ),
    )


def _save_receipts(
    receipts: Sequence[AnchorReceipt], out: Path, *, qr: bool
) -> dict[bytes, str]:
    """Write the receipts; if that fails, print them, since the documents
    are on the ledger already and their salts exist nowhere else."""
    try:
        return _with_progress(
            len(receipts),
            "receipts",
            lambda tick: write_receipts(receipts, out, qr=qr, progress=tick),
        )
    except ConfigError:
        sys.stdout.write(json.dumps([r.to_json() for r in receipts], indent=2) + "\n")
        render.err.print(
            "[red]the receipts above could not be written; save them now[/]"
        )
        raise


def _doc_id_arg(value: str) -> bytes:
    """A doc id in hex, or a receipt file naming one."""
    path = Path(value)
    if path.suffix == ".json" and path.is_file():
        return load_receipt(path).doc_id
    try:
        return as_doc_id(value)
    except ValueError as exc:
        raise UsageError(f"not a doc id (64 hex digits) or receipt: {value!r}") from exc


def _print_results(results: Sequence[SubmitResult]) -> None:
    table = Table(title="Accepted")
    for col in ("kind", "doc id", "leaf", "block"):
        table.add_column(col, overflow="fold")
    for result in results:
        for r in result.receipts:
            table.add_row(
                r.kind,
                "" if r.doc_id is None else r.doc_id.hex(),
                str(r.leaf_index),
                str(r.block_height),
            )
    render.out.print(table)


def revoke(
    node: NodeOpt,
    key: KeyOpt,
    doc_id: Annotated[str, typer.Argument(help="Doc id (hex) or its receipt file.")],
    reason: Annotated[
        str, typer.Option("--reason", help=f"One of: {', '.join(REVOKE_REASONS)}.")
    ],
    agency: AgencyOpt = None,
    wait: WaitOpt = "applied",
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Revoke one of the agency's documents."""
    with handled():
        if reason not in REVOKE_REASONS:
            raise UsageError(f"--reason must be one of {', '.join(REVOKE_REASONS)}")
        target = _doc_id_arg(doc_id)
        signer, issuer = load_key(key), agency_for_key(key, agency)
        with common.make_client(node, timeout=timeout) as client:
            common.check_issuer(client.trust_list(), issuer, signer.public_key)
            results = client.revoke(
                [target], signer, issuer, reason, wait=check_wait(wait)
            )
    _print_results(results)


def supersede(
    node: NodeOpt,
    key: KeyOpt,
    old_doc_id: Annotated[str, typer.Argument(help="The replaced document.")],
    new_file: Annotated[
        Path | None, typer.Argument(help="The amended document to anchor.")
    ] = None,
    receipt: Annotated[
        Path | None,
        typer.Option("--receipt", help="Receipt of an already anchored new document."),
    ] = None,
    doc_type: Annotated[
        str | None, typer.Option("--type", help="Type of NEW_FILE.")
    ] = None,
    agency: AgencyOpt = None,
    out: Annotated[Path, typer.Option("--out")] = Path("."),
    wait: WaitOpt = "applied",
    public_url: Annotated[str | None, typer.Option("--public-url")] = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Supersede a document by a new one (anchored here from NEW_FILE, or --receipt)."""
    with handled():
        old = _doc_id_arg(old_doc_id)
        signer, issuer = load_key(key), agency_for_key(key, agency)
        mode = check_wait(wait)
        if (new_file is None) == (receipt is None):
            raise UsageError(
                "give either --receipt NEW_RECEIPT or NEW_FILE --type TYPE"
            )
        if new_file is not None and doc_type is None:
            raise UsageError("NEW_FILE needs --type TYPE")
        with common.make_client(node, timeout=timeout) as client:
            common.check_issuer(
                client.trust_list(), issuer, signer.public_key, doc_type
            )
            if receipt is not None:
                new = load_receipt(receipt).doc_id
                result = client.supersede(old, new, signer, issuer, wait=mode)
                _print_results([result])
                return
            assert new_file is not None and doc_type is not None
            anchored, result = client.supersede_with_file(
                old,
                new_file,
                signer,
                issuer,
                doc_type,
                wait=mode,
                public_url=_checked_public_url(public_url or client.public_url()),
            )
        qr_paths = _save_receipts([anchored], out, qr=True)
    _print_results([result])
    render.out.print(render.receipts_table([anchored], qr_paths))


def record(
    node: NodeOpt,
    key: KeyOpt,
    registry: Annotated[str, typer.Option("--registry")],
    record_id: Annotated[
        str, typer.Option("--record-id", help="Opaque id (UTF-8, at most 64 bytes).")
    ],
    version: Annotated[int, typer.Option("--version", help="Previous version + 1.")],
    file: Annotated[
        Path,
        typer.Argument(help="The record's content; its SHA-256 goes on the ledger."),
    ],
    agency: AgencyOpt = None,
    wait: WaitOpt = "applied",
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Record a new version of a registry record (digest = SHA-256 of FILE)."""
    with handled():
        signer, issuer = load_key(key), agency_for_key(key, agency)
        digest = hash_file(file)
        rid = record_id.encode("utf-8")
        with common.make_client(node, timeout=timeout) as client:
            common.check_issuer(client.trust_list(), issuer, signer.public_key)
            result = client.record(
                registry, rid, version, digest, signer, issuer, wait=check_wait(wait)
            )
    _print_results([result])


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def proof(
    node: NodeOpt,
    doc_id: Annotated[str, typer.Argument(help="Doc id (hex) or its receipt file.")],
    form: Annotated[
        BundleFormat,
        typer.Option(
            "--format",
            help="json, or binary (msgpack, about 60 % of the size; redirect "
            "it to a file: it is not written to a terminal).",
        ),
    ] = BundleFormat.JSON,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Print a document's proof bundle for offline verification (`ledger
    verify --bundle FILE` reads either form)."""
    with handled():
        target = _doc_id_arg(doc_id)
        binary = form is BundleFormat.BINARY
        # Refused before asking the node: raw bytes on a terminal are
        # unreadable and can leave it in a strange state.
        if binary and _stdout_is_terminal():
            raise UsageError(
                "a binary bundle is not written to a terminal: redirect it to "
                "a file (> bundle.bin), or leave out --format binary for JSON"
            )
        with common.make_client(node, timeout=timeout) as client:
            if not binary:
                text = json.dumps(client.bundle(target), indent=2) + "\n"
                sys.stdout.write(text)
                return
            data = client.bundle_binary(target)
    # The bytes as they came, past the text layer (flushed first, so that
    # nothing written before lands after them).
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def register(app: typer.Typer) -> None:
    """Add the write commands to ``app``, in the order ``--help`` lists them."""
    for command in (anchor, recover, revoke, supersede, record, proof):
        app.command()(command)

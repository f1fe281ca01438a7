"""`fastanon listen`: a DICOM node that anonymizes what it receives (node.py)."""

from __future__ import annotations

import click

from ._args import KEY_OPTIONS, POLICY_OPTIONS, TRIAL_OPTIONS
from ._options import load_key, load_policy, load_trial, with_options
from ._run import MASK_OPTIONS, masks_of


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Write the anonymized objects here, as OUT/<study>/<series>/<sop>.dcm from "
                   "their new UIDs.")
@click.option("--forward", default=None, metavar="AET@HOST:PORT",
              help="Send the anonymized objects on to this node instead; they wait in --queue "
                   "until it has acknowledged them (also across a restart).")
@click.option("--queue", type=click.Path(file_okay=False), default="fastanon-queue",
              show_default=True, help="With --forward: where objects wait to be sent.")
@click.option("--quarantine", type=click.Path(file_okay=False), default=None,
              help="Refused objects, each with a file saying why [default: OUT-quarantine, or "
                   "QUEUE-quarantine]. They are not anonymized: keep this folder as you keep "
                   "the originals.")
@click.option("--port", type=click.IntRange(0, 65535), default=11112, show_default=True,
              help="Port to listen on (0: any free port, printed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--ae-title", default="FASTANON", show_default=True, help="This node's AE title.")
@click.option("--allow", "allow", multiple=True, metavar="AET",
              help="Accept associations only from this calling AE title (repeatable).")
@click.option("--audit", type=click.Path(dir_okay=False), default=None, metavar="FILE.csv",
              help="One CSV row per object: spool name, output, status, reason, actions.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Accept TLS associations only (TLS 1.2 or later), with this certificate "
                   "(PEM); needs --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The private key of --tls-cert (PEM).")
@click.option("--tls-clients-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Only callers with a certificate this CA signed get in (mutual TLS).")
@click.option("--forward-tls", is_flag=True,
              help="Send to the --forward destination over TLS (1.2 or later), its certificate "
                   "checked against the system's authorities and its host name.")
@click.option("--forward-tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Check the destination's certificate against this CA (PEM) instead; implies "
                   "--forward-tls.")
@click.option("--forward-tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="This node's certificate (PEM) for a destination that asks for one; needs "
                   "--forward-tls-key, implies --forward-tls.")
@click.option("--forward-tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The private key of --forward-tls-cert (PEM).")
@click.option("--max-associations", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Associations at once; more are rejected (the sender retries).")
@click.option("--max-pdu", type=click.IntRange(0, 1 << 30), default=0, metavar="BYTES",
              help="Largest PDU received [default: no limit].")
@with_options(POLICY_OPTIONS + KEY_OPTIONS + TRIAL_OPTIONS + MASK_OPTIONS)
def listen(out: str | None, forward: str | None, queue: str, quarantine: str | None, port: int,
           host: str, ae_title: str, allow: tuple[str, ...], audit: str | None,
           tls_cert: str | None, tls_key: str | None, tls_clients_ca: str | None,
           forward_tls: bool, forward_tls_ca: str | None, forward_tls_cert: str | None,
           forward_tls_key: str | None, max_associations: int, max_pdu: int,
           preset: str | None, policy_file: str | None, key: str | None, key_file: str | None,
           lookup: str | None, lookup_key: str | None, lookup_missing: str | None,
           trial_sponsor: str | None, trial_protocol: str | None, trial_site: str | None,
           mask_texts: tuple[str, ...],
           masks_file: str | None, rules_file: str | None, decompress: bool,
           burned_in: str) -> None:
    """Receive DICOM objects (C-STORE), anonymize each, and write it to OUT or forward it.

    An object is acknowledged only once its anonymized output is on disk (in OUT, or in the
    queue of --forward); one that cannot be anonymized gets a failure status and goes to the
    quarantine folder. SIGTERM or Ctrl-C stops accepting, lets the associations in flight
    finish, and exits 0 (what is not forwarded yet stays queued). With the same --key, an
    object sent here and the same object run from disk give the same output.

    \b
    Examples:
      fastanon listen --port 11112 --key-file site.key --out /data/anon --allow CT01
      fastanon listen --key-file site.key --forward RESEARCH@pacs.example.org:104
      fastanon listen --key-file site.key --mask-rules builtin:ctp --out /data/anon
    """
    import os
    import signal
    import sys
    import threading

    try:
        from .. import node
        import pynetdicom  # noqa: F401
    except ImportError:
        raise click.UsageError("listen needs pynetdicom: pip install 'fastanon[net]'") from None
    from ..batch import AuditLog, Job

    if (out is None) == (forward is None):
        raise click.UsageError("give --out DIR or --forward AET@HOST:PORT")
    destination = None
    if forward is not None:
        try:
            destination = node.parse_destination(forward)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--forward") from None
        out = queue
    if bool(tls_cert) != bool(tls_key) or (tls_clients_ca and not tls_cert):
        raise click.UsageError("TLS needs --tls-cert and --tls-key (and --tls-clients-ca only "
                               "with them)")
    tls = None
    if tls_cert:
        import ssl

        try:
            tls = node.tls_context(tls_cert, tls_key, tls_clients_ca)
        except (ssl.SSLError, OSError) as exc:
            raise click.BadParameter(f"{exc}", param_hint="--tls-cert/--tls-key") from None
    if bool(forward_tls_cert) != bool(forward_tls_key):
        raise click.UsageError("--forward-tls-cert and --forward-tls-key go together")
    to_destination = None
    if forward_tls or forward_tls_ca or forward_tls_cert:
        import ssl

        if forward is None:
            raise click.UsageError("--forward-tls and its options need --forward")
        try:
            to_destination = node.forward_tls_context(forward_tls_ca, forward_tls_cert,
                                                      forward_tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise click.BadParameter(f"{exc}", param_hint="--forward-tls-*") from None
    policy, name = load_policy(preset, policy_file)
    policy = load_trial(policy, lookup, lookup_key, lookup_missing, trial_sponsor,
                        trial_protocol, trial_site)
    job = Job(policy=policy, key=load_key(key, key_file), preset_name=name,
              masks=masks_of(mask_texts, masks_file, rules_file, burned_in),
              decompress=decompress, burned_in=burned_in)
    if not job.key:
        job = job.replace(key=os.urandom(32))
        click.echo("note: no --key: UIDs and pseudonyms are consistent only while this node "
                   "runs", err=True)
    quarantine = quarantine or os.path.abspath(out).rstrip(os.sep) + "-quarantine"
    stop = threading.Event()

    def stopping(signum, frame):
        stop.set()

    previous = {s: signal.signal(s, stopping) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        audit_log = AuditLog(audit, job) if audit else None
        with audit_log or _Nothing() as rows:
            here = node.Node(job, out, quarantine, audit=rows if audit_log else None)
            where = f"forwarding to {forward}" if forward else f"writing to {out}"
            counts = node.serve(here, host, port, ae_title, allow, stop=stop, forward=destination,
                                tls=tls, forward_tls=to_destination, max_pdu=max_pdu, max_associations=max_associations,
                                ready=lambda bound: click.echo(
                                    f"fastanon listen: {ae_title} on {host}:{bound}, {where}",
                                    err=True))
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or f'{host}:{port}'}: "
                                   f"{exc.strerror or exc}") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    said = ", ".join(f"{count:,} {what}" for what, count in counts.items())
    click.echo(f"fastanon listen: {said}", err=True)
    sys.exit(0)


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        pass

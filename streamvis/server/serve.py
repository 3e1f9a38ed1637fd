"""Assembling and running `streamvis serve`: streams from sources, safety checks, TLS, loopback ICE."""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from aiohttp import web

from streamvis import env
from streamvis.config import ClipEmbedderConfig, PipelineConfig
from streamvis.errors import ConfigError
from streamvis.live.budget import BudgetBoard
from streamvis.live.runner import LiveStream
from streamvis.live.settings import LiveSettings
from streamvis.pipeline.loading import load_models
from streamvis.runtime.threads import apply_opencv_budget, apply_torch_budget
from streamvis.search.live import AlertSettings
from streamvis.server import aiortc_compat
from streamvis.server.aiortc_compat import is_loopback
from streamvis.server.egress import parse_publish
from streamvis.server.hub import ServerSettings, StreamFactory
from streamvis.server.routes import build_app
from streamvis.sinks.copy_record import CopyRecorder
from streamvis.sinks.record import SegmentedRecorder, ThreadedSink
from streamvis.sources import Source, open_source, parse_source_uri

log = logging.getLogger(__name__)


def stream_ids(sources: list[str]) -> list[str]:
    """Short unique ids from sources: `videos/people.mp4` -> `people`, `/dev/video0` -> `video0`,
    `rtsp://host/live/cam1` -> `cam1` (a URL's last path part, else its host), `synthetic:` -> `synthetic`;
    a repeated id gets `-2`, `-3`, ..."""
    ids: list[str] = []
    for uri in sources:
        spec = parse_source_uri(uri)
        if spec.kind in ("file", "device", "images"):
            base = Path(spec.target.split("?")[0]).stem
        elif spec.kind == "stream":
            url = urlsplit(uri)
            base = PurePosixPath(url.path).stem or url.hostname or spec.kind
        else:
            base = spec.kind
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-") or "stream"
        name, n = base, 2
        while name in ids:
            name, n = f"{base}-{n}", n + 1
        ids.append(name)
    return ids


@dataclass(frozen=True, slots=True)
class Recording:
    """`serve --record DIR`: every stream as MP4 + JSONL under `DIR/<stream>/`, a new pair every `segment_s`
    seconds: a live camera's own packets copied (`CopyRecorder`), anything else, or everything with
    `annotated`, as the annotated video (`SegmentedRecorder`)."""

    folder: Path
    segment_s: float = 300.0
    annotated: bool = False

    @classmethod
    def from_options(cls, folder: Path | None, segment_s: float, annotated: bool) -> Recording | None:
        """`serve --record`'s options, checked (`ConfigError` names the one that is wrong); None without a folder."""
        if segment_s <= 0:
            raise ConfigError(f"--record-segment-s must be positive, got {segment_s}")
        if annotated and folder is None:
            raise ConfigError("--record-annotated needs --record DIR")
        return cls(folder, segment_s, annotated) if folder is not None else None


def build_streams(sources: list[str], config: PipelineConfig, models_dir: str | Path | None,
                  settings: LiveSettings, record: Recording | None = None, index: Path | None = None,
                  alerts: AlertSettings | None = None) -> tuple[dict[str, LiveStream], StreamFactory]:
    """One pipeline per source, all on one set of models (`load_models`: each model loaded once); segmenter
    sessions, trackers and narration policies are per stream. With `index`, every stream is indexed into that
    file as it runs (`settings.moments`, searched by `GET /search`), its new tracks checked against `alerts`; a
    recording with an embedder set and no `index` is indexed into `<record folder>/moments.duckdb`.

    Also returns the factory that builds the same kind of stream for a WHIP publisher, on the same models.
    """
    if index is None and record is not None and isinstance(config.embedder, ClipEmbedderConfig):
        index = record.folder / "moments.duckdb"  # a recording folder carries its own index
        log.info("indexing every stream into %s (with the recordings)", index)
    if alerts is not None and index is None:
        raise ConfigError("--alert needs --index FILE: new tracks are checked against the sentences as they are "
                          "indexed")
    if index is not None and not isinstance(config.embedder, ClipEmbedderConfig):
        raise ConfigError(f"--index {index}: needs an embedder to turn tracks into vectors: --set embedder.type=clip "
                          "(embedder.model: a CLIP or SigLIP hub id or folder)")
    models = load_models(config, models_dir, cross_stream=True, streams=len(sources))
    if index is not None and models.embedder is not None and isinstance(config.embedder, ClipEmbedderConfig):
        from streamvis.search.live import LiveIndex

        settings.moments = LiveIndex(index, models.embedder, config.embedder, alerts)
    apply_torch_budget(max(1, len(sources)), models.providers().values())
    apply_opencv_budget(max(1, len(sources)))
    if config.latency.budget_ms is not None and settings.budget_board is None:
        settings.budget_board = BudgetBoard()  # one plan over the cores for every stream of this server

    def make_stream(name: str, open_fn: Callable[[], Source]) -> LiveStream:
        stream = LiveStream(name, open_fn, config, models, settings)
        if settings.moments is not None:
            stream.index_into(settings.moments, record.folder / name if record is not None else None,
                              sources_by_name.get(name, "whip"))
        if record is not None:
            def annotated() -> ThreadedSink:
                recorder = SegmentedRecorder(record.folder, name, record.segment_s, config.output)
                return ThreadedSink(recorder, "record", name, on_drop=stream.stats.count_drop)

            if record.annotated:
                stream.add_sink(annotated())
            else:
                copier = CopyRecorder(record.folder, name, record.segment_s, annotated, stream.stats.count_drop)
                stream.add_packet_tap(copier)
                stream.add_sink(copier, copier.wants_annotated)
        return stream

    sources_by_name = dict(zip(stream_ids(sources), sources, strict=True))
    streams = {}
    for name, uri in sources_by_name.items():
        if parse_source_uri(uri).kind == "file":
            open_source(uri, config.source).close()  # a missing or unreadable file fails before serving
        streams[name] = make_stream(name, functools.partial(open_source, uri, config.source))
    return streams, make_stream



def ssl_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ConfigError("HTTPS needs both --certfile and --keyfile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the certificate {certfile} / key {keyfile}: {exc}") from None
    return context


def check_exposure(host: str, token: str | None, view_token: str | None = None) -> None:
    """Who may reach the server: off loopback only with a token; a view token is the lesser of two."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"serving on {host} (not loopback) needs a token: --token or STREAMVIS_TOKEN; "
                          "every request will then have to carry it")
    if view_token and not token:
        raise ConfigError("--view-token needs --token: the view token is the lesser of two")
    if view_token and view_token == token:
        raise ConfigError("--view-token must differ from --token")


def server_settings(host: str, token: str | None, view_token: str | None, codec: str, ice_servers: list[str],
                    cors_origins: list[str] | None, publish: list[str], publish_token: str | None,
                    streams: list[str]) -> ServerSettings:
    """What `serve` was asked for, checked before any model loads (a `ConfigError` names what is wrong): who may
    reach it (`check_exposure`), the viewers' codec, the web origins that may use the API (default: any when a
    token guards it, else none), where the streams (their ids) are published (`--publish`), and how often the C
    heap is trimmed (`STREAMVIS_HEAP_TRIM_S`)."""
    if codec not in ("h264", "vp8"):
        raise ConfigError(f"--codec must be h264 or vp8, got '{codec}'")
    check_exposure(host, token, view_token)
    try:
        targets = parse_publish(publish, streams)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        heap_trim_s = env.heap_trim_s()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    origins = cors_origins if cors_origins is not None else (["*"] if token else [])
    return ServerSettings(token=token, view_token=view_token, codec=codec, ice_servers=ice_servers,
                          cors_origins=origins, publish=targets, publish_token=publish_token,
                          heap_trim_s=heap_trim_s)


def run(streams: dict[str, LiveStream], host: str, port: int, server: ServerSettings,
        context: ssl.SSLContext | None, make_stream: StreamFactory | None = None) -> None:
    check_exposure(host, server.token)
    # bound to loopback: viewers are on this machine and nothing leaves it (`aiortc_compat.use_loopback_ice`)
    aiortc_compat.use_loopback_ice(only=is_loopback(host))
    app = build_app(streams, server, make_stream)
    scheme = "https" if context else "http"
    def started(_banner: str) -> None:  # aiohttp calls this once the port is bound, never before
        log.info("serving %s on %s://%s:%d/%s", ", ".join(streams) or "no streams yet (WHIP publishers welcome)",
                 scheme, host, port, "?token=..." if server.token else "")

    web.run_app(app, host=host, port=port, ssl_context=context, print=started, handle_signals=True)


def make_self_signed(out_dir: Path, hosts: list[str], days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate for LAN use (a phone's browser only gives a page its camera over HTTPS)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(key, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = out_dir / "cert.pem", out_dir / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keyfile.chmod(0o600)
    return certfile, keyfile

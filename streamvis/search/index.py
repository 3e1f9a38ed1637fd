"""The index: one DuckDB file of moments, each with its embedding. DuckDB because it is an embedded database that
needs nothing loaded at run time: its fixed-size `FLOAT[n]` arrays and `array_cosine_similarity` rank vectors in
SQL (a scan, fine to 10^6 rows: benchmarks/search.py), its write-ahead log makes a killed writer lose at most the
moment being written, and a second process can read while nobody writes. (sqlite-vec needs SQLite extension
loading, which the Python builds here lack; LanceDB brings pyarrow and a second storage format for no gain at
this size.)

Two kinds of moments: a track (stream, id, class, first and last second, its best box and view, the mean of its
views' embeddings) and a scene keyframe (stream, second, the whole frame's embedding). Thumbnails are JPEG files
beside the index (`<index>.thumbs/`), named in the rows.

An index keeps one clock: `video` (seconds into each input video: `process --index`) or `wall` (Unix time: `serve
--index`, so that moments of a server's runs never collide and a search can ask for "since 9:00"). Where each
stream's moments can be cut from is in `videos`: the video a run wrote, or a live recording's folder of segments.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from streamvis.errors import ConfigError, OutputError, StreamvisError
from streamvis.extras import require

P = ParamSpec("P")
R = TypeVar("R")


def _locked(method: Callable[Concatenate[MomentIndex, P], R]) -> Callable[Concatenate[MomentIndex, P], R]:
    """One connection serves every stream's writer and the searches: one call at a time."""
    @functools.wraps(method)
    def locked(self: MomentIndex, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


@dataclass(frozen=True, slots=True)
class TrackMoment:
    stream: str
    track: int
    class_name: str
    start_s: float
    end_s: float
    score: float  # the detector's best score for it
    box_xyxy: tuple[float, float, float, float]  # at its best view
    thumbnail: str  # relative to the index's folder
    embedding: np.ndarray


@dataclass(frozen=True, slots=True)
class SceneMoment:
    stream: str
    t_s: float
    thumbnail: str
    embedding: np.ndarray


CLOCKS = ("video", "wall")


@dataclass(frozen=True, slots=True)
class VideoOf:
    """Where a stream's moments are cut from: a video file (`kind` "video") or a live recording's folder of
    segments, each with its JSONL (`kind` "recording"); `source` is what the run read."""

    path: Path
    kind: str
    source: str


@dataclass(frozen=True, slots=True)
class Found:
    """One search result: a track (`track`, `class_name` set) or a scene keyframe (`start_s` == `end_s`)."""

    kind: str  # track, scene
    stream: str
    start_s: float
    end_s: float
    similarity: float
    thumbnail: str
    track: int | None = None
    class_name: str | None = None

    def to_json(self, clock: str = "video") -> dict[str, Any]:
        """The moment as JSON; on a wall clock also `start` and `end` as ISO 8601 local times."""
        record: dict[str, Any] = {
            "kind": self.kind, "stream": self.stream, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
            "similarity": round(self.similarity, 4), "track": self.track, "class": self.class_name,
            "thumbnail": self.thumbnail}
        if clock == "wall":
            record["start"], record["end"] = local_time(self.start_s), local_time(self.end_s)
        return record


def local_time(unix_s: float) -> str:
    """Unix time as an ISO 8601 local time to the second, with its offset (2026-12-06T09:41:02+01:00)."""
    return datetime.datetime.fromtimestamp(unix_s).astimezone().isoformat(timespec="seconds")


def parse_time(text: str, what: str = "time") -> float:
    """`--since` / `--until` (`what`): seconds (into a video, or Unix time) or an ISO 8601 date and time (local
    unless it names its offset), for an index on the wall clock."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ConfigError(f"{what}: expected seconds or a date and time like 2026-12-06T09:30, got "
                          f"'{text[:40]}'") from None


class MomentIndex:
    """Open (or create, with `model` and `dim`) the index at `path`. Writes are transactions: a moment is in the
    file whole or not at all."""

    def __init__(self, path: Path, model: str | None = None, dim: int | None = None, read_only: bool = False,
                 clock: str = "video") -> None:
        require("an index (--index, streamvis search)", "search")
        import duckdb

        self.path = path
        if read_only and not path.is_file():
            raise ConfigError(f"{path}: no index there (make one with streamvis process --index {path})")
        self._lock = threading.RLock()  # `_locked`: one connection, used by every stream's writer and by searches
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise StreamvisError(f"{path}: cannot open the index: {str(exc).splitlines()[0]}") from None
        meta = self._meta()
        if not meta:
            if model is None or dim is None:
                raise ConfigError(f"{path}: not a streamvis index")
            self._create(model, dim, clock)
            meta = self._meta()
        self.model, self.dim = meta["model"], int(meta["dim"])
        self.clock = meta.get("clock", "video")
        if not read_only:
            self._db.execute("CREATE TABLE IF NOT EXISTS videos (stream VARCHAR PRIMARY KEY, video VARCHAR, "
                             "source VARCHAR)")
        if model is not None and model != self.model:
            raise ConfigError(f"{path}: indexed with embedder.model {self.model}, not {model}: vectors of two models "
                              "cannot be compared (use another index file)")
        if model is not None and clock != self.clock:
            what = {"video": "seconds into videos (process --index)", "wall": "wall-clock times (serve --index)"}
            raise ConfigError(f"{path}: its moments are timed by {what[self.clock]}, not {what[clock]}: use another "
                              "index file")

    def _meta(self) -> dict[str, str]:
        tables = {row[0] for row in self._db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "meta" not in tables:
            return {}
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _create(self, model: str, dim: int, clock: str) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock: expected one of {CLOCKS}, got {clock}")
        self._db.execute("BEGIN")
        self._db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self._db.execute(f"CREATE TABLE tracks (stream VARCHAR, track INTEGER, class VARCHAR, start_s DOUBLE, "
                         f"end_s DOUBLE, score DOUBLE, x1 DOUBLE, y1 DOUBLE, x2 DOUBLE, y2 DOUBLE, "
                         f"thumbnail VARCHAR, embedding FLOAT[{dim}])")
        self._db.execute(f"CREATE TABLE scenes (stream VARCHAR, t_s DOUBLE, thumbnail VARCHAR, "
                         f"embedding FLOAT[{dim}])")
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("model", model), ("dim", str(dim)), ("created", created), ("schema", "1"),
                              ("clock", clock)])
        self._db.execute("COMMIT")

    def _vector(self, embedding: np.ndarray) -> list[float]:
        vector = np.asarray(embedding, np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ConfigError(f"{self.path}: an embedding of {vector.shape[0]} values for an index of {self.dim}")
        return vector.tolist()

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[None]:
        """One transaction: all of it or, on any failure, none. A database that cannot be written (a full disk)
        raises `OutputError` naming `doing`."""
        import duckdb

        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except duckdb.Error as exc:
            self._db.execute("ROLLBACK")
            raise OutputError(f"{self.path}: cannot {doing}: {str(exc).splitlines()[0]}") from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _insert_tracks(self, tracks: list[TrackMoment]) -> None:
        self._db.executemany("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (t.stream, t.track, t.class_name, t.start_s, t.end_s, t.score, *t.box_xyxy, t.thumbnail,
             self._vector(t.embedding)) for t in tracks])

    @_locked
    def add(self, tracks: list[TrackMoment], scenes: list[SceneMoment]) -> None:
        """Tracks and scene keyframes in one transaction. A database that cannot be written (a full disk) raises
        `OutputError`: a live stream's index writer then stops, saying why once, and the stream goes on."""
        if not tracks and not scenes:
            return
        with self._transaction("write the index"):
            if tracks:
                self._insert_tracks(tracks)
            if scenes:
                self._db.executemany("INSERT INTO scenes VALUES (?, ?, ?, ?)", [
                    (s.stream, s.t_s, s.thumbnail, self._vector(s.embedding)) for s in scenes])

    @_locked
    def put_track(self, track: TrackMoment) -> None:
        """`track`, in place of the row written for it before (same stream, id and first second), in one
        transaction: a live track is indexed while in view, then made whole when it ends."""
        with self._transaction("write the index"):
            self._db.execute("DELETE FROM tracks WHERE stream = ? AND track = ? AND start_s = ?",
                             [track.stream, track.track, track.start_s])
            self._insert_tracks([track])

    @_locked
    def add_video(self, stream: str, video: Path, source: str) -> None:
        """Where `stream`'s moments can be cut from: the video a run wrote for it, or the folder a live recording
        writes its segments to (and what the run read)."""
        self._db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?)", [stream, str(video.resolve()), source])

    @_locked
    def video_of(self, stream: str) -> VideoOf | None:
        tables = {row[0] for row in self._db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "videos" not in tables:
            return None
        row = self._db.execute("SELECT video, source FROM videos WHERE stream = ?", [stream]).fetchone()
        if not row:
            return None
        path = Path(row[0])
        return VideoOf(path, "recording" if path.is_dir() else "video", row[1])

    @_locked
    def merge(self, part: Path) -> tuple[int, int]:
        """Every moment and video of the index `part` (one Ray task's) into this one, in one transaction: all of it
        or, on any failure, none. The part must hold vectors of this index's model, on its clock."""
        other = MomentIndex(part, read_only=True)
        try:
            if (other.model, other.dim, other.clock) != (self.model, self.dim, self.clock):
                raise ConfigError(f"{part}: made with {other.model} ({other.clock} clock), not {self.model} "
                                  f"({self.clock}): cannot merge")
            counts = other.counts()
        finally:
            other.close()
        quoted = str(part.resolve()).replace("'", "''")
        self._db.execute(f"ATTACH '{quoted}' AS part (READ_ONLY)")
        try:
            with self._transaction(f"merge {part}"):
                self._db.execute("INSERT INTO tracks SELECT * FROM part.tracks")
                self._db.execute("INSERT INTO scenes SELECT * FROM part.scenes")
                self._db.execute("INSERT OR REPLACE INTO videos SELECT * FROM part.videos")
        finally:
            self._db.execute("DETACH part")
        return counts

    @_locked
    def counts(self) -> tuple[int, int]:
        tracks = self._db.execute("SELECT count(*) FROM tracks").fetchone()
        scenes = self._db.execute("SELECT count(*) FROM scenes").fetchone()
        return int(tracks[0]) if tracks else 0, int(scenes[0]) if scenes else 0

    @_locked
    def search(self, query: np.ndarray, top: int = 10, stream: str | None = None, class_name: str | None = None,
               since_s: float | None = None, until_s: float | None = None, scenes: bool = True) -> list[Found]:
        """The `top` moments most like `query` (a unit vector), best first; tracks overlapping [since, until]
        (seconds of their stream), of `class_name` and `stream` when given. Scene keyframes join unless a class
        is asked for or `scenes` is off."""
        vector = self._vector(query)
        where: list[str] = []
        args: list[object] = []
        if stream is not None:
            where.append("stream = ?")
            args.append(stream)
        if since_s is not None:
            where.append("end_s >= ?")
            args.append(since_s)
        if until_s is not None:
            where.append("start_s <= ?")
            args.append(until_s)
        track_where = [*where] + (["class = ?"] if class_name is not None else [])
        track_args: list[object] = [*args] + ([class_name] if class_name is not None else [])
        cast = f"?::FLOAT[{self.dim}]"
        parts = [(f"SELECT 'track' AS kind, stream, start_s, end_s, array_cosine_similarity(embedding, {cast}) "
                  f"AS similarity, thumbnail, track, class FROM tracks"
                  + (" WHERE " + " AND ".join(track_where) if track_where else ""), [vector, *track_args])]
        if scenes and class_name is None:
            scene_where = [w.replace("end_s", "t_s").replace("start_s", "t_s") for w in where]
            parts.append((f"SELECT 'scene', stream, t_s, t_s, array_cosine_similarity(embedding, {cast}), "
                          f"thumbnail, NULL, NULL FROM scenes"
                          + (" WHERE " + " AND ".join(scene_where) if scene_where else ""), [vector, *args]))
        sql = " UNION ALL ".join(f"({p})" for p, _ in parts) + " ORDER BY similarity DESC LIMIT ?"
        rows = self._db.execute(sql, [a for _, part_args in parts for a in part_args] + [top]).fetchall()
        return [Found(kind, stream_, float(start), float(end), float(sim), thumb,
                      None if track is None else int(track), cls)
                for kind, stream_, start, end, sim, thumb, track, cls in rows]

    @_locked
    def close(self) -> None:
        self._db.close()

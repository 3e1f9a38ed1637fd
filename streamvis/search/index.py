"""The index: one DuckDB file of moments, each with its embedding. DuckDB because it is an embedded database that
needs nothing loaded at run time: its fixed-size `FLOAT[n]` arrays and `array_cosine_similarity` rank vectors in
SQL (a scan, fine to 10^6 rows: benchmarks/search.py), its write-ahead log makes a killed writer lose at most the
moment being written, and a second process can read while nobody writes. (sqlite-vec needs SQLite extension
loading, which the Python builds here lack; LanceDB brings pyarrow and a second storage format for no gain at
this size.)

Two kinds of moments: a track (stream, id, class, first and last second, its best box and view, the mean of its
views' embeddings) and a scene keyframe (stream, second, the whole frame's embedding). Thumbnails are JPEG files
beside the index (`<index>.thumbs/`), named in the rows.
"""

from __future__ import annotations

import datetime
import functools
import threading
from collections.abc import Callable
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

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "stream": self.stream, "start_s": round(self.start_s, 3),
                "end_s": round(self.end_s, 3), "similarity": round(self.similarity, 4), "track": self.track,
                "class": self.class_name, "thumbnail": self.thumbnail}


class MomentIndex:
    """Open (or create, with `model` and `dim`) the index at `path`. Writes are transactions: a moment is in the
    file whole or not at all."""

    def __init__(self, path: Path, model: str | None = None, dim: int | None = None, read_only: bool = False) -> None:
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
            self._create(model, dim)
            meta = self._meta()
        self.model, self.dim = meta["model"], int(meta["dim"])
        if not read_only:
            self._db.execute("CREATE TABLE IF NOT EXISTS videos (stream VARCHAR PRIMARY KEY, video VARCHAR, "
                             "source VARCHAR)")
        if model is not None and model != self.model:
            raise ConfigError(f"{path}: indexed with embedder.model {self.model}, not {model}: vectors of two models "
                              "cannot be compared (use another index file)")

    def _meta(self) -> dict[str, str]:
        tables = {row[0] for row in self._db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "meta" not in tables:
            return {}
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _create(self, model: str, dim: int) -> None:
        self._db.execute("BEGIN")
        self._db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self._db.execute(f"CREATE TABLE tracks (stream VARCHAR, track INTEGER, class VARCHAR, start_s DOUBLE, "
                         f"end_s DOUBLE, score DOUBLE, x1 DOUBLE, y1 DOUBLE, x2 DOUBLE, y2 DOUBLE, "
                         f"thumbnail VARCHAR, embedding FLOAT[{dim}])")
        self._db.execute(f"CREATE TABLE scenes (stream VARCHAR, t_s DOUBLE, thumbnail VARCHAR, "
                         f"embedding FLOAT[{dim}])")
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("model", model), ("dim", str(dim)), ("created", created), ("schema", "1")])
        self._db.execute("COMMIT")

    def _vector(self, embedding: np.ndarray) -> list[float]:
        vector = np.asarray(embedding, np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ConfigError(f"{self.path}: an embedding of {vector.shape[0]} values for an index of {self.dim}")
        return vector.tolist()

    @_locked
    def add(self, tracks: list[TrackMoment], scenes: list[SceneMoment]) -> None:
        """Tracks and scene keyframes in one transaction. A database that cannot be written (a full disk) raises
        `OutputError`: a live stream's index writer then stops, saying why once, and the stream goes on."""
        import duckdb

        if not tracks and not scenes:
            return
        self._db.execute("BEGIN")
        try:
            if tracks:
                self._db.executemany("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    (t.stream, t.track, t.class_name, t.start_s, t.end_s, t.score, *t.box_xyxy, t.thumbnail,
                     self._vector(t.embedding)) for t in tracks])
            if scenes:
                self._db.executemany("INSERT INTO scenes VALUES (?, ?, ?, ?)", [
                    (s.stream, s.t_s, s.thumbnail, self._vector(s.embedding)) for s in scenes])
            self._db.execute("COMMIT")
        except duckdb.Error as exc:
            self._db.execute("ROLLBACK")
            raise OutputError(f"{self.path}: cannot write the index: {str(exc).splitlines()[0]}") from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @_locked
    def add_video(self, stream: str, video: Path, source: str) -> None:
        """Where `stream`'s moments can be cut from: the video a run wrote for it (and what it read)."""
        self._db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?)", [stream, str(video.resolve()), source])

    @_locked
    def video_of(self, stream: str) -> Path | None:
        tables = {row[0] for row in self._db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "videos" not in tables:
            return None
        row = self._db.execute("SELECT video FROM videos WHERE stream = ?", [stream]).fetchone()
        return Path(row[0]) if row else None

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

"""Where runs live: ``<BQX_DATA_DIR>/runs`` locally, ``s3://<bucket>/runs`` when the
deployment is ``s3`` (endpoint and region from settings, credentials from the
standard ``AWS_*`` variables). Both go through one pyarrow filesystem, which is also
what Ray's ``RunConfig(storage_filesystem=...)`` uses."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd
import pyarrow.fs as pafs


class RunNotFoundError(FileNotFoundError):
    """A run name with no folder in the runs storage."""


@dataclass
class RunStore:
    """A runs root on a pyarrow filesystem."""

    fs: pafs.FileSystem
    root: str
    uri: str

    def path(self, run: str, *parts: str) -> str:
        """The path of ``parts`` inside ``run``."""
        return "/".join([self.root, run, *parts])

    def put_bytes(self, run: str, name: str, data: bytes) -> str:
        """Write a file of the run; returns its path."""
        path = self.path(run, name)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        return path

    def get_bytes(self, run: str, name: str) -> bytes:
        """Read a file of the run.

        Raises:
            RunNotFoundError: when the run or the file does not exist.
        """
        path = self.path(run, name)
        try:
            with self.fs.open_input_stream(path) as src:
                return src.read()
        except FileNotFoundError:
            raise RunNotFoundError(
                f"run {run!r}: no {name} at {self.uri}/{run}"
            ) from None
        except OSError as exc:
            if "not exist" in str(exc) or "NoSuchKey" in str(exc):
                raise RunNotFoundError(
                    f"run {run!r}: no {name} at {self.uri}/{run}"
                ) from None
            raise

    def put_frame(self, run: str, name: str, frame: pd.DataFrame) -> str:
        """Write a frame as Parquet."""
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return self.put_bytes(run, name, buf.getvalue())

    def get_frame(self, run: str, name: str) -> pd.DataFrame:
        """Read a Parquet frame of the run."""
        return pd.read_parquet(io.BytesIO(self.get_bytes(run, name)))

    def exists(self, run: str, name: str = "") -> bool:
        """Whether the run (or a file of it) exists."""
        info = self.fs.get_file_info(self.path(run, name) if name else self.path(run))
        return info.type != pafs.FileType.NotFound


def run_store(settings, storage: str | None = None) -> RunStore:
    """The runs storage of the settings (or an explicit local folder / s3 URI)."""
    if storage is None and settings.deployment == "s3":
        storage = f"s3://{settings.s3_bucket}/runs"
    if storage is None:
        root = (settings.data_dir / "runs").as_posix()
        return RunStore(pafs.LocalFileSystem(), root, root)
    if storage.startswith("s3://"):
        fs = pafs.S3FileSystem(
            endpoint_override=settings.s3_endpoint_url.split("://")[-1] or None,
            region=settings.s3_region,
            scheme="http" if settings.s3_endpoint_url.startswith("http:") else "https",
            **_credentials(),
        )
        return RunStore(fs, storage.removeprefix("s3://").rstrip("/"), storage)
    from pathlib import Path

    root = Path(storage).expanduser().resolve().as_posix()
    return RunStore(pafs.LocalFileSystem(), root, root)


def _credentials() -> dict:
    """Resolved AWS credentials (boto3's standard chain), so that the filesystem
    pickled into Ray's workers carries them (workers may not share our env)."""
    import boto3

    creds = boto3.Session().get_credentials()
    if creds is None:
        return {}
    frozen = creds.get_frozen_credentials()
    out = {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
    if frozen.token:
        out["session_token"] = frozen.token
    return out

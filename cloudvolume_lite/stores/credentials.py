"""Credentials kept on disk the way CloudVolume users keep them, and the file
``$GOOGLE_APPLICATION_CREDENTIALS`` names, found and checked (never cached: each client
looks once, when it is made).

CloudVolume's folder is ``$CLOUD_VOLUME_DIR/secrets`` (``~/.cloudvolume/secrets`` by default).
For bucket ``B`` of service ``S`` (``google`` or ``aws``), ``B-S-secret.json`` wins over
``S-secret.json``. A file that exists but cannot be used is an error naming it, never a silent
fall-through to the next candidate or to anonymous access. Messages name files and keys,
never their values.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import StoreError

#: the keys CloudVolume / cloud-files read from ``aws-secret.json``
AWS_KEY_ID, AWS_SECRET, AWS_TOKEN, AWS_REGION = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class SecretFile:
    """A credentials JSON object read from ``path``."""

    path: Path
    data: Mapping[str, Any]


@dataclass(frozen=True)
class AwsKeys:
    """Keys from a CloudVolume ``aws-secret.json`` (``repr`` hides the secret ones)."""

    path: Path
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    region: str | None = None

    def __repr__(self) -> str:
        return f"AwsKeys(path={str(self.path)!r}, access_key_id=..., region={self.region!r})"


def cloudvolume_secrets_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$CLOUD_VOLUME_DIR/secrets``, or ``~/.cloudvolume/secrets``."""
    env = os.environ if environ is None else environ
    root = env.get("CLOUD_VOLUME_DIR") or os.path.join(os.path.expanduser("~"), ".cloudvolume")
    return Path(os.path.expanduser(root)) / "secrets"


def find_secret_file(service: str, bucket: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The CloudVolume secret file for ``service`` ("google", "aws") and ``bucket``, if one exists."""
    folder = cloudvolume_secrets_dir(environ)
    names = ([f"{bucket}-{service}-secret.json"] if bucket else []) + [f"{service}-secret.json"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def read_json_object(path: str | os.PathLike, origin: str) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`StoreError` naming the file (and ``origin``, where
    the path came from) if it is missing, unreadable or not a JSON object."""
    path = Path(os.path.expanduser(os.fspath(path)))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{origin} names {path}, which does not exist; "
                         "point it at a credentials JSON file or unset it") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read the credentials file {path} ({origin}): {type(e).__name__}; "
                         "check its permissions") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:  # the message holds a position, not the content
        raise StoreError(f"the credentials file {path} ({origin}) is not valid JSON "
                         f"(line {e.lineno}, column {e.colno}); fix or remove it") from None
    if not isinstance(data, dict):
        raise StoreError(f"the credentials file {path} ({origin}) holds a JSON {type(data).__name__}, "
                         "not an object; fix or remove it")
    return data


def google_application_credentials(environ: Mapping[str, str] | None = None) -> SecretFile | None:
    """The file ``$GOOGLE_APPLICATION_CREDENTIALS`` names, read and checked; None if unset.

    google-auth would report a missing file as "no credentials" and let the caller go on
    anonymously; a variable set on purpose deserves an error instead.
    """
    env = os.environ if environ is None else environ
    value = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    data = read_json_object(path, "GOOGLE_APPLICATION_CREDENTIALS")
    if not data.get("type"):
        raise StoreError(f"the credentials file {path} (GOOGLE_APPLICATION_CREDENTIALS) has no \"type\" key, so it "
                         "is not a Google credentials file; point the variable at a service-account key or an "
                         "application-default credentials file")
    return SecretFile(path, data)


def gcloud_adc_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The file ``gcloud auth application-default login`` writes, if it exists (google-auth
    reads it when ``$GOOGLE_APPLICATION_CREDENTIALS`` is unset)."""
    env = os.environ if environ is None else environ
    root = env.get("CLOUDSDK_CONFIG")
    if not root:
        base = env.get("APPDATA") if os.name == "nt" else os.path.join(os.path.expanduser("~"), ".config")
        root = os.path.join(base or "", "gcloud")
    path = Path(root) / "application_default_credentials.json"
    return path if path.is_file() else None


def google_secret(bucket: str, environ: Mapping[str, str] | None = None) -> SecretFile | None:
    """CloudVolume's ``[bucket-]google-secret.json`` (a service-account key), read; None if absent."""
    path = find_secret_file("google", bucket, environ)
    if path is None:
        return None
    data = read_json_object(path, "CloudVolume secret")
    if not data.get("type"):
        raise StoreError(f"the CloudVolume secret {path} has no \"type\" key, so it is not a Google credentials "
                         "file; replace it with a service-account key JSON or remove it")
    return SecretFile(path, data)


def aws_secret(bucket: str, environ: Mapping[str, str] | None = None) -> AwsKeys | None:
    """CloudVolume's ``[bucket-]aws-secret.json``, read and checked; None if absent."""
    path = find_secret_file("aws", bucket, environ)
    if path is None:
        return None
    data = read_json_object(path, "CloudVolume secret")
    missing = [k for k in (AWS_KEY_ID, AWS_SECRET) if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise StoreError(f"the CloudVolume secret {path} lacks {' and '.join(missing)} (it has the keys "
                         f"{sorted(data)}); add them or remove the file")
    optional = {k: data.get(k) for k in (AWS_TOKEN, AWS_REGION)}
    bad = [k for k, v in optional.items() if v is not None and not isinstance(v, str)]
    if bad:
        raise StoreError(f"the CloudVolume secret {path} has {' and '.join(bad)} that is not a string; fix it")
    return AwsKeys(path, data[AWS_KEY_ID], data[AWS_SECRET], optional[AWS_TOKEN] or None, optional[AWS_REGION] or None)

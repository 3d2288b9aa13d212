"""Secrets: they come from the environment (or a keyring when `keyring` is installed), never from a
config file; option names that look like secrets are recognised so a config can refuse them, and
echoes of a config show `***` in their place (URL passwords and secret query values included).
"""
from __future__ import annotations

import os
import re
from typing import Any

# Words that make an option name a secret wherever they stand, and words that do as its last word:
# `api_key`, `hf_token` and `client_secret` are secrets; `key_phrase_field`, `max_tokens` and
# `tokens_per_minute` are settings.
_SECRET_WORDS = frozenset({"secret", "password", "passwd", "apikey", "credential", "credentials", "cookie",
                           "authorization", "bearer", "auth"})
_SECRET_LAST = frozenset({"key", "token"})


def is_secret_name(name: str) -> bool:
    """True for option names that hold a secret (`api_key`, `token`, `hf_token`, `password`), false for
    the `*_env` form that names an environment variable instead (`api_key_env`)."""
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]
    if not words or words[-1] == "env":
        return False
    return words[-1] in _SECRET_LAST or any(w in _SECRET_WORDS for w in words)


def has_url_password(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:[^/@]*@", value) is not None


def secret_paths(options: Any, prefix: str = "", *, nested: bool = True) -> list[str]:
    """Dotted paths of the secret-looking keys (and URLs with a password) in a mapping of options;
    `nested` looks inside nested mappings too (extra_body, headers)."""
    found: list[str] = []
    if isinstance(options, dict):
        for k, v in options.items():
            path = f"{prefix}{k}"
            if is_secret_name(str(k)) or has_url_password(v):
                found.append(path)
            elif nested:
                found += secret_paths(v, path + ".")
    elif isinstance(options, list) and nested:
        for i, v in enumerate(options):
            if has_url_password(v):
                found.append(f"{prefix}{i}")
            else:
                found += secret_paths(v, f"{prefix}{i}.")
    return found


def mask_url(value: str) -> str:
    """A URL with its password (userinfo) and secret-looking query values replaced by ***."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@]*@)?(.*)$", value)
    if not m:
        return value
    scheme, userinfo, rest = m.groups()
    if userinfo:
        user = userinfo[:-1].split(":", 1)[0]
        userinfo = f"{user}:***@" if ":" in userinfo else "***@"
    rest = re.sub(r"([?&])([^=&#]+)=([^&#]*)",
                  lambda q: f"{q.group(1)}{q.group(2)}=***" if is_secret_name(q.group(2)) else q.group(0), rest)
    return f"{scheme}{userinfo or ''}{rest}"


def mask_secrets(options: Any) -> Any:
    """A copy of (nested) options with secret values as `***` and credentials in URLs masked."""
    if isinstance(options, dict):
        return {k: ("***" if is_secret_name(str(k)) else mask_secrets(v)) for k, v in options.items()}
    if isinstance(options, list):
        return [mask_secrets(v) for v in options]
    if isinstance(options, str) and "://" in options:
        return mask_url(options)
    return options


def resolve_secret(env_name: str, *, service: str = "safemlrm") -> str | None:
    """The secret named `env_name`: the environment variable first, then the system keyring
    (service "safemlrm", user `env_name`) when the optional `keyring` package is installed."""
    value = os.environ.get(env_name)
    if value:
        return value
    try:
        import keyring
    except ImportError:
        return None
    try:
        return keyring.get_password(service, env_name) or None
    except Exception:  # noqa: BLE001 - no usable keyring backend is the same as no secret there
        return None

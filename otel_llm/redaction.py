"""Built-in redaction of obvious secrets in captured text: keys, tokens, passwords, e-mail.

:func:`redact_secrets` replaces each secret by ``[REDACTED]`` and keeps what tells a reader
where it was: the ``Bearer``/``Basic`` scheme, the name of a ``password=`` pair, the scheme,
user and host of a URL with a password, the path of a Slack webhook up to ``/services/``.

:data:`SECRET_FORMATS` lists every format redacted, with a one-line description; it is the list
the README documents and the list ``tests/test_redaction.py`` proves, one sample at least each.

Every pattern runs in linear time, so a hostile prompt cannot make redaction quadratic
(``tests/test_redaction.py`` doubles adversarial inputs and checks the time doubles):

- a token may not start inside a run of its own alphabet (a look-behind), so ``sk-sk-sk-...``
  or a 100 KB base64 run is tried once, at its start, not at each repetition;
- a scan that may fail (a look-ahead, a JWT's first segments, a URL's password) is bounded, and
  runs that the next character cannot continue are possessive (``++``), so a failed match never
  backtracks through them;
- patterns start with literal characters where they can (``_token``), so the engine skips to
  the next candidate instead of trying every position: ordinary text is redacted at about
  150 ns a character (measured; the earlier ``(?i)`` key-value pattern alone cost 400).

URL passwords are redacted before e-mail addresses: the e-mail pattern would otherwise take
``pw@host`` from ``postgres://admin:pw@host/db`` and the host with it.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = [
    "KEY_HINT_PREFIXES",
    "REDACTED",
    "SECRET_FORMATS",
    "SecretFormat",
    "as_key_hint",
    "is_secret_key",
    "key_hint",
    "redact_secrets",
]

REDACTED: Final = "[REDACTED]"


class SecretFormat(NamedTuple):
    """A kind of secret :func:`redact_secrets` removes."""

    name: str
    description: str


SECRET_FORMATS: Final[tuple[SecretFormat, ...]] = (
    SecretFormat("pem_private_key", "PEM and OpenSSH private key blocks, also cut before END"),
    SecretFormat("jwt", "JSON Web Tokens (`eyJ...`, three base64url segments)"),
    SecretFormat("anthropic_key", "Anthropic API keys (`sk-ant-...`)"),
    SecretFormat("openai_project_key", "OpenAI project, service-account and admin keys"),
    SecretFormat("openai_key", "other `sk-...` keys (OpenAI, DeepSeek, OpenRouter)"),
    SecretFormat("aws_access_key_id", "AWS access key ids (`AKIA...`, `ASIA...`)"),
    SecretFormat(
        "aws_secret_access_key",
        "`aws_secret_access_key=...`, `AWS_SECRET_ACCESS_KEY: ...`, `aws_session_token=...`",
    ),
    SecretFormat("github_token", "GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`)"),
    SecretFormat("github_fine_grained_token", "GitHub fine-grained tokens (`github_pat_...`)"),
    SecretFormat("gitlab_token", "GitLab personal access tokens (`glpat-...`)"),
    SecretFormat("google_api_key", "Google API keys (`AIza...`)"),
    SecretFormat("google_oauth_token", "Google OAuth access tokens (`ya29....`)"),
    SecretFormat("google_oauth_client_secret", "Google OAuth client secrets (`GOCSPX-...`)"),
    SecretFormat("huggingface_token", "Hugging Face tokens (`hf_...`)"),
    SecretFormat("groq_key", "Groq API keys (`gsk_...`)"),
    SecretFormat("xai_key", "xAI API keys (`xai-...`)"),
    SecretFormat("replicate_token", "Replicate API tokens (`r8_...`)"),
    SecretFormat("perplexity_key", "Perplexity API keys (`pplx-...`)"),
    SecretFormat("slack_token", "Slack tokens (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xapp-`...)"),
    SecretFormat("slack_webhook", "Slack webhook URLs (`hooks.slack.com/services/...`)"),
    SecretFormat("stripe_secret_key", "Stripe secret and restricted keys (`sk_live_`, `rk_test_`)"),
    SecretFormat("stripe_webhook_secret", "Stripe webhook signing secrets (`whsec_...`)"),
    SecretFormat("sendgrid_key", "SendGrid API keys (`SG.xxx.yyy`)"),
    SecretFormat("npm_token", "npm access tokens (`npm_...`)"),
    SecretFormat("pypi_token", "PyPI API tokens (`pypi-AgE...`)"),
    SecretFormat("digitalocean_token", "DigitalOcean tokens (`dop_v1_`, `doo_v1_`, `dor_v1_`)"),
    SecretFormat("shopify_token", "Shopify access tokens (`shpat_`, `shpca_`, `shppa_`, `shpss_`)"),
    SecretFormat("bearer_token", "the credentials after `Bearer` (HTTP `Authorization` header)"),
    SecretFormat("basic_auth", "the credentials of `Authorization: Basic ...`"),
    SecretFormat("url_password", "the password in a URL (`postgres://user:pw@host/db`)"),
    SecretFormat(
        "password_pair", 'values of `password=`, `passwd:`, `"password": "..."` (any case)'
    ),
    SecretFormat(
        "api_key_pair", "values of `api_key=`, `apikey:`, `x-api-key:`, `secret_key=`, `secret:`"
    ),
    SecretFormat(
        "token_pair",
        "values of `access_token=`, `refresh_token=`, `auth_token=`, `client_secret=`",
    ),
    SecretFormat(
        "connection_string_key",
        "`AccountKey=`, `SharedAccessKey=`, `private_key=` values (Azure, service accounts)",
    ),
    SecretFormat("email_address", "e-mail addresses (`alice@example.com`)"),
)
"""Every format :func:`redact_secrets` removes, as documented in the README."""


# --- patterns ----------------------------------------------------------------------------------


def _token(prefix: str, body: str) -> str:
    """``prefix`` (plain text) starting a token, then ``body``.

    The look-behind comes after the prefix, not before it: a pattern that begins with literal
    characters lets the regex engine skip to the next possible start instead of trying every
    position, which made redaction several times faster on ordinary text (measured). The
    characters that may not precede the token are those of the token's own alphabet, so a long
    run (``sk-sk-sk-...``) is tried at its start only, not at each repetition.
    """
    literal = re.escape(prefix)
    return rf"{literal}(?<![A-Za-z0-9_-]{literal}){body}"


_SECRET_PATTERNS: Final[tuple[re.Pattern[str], ...]] = (
    # PEM private keys, with their headers (encrypted keys); also a block cut before its END.
    re.compile(
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----(?:\s*[A-Za-z-]{1,40}: [^\n]*)*"
        r"[A-Za-z0-9+/=\s]*(?:-----END[A-Z ]{0,40}PRIVATE KEY-----)?"
    ),
    # JSON Web Tokens: three base64url segments, the first a JSON header ("eyJ" = '{"').
    re.compile(_token("eyJ", r"[A-Za-z0-9_-]{4,1000}+\.[A-Za-z0-9_-]{4,20000}+\.[A-Za-z0-9_-]*")),
    # Anthropic (sk-ant-) and OpenAI project, service account and admin keys, anywhere.
    re.compile(r"sk-(?:ant|proj|svcacct|admin)-[A-Za-z0-9_-]{16,}"),
    # Other OpenAI keys (sk-...): a separate token with a digit or capital letter, which spares
    # hyphenated words like "desk-reservation-system".
    re.compile(_token("sk-", r"(?=[a-z_-]{0,200}+[0-9A-Z])[A-Za-z0-9_-]{16,}")),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    # GitHub tokens: classic/OAuth/app (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained.
    re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    # Google API keys, OAuth access tokens and OAuth client secrets.
    re.compile(r"AIza[0-9A-Za-z_-]{30,}|ya29\.[0-9A-Za-z_-]{20,}|GOCSPX-[0-9A-Za-z_-]{20,}"),
    # Prefixed tokens of other services, in one pass.
    re.compile(
        "|".join(
            (
                _token("glpat-", r"[0-9A-Za-z_-]{20,}"),  # GitLab
                _token("hf_", r"[0-9A-Za-z]{30,}"),  # Hugging Face
                _token("gsk_", r"[0-9A-Za-z]{40,}"),  # Groq
                _token("xai-", r"[0-9A-Za-z]{40,}"),  # xAI
                _token("r8_", r"[0-9A-Za-z]{30,}"),  # Replicate
                _token("pplx-", r"[0-9A-Za-z]{40,}"),  # Perplexity
                _token("xox", r"[abeoprs]-[0-9A-Za-z-]{10,}"),  # Slack bot, user... tokens
                _token("xapp-", r"[0-9A-Za-z-]{10,}"),  # Slack app-level tokens
                _token("sk_", r"(?:live|test)_[0-9A-Za-z]{10,}"),  # Stripe secret keys
                _token("rk_", r"(?:live|test)_[0-9A-Za-z]{10,}"),  # Stripe restricted keys
                _token("whsec_", r"[0-9A-Za-z]{20,}"),  # Stripe webhook secrets
                _token("SG.", r"[0-9A-Za-z_-]{16,}+\.[0-9A-Za-z_-]{16,}"),  # SendGrid
                _token("npm_", r"[0-9A-Za-z]{36,}"),  # npm
                _token("pypi-AgE", r"[0-9A-Za-z_-]{50,}"),  # PyPI (a macaroon, base64 "AgE")
                _token("do", r"[opr]_v1_[0-9a-f]{64}"),  # DigitalOcean
                _token("shp", r"(?:at|ca|pa|ss)_[0-9a-fA-F]{32}"),  # Shopify
            )
        )
    ),
)

# A URL's password: scheme://user:password@host, matched from "://" (a literal the engine finds
# fast) so the scheme is kept without being matched. The password runs to the last "@" before
# the path (passwords with a raw "@" are common); scheme, user and host are kept.
_URL_PASSWORD: Final = re.compile(
    r"(?P<keep>://(?<=[A-Za-z0-9]://)[^\s:/?#@\[\]]{0,256}+:)[^\s/?#]{1,256}@"
)
# A Slack webhook: everything after /services/ (or /workflows/, /triggers/) is the secret.
_SLACK_WEBHOOK: Final = re.compile(
    r"(?P<keep>hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]{8,}"
)
# These start with a letter class, not with "\b" or "(?i)", for the same reason as _token().
_BEARER: Final = re.compile(r"(?P<keep>[Bb](?<!\w[Bb])earer\s+)[A-Za-z0-9._~+/-]{8,}=*")
_BASIC: Final = re.compile(
    r"(?P<keep>[Aa](?<!\w[Aa])(?i:uthorization\\?[\"']?\s{0,16}[:=]\s{0,16}\\?[\"']?\s{0,16}"
    r"basic\s{1,16}))[A-Za-z0-9+/_-]{4,}+=*"
)
# The address as a whole: local part and domain. Not a URL's user (https://user@host), which
# names an account but holds no secret.
_EMAIL: Final = re.compile(
    r"(?<![A-Za-z0-9._%+-])(?<!//)[A-Za-z0-9._%+-]{1,64}+@"
    r"(?:[A-Za-z0-9-]{1,63}+\.){1,8}[A-Za-z]{2,24}"
)

_SECRET_KEY_NAMES: Final = (
    "api[_-]?key",
    "secret[_-]?key",
    "client[_-]?secret",
    "access[_-]?token",
    "auth[_-]?token",
    "refresh[_-]?token",
    "session[_-]?token",
    "password",
    "passwd",
    "secret",
    "access[_-]?key",
    "account[_-]?key",
    "private[_-]?key",
)
# Each name as "p(?i:assword)|P(?i:assword)": alternatives that start with a plain letter let
# the engine skip to the next candidate letter; "(?i)" over the whole pattern made it try every
# position, and this pass cost more than all the others together (measured: 50x slower).
_ANY_CASE_NAME: Final = "|".join(
    f"{first}(?i:{name[1:]})" for name in _SECRET_KEY_NAMES for first in (name[0], name[0].upper())
)
# name=value, name: value, "name": "value" (also inside escaped JSON: \"name\": \"value\").
_PAIR: Final = re.compile(
    rf"(?P<key>(?:{_ANY_CASE_NAME})(?:\\?[\"'])?\s*[:=]\s*)(?!(?i:\[REDACTED\]))"
    r"(?:(?P<q>\\?[\"'])(?:\\.|[^\\\n]){0,256}?(?P=q)|(?P<bare>\\?[\"']?[^\s\"'\\,;&})\]]+))"
)
# Keys of structured values (tool arguments, responses) whose scalar value is a secret: those
# that end with a secret's name, in any case ("api_key", "x-session-token", "SecretAccessKey").
_SECRET_KEY: Final = re.compile(
    rf"(?is).*(?:{'|'.join(_SECRET_KEY_NAMES)}|token|authorization|cookie)$"
)


def _replace_pair(match: re.Match[str]) -> str:
    quote = match.group("q")
    if quote is not None:
        return f"{match.group('key')}{quote}{REDACTED}{quote}"
    return f"{match.group('key')}{REDACTED}"


def redact_secrets(text: str) -> str:
    """``text`` with the secrets of :data:`SECRET_FORMATS` replaced by ``[REDACTED]``."""
    text = _URL_PASSWORD.sub(rf"\g<keep>{REDACTED}@", text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _SLACK_WEBHOOK.sub(rf"\g<keep>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<keep>{REDACTED}", text)
    text = _BASIC.sub(rf"\g<keep>{REDACTED}", text)
    text = _PAIR.sub(_replace_pair, text)
    return _EMAIL.sub(REDACTED, text)


def is_secret_key(name: str) -> bool:
    """Whether the value under key ``name`` of a structured value is a secret (``api_key``)."""
    return _SECRET_KEY.match(name) is not None


# --- key hints ---------------------------------------------------------------------------------

KEY_HINT_PREFIXES: Final[tuple[str, ...]] = (
    "sk-ant-api03-",
    "sk-ant-admin01-",
    "sk-ant-",
    "sk-proj-",
    "sk-svcacct-",
    "sk-admin-",
    "sk-or-v1-",
    "sk-",
    "gsk_",
    "xai-",
    "pplx-",
    "AIza",
    "hf_",
    "nvapi-",
)
"""The type prefixes a key hint shows (the longest that matches): fixed text every key of its
kind starts with, so a hint shows nothing of what is secret in a key but its last 4 characters.
A key with none of them is hinted by its last 4 characters alone."""

KEY_HINT_MIN_LENGTH: Final = 32
"""Keys shorter than this get no hint: placeholders (``ollama``, ``EMPTY``) and short tokens,
of which the last 4 characters would be too large a part. Provider keys are 39 (Google) to
over 160 characters (OpenAI project keys)."""

_HINT_SHAPE = re.compile(r"(?P<prefix>[A-Za-z0-9_-]{0,15}?)\.\.\.[\x21-\x7e]{4}")


def key_hint(key: object) -> str | None:
    """A non-secret hint of an API key: its type prefix and its last 4 characters,
    ``sk-proj-...Ab3d`` (``...Ab3d`` for a key of an unknown kind); None for what is not a str of
    at least ``KEY_HINT_MIN_LENGTH`` characters."""
    if not isinstance(key, str):
        return None
    key = key.strip()
    if len(key) < KEY_HINT_MIN_LENGTH:
        return None
    prefix = max((p for p in KEY_HINT_PREFIXES if key.startswith(p)), key=len, default="")
    return f"{prefix}...{key[-4:]}"


def as_key_hint(value: object) -> str | None:
    """``value`` if it has the shape of a key hint, else ``key_hint(value)``: what a span says is
    a key's hint is stored as one even when an instrumentation put the whole key there."""
    if isinstance(value, str):
        shape = _HINT_SHAPE.fullmatch(value)
        if shape is not None and shape["prefix"] in ("", *KEY_HINT_PREFIXES):
            return value
    return key_hint(value)

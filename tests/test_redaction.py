"""Built-in secret redaction: every documented format, the text it must spare, linear time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from otel_llm.redaction import REDACTED, SECRET_FORMATS, is_secret_key, redact_secrets


class Row(NamedTuple):
    format: str  # a name in SECRET_FORMATS
    text: str  # realistic text with a fake secret
    secret: str  # the part of ``text`` that must not survive


# Fake secrets, built by concatenation so that secret scanners do not flag this file.
AWS_SECRET = "wJalrXUtnFEMI/" + "K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/" + "K1SZFPTOtr/KBHBeksoGMGw=="
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK"
)
OPENSSH_BODY = (
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDxQ3mR8vK2pL9sT4wY7zB1nC6dF0gH5jE2aX8uV9iQ3AAAAJgkW4bNJFuG"
)
HEX64 = "3f5a9c2e8b1d4f60a5c3e9d7b2f8a1c4" + "7e6d5c4b3a29180f1e2d3c4b5a697887"

ROWS: tuple[Row, ...] = (
    Row(
        "pem_private_key",
        f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nok",
        PEM_BODY[:40],
    ),
    Row(
        "pem_private_key",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{OPENSSH_BODY}\n-----END OPENSSH PRIVATE KEY-----",
        OPENSSH_BODY[40:100],
    ),
    Row("jwt", f"token {JWT} expired", JWT[40:]),
    Row(
        "anthropic_key",
        "key sk-ant-api03-" + "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg-Hj_Kl9ZxCv8Bn7Mq6AA",
        "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg",
    ),
    Row(
        "openai_project_key",
        "key: sk-proj-" + "Qw3rTy7uIo9pAs2dFg4hJk6lZx8cVb1nM0_-Pq5wE7rT9yU2iO4pA6sD8fG0hJ1",
        "Qw3rTy7uIo9pAs2dFg4hJk6l",
    ),
    Row(
        "openai_project_key",
        "svc sk-svcacct-" + "Lp0Kd7Wm4Rt6YhNc3Bv5Gx9Jk2Zq8Xv2",
        "Lp0Kd7Wm4Rt6YhNc3Bv5Gx9Jk2",
    ),
    Row("openai_project_key", "sk-admin-" + "Rt6YhNc3Bv5Gx9Jk2Zq8Xv2Lp0Kd7Wm4", "Rt6YhNc3Bv5Gx9Jk"),
    Row(
        "openai_key",
        "OpenAI('sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4')",
        "A1b2C3d4E5f6G7h8I9j0",
    ),
    Row("openai_key", f"OpenRouter: sk-or-v1-{HEX64}", HEX64[:32]),
    Row("aws_access_key_id", "aws_access_key_id = AKIA" + "IOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"),
    Row("aws_access_key_id", "temporary ASIA" + "Y34FZKBOKMUTVV7A ok", "Y34FZKBOKMUTVV7A"),
    Row("aws_secret_access_key", f"[default]\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET),
    Row("aws_secret_access_key", f"env:\n  AWS_SECRET_ACCESS_KEY: {AWS_SECRET}", AWS_SECRET),
    Row("aws_secret_access_key", f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    Row(
        "aws_secret_access_key",
        f'{{"Credentials": {{"AccessKeyId": "ASIA...", "SecretAccessKey": "{AWS_SECRET}"}}}}',
        AWS_SECRET,
    ),
    Row(
        "aws_secret_access_key",
        "aws_session_token=FwoGZXIvYXdzEBYaD" + "HkN3v8Wq2Lm7Xp9Rt4Zw",
        "HkN3v8Wq2Lm7Xp9Rt4Zw",
    ),
    Row(
        "github_token", "git push https://ghp_" + "R2d2C3poBb8Yoda4Luke5Leia6Han7Solo8Chew", "Luke5"
    ),
    Row("github_token", "GH_TOKEN=gho_" + "16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F292c"),
    Row(
        "github_fine_grained_token",
        "pat github_pat_" + "11ABCDEFG0Zq8Xv2Lp0Kd7Wm4Rt6Yh1Nc3Bv5_Gx9Jk2Lm4Np6Qr8St0Uv2",
        "Zq8Xv2Lp0Kd7Wm4Rt6Yh",
    ),
    Row("gitlab_token", "PRIVATE-TOKEN: glpat-" + "xR7kZ2mQ9vB4nT6wY1pL", "xR7kZ2mQ9vB4nT6w"),
    Row(
        "google_api_key", "maps (AIza" + "SyD3x4mPl3K3yF0rT3st1ngPurp0s3sX9zQ)", "SyD3x4mPl3K3yF0r"
    ),
    Row(
        "google_oauth_token",
        "creds.token = 'ya29." + "a0AfB_byC1d2E3f4G5h6I7j8K9l0M1n2O3p4Q5r6S7t8'",
        "a0AfB_byC1d2E3f4G5h6",
    ),
    Row(
        "google_oauth_client_secret",
        "OAuth client x.apps.googleusercontent.com: GOCSPX-" + "Xw7Lm2Qp9Rt4Zv8Kc3Nb6Jd1Hf5G",
        "Xw7Lm2Qp9Rt4Zv8Kc3Nb",
    ),
    Row(
        "huggingface_token",
        "HF_TOKEN=hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
        "AbCdEfGhIjKlMnOp",
    ),
    Row(
        "groq_key",
        "groq gsk_" + "Q7w8E9r0T1y2U3i4O5p6A7s8D9f0G1h2J3k4L5z6X7c8V9b0N1m2",
        "Q7w8E9r0T1y2U3i4O5p6",
    ),
    Row(
        "xai_key",
        "XAI_API_KEY is xai-" + "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2" * 3 + "Pa1Sd0Fg",
        "Wr5Et4Yu3Io2Zx9",
    ),
    Row("replicate_token", "r8_" + "Lp0Kd7Wm4Rt6YhNc3Bv5Gx9Jk2Zq8Xv2Lp0K", "Lp0Kd7Wm4Rt6YhNc3Bv5"),
    Row(
        "perplexity_key",
        "use pplx-" + "d7Wm4Rt6YhNc3Bv5Gx9Jk2Zq8Xv2Lp0Kd7Wm4Rt6YhNc3Bv5",
        "d7Wm4Rt6YhNc3Bv5Gx9J",
    ),
    Row(
        "slack_token",
        "SLACK_BOT_TOKEN=xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOp",
        "AbCdEf",
    ),
    Row(
        "slack_token",
        "user token xoxp-" + "123456789012-123456789012-1234567890123-abcdef",
        "abcdef",
    ),
    Row("slack_token", "xoxa-2-" + "123456789012-Zx9Cv8Bn7Mq6", "Zx9Cv8Bn7Mq6"),
    Row("slack_token", "app: xapp-1-" + "A0123456789-1234567890123-f00dbeef4c0ffee", "f00dbeef4c0"),
    Row(
        "slack_webhook",
        "POST https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/" + "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2",
        "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2",
    ),
    Row(
        "stripe_secret_key", "STRIPE_KEY: 'sk_live_" + "51H8xYzAbCdEfGh1234567'", "51H8xYzAbCdEfGh"
    ),
    Row("stripe_secret_key", "restricted rk_live_" + "51H8xYzQwErTyUiOp98765", "51H8xYzQwErTyUi"),
    Row("stripe_secret_key", "test key sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjt"),
    Row(
        "stripe_webhook_secret",
        "signing with whsec_" + "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg",
        "Zx9Cv8Bn7Mq6Wr5Et4Yu",
    ),
    Row(
        "sendgrid_key",
        "SG." + "ngeVfQFYQlKU0ufo8x5d1A.TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr",
        "TwL2iGABf9DHoTf",
    ),
    Row("npm_token", "npm token npm_" + "a1B2" * 9, "a1B2a1B2a1B2"),
    Row(
        "pypi_token",
        "password = pypi-AgEIcHlwaS5vcmc"
        + "CJDk3YjEzNTFmLTg5ZTAtNDJiYS1hYzY3LWE0ZTY2Zjg4YmE0MwACKl",
        "CJDk3YjEzNTFmLTg5ZTA",
    ),
    Row("pypi_token", "twine -p pypi-AgEIcHlwaS5vcmc" + "Q" * 60, "Q" * 20),
    Row("digitalocean_token", f"DIGITALOCEAN_TOKEN dop_v1_{HEX64}", HEX64[8:40]),
    Row("shopify_token", "X-Shopify-Access-Token: shpat_" + HEX64[:32], HEX64[:24]),
    Row(
        "bearer_token",
        "Authorization: Bearer " + "Zq8Xv2Lp0Kd7Wm4Rt6Yh.Nc3Bv5Gx9Jk2",
        "Zq8Xv2Lp0Kd7Wm4Rt6Yh",
    ),
    Row(
        "basic_auth", "Authorization: Basic YWRtaW46" + "czNjcjN0UEBzcw==", "YWRtaW46czNjcjN0UEBzcw"
    ),
    Row(
        "basic_auth",
        "curl -H 'authorization: basic dXNlcjpw" + "YXNzd29yZA==' https://api.example.com",
        "dXNlcjpwYXNzd29yZA",
    ),
    Row("basic_auth", '{"Authorization": "Basic Ym9iOmh1bnRl' + 'cjI="}', "Ym9iOmh1bnRlcjI"),
    Row(
        "url_password",
        "DATABASE_URL=postgres://admin:Tr0ub4dor&3@db.example.com:5432/app",
        "Tr0ub4",
    ),
    Row(
        "url_password", "clone https://deploy:gh0st-Pa55@git.example.com/org/repo.git", "gh0st-Pa55"
    ),
    Row("url_password", "REDIS_URL=redis://:r3d1sP4ss@cache:6379/0", "r3d1sP4ss"),
    Row(
        "url_password", "mongodb+srv://svc:M0ng0%40Pw@cluster0.example.net/?retryWrites=1", "M0ng0"
    ),
    Row("url_password", "amqp://guest:p@ss-w0rd@rabbit.local/vhost", "p@ss-w0rd"),
    Row("password_pair", "DB_PASSWORD=Xk9#mP2$vL7q npm start", "Xk9#mP2$vL7q"),
    Row("password_pair", '{"user": "bob", "password": "c0rrect h0rse"}', "c0rrect h0rse"),
    Row("password_pair", "Server=db;User Id=sa;Password=Pa55w0rd!;Encrypt=true", "Pa55w0rd!"),
    Row("password_pair", "passwd: s3cr3t-Pw", "s3cr3t-Pw"),
    Row("api_key_pair", "x-api-key: 7f3a9c2e8b1d4f60a5c3e9d7b2f8a1c4", "7f3a9c2e8b1d4f60"),
    Row("api_key_pair", "SECRET_KEY = 'django-insecure-^8k#2m!x9q'", "django-insecure-^8k#2m!x9q"),
    Row("api_key_pair", "https://api.example.com/v1?apikey=Qv7Lm2Xp9Rt4Zw&q=1", "Qv7Lm2Xp9Rt4Zw"),
    Row("api_key_pair", "webhook secret: Hx8Kd2Wq7Lp4", "Hx8Kd2Wq7Lp4"),
    Row("token_pair", "access_token=Qv7Lm2Xp9Rt4ZwK3&expires_in=3600", "Qv7Lm2Xp9Rt4ZwK3"),
    Row("token_pair", '"refresh_token": "1//0gLkW3v8Xq2Lm7"', "1//0gLkW3v8Xq2Lm7"),
    Row("token_pair", "client_secret=K3v9Wm2Qx7Lp4Zr8", "K3v9Wm2Qx7Lp4Zr8"),
    Row("token_pair", "auth_token: 9f8e7d6c5b4a3928", "9f8e7d6c5b4a3928"),
    Row(
        "connection_string_key",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_KEY};"
        "EndpointSuffix=core.windows.net",
        AZURE_KEY[:40],
    ),
    Row(
        "connection_string_key",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;"
        "SharedAccessKey=Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg=",
        "Zx9Cv8Bn7Mq6Wr5Et4Yu",
    ),
    Row("connection_string_key", 'private_key: "MIIEvQIBADANBgkqhkiG9w0BAQEF"', "MIIEvQIBADANBgkq"),
    Row("email_address", "Send the invoice to alice@example.com today.", "alice@example.com"),
    Row("email_address", "<first.last+llm@mail.example.co.uk>", "first.last+llm"),
)

ORDINARY_TEXT = (
    "We use a desk-reservation-system for planning.",
    "Ask-me-anything sessions, risk-assessment-and-planning, state-of-the-art",
    "He was the bearer of bad news. Basic training starts on Monday.",
    "max_tokens=100, passwords: are they safe? The password must be long.",
    "The secret to good soup is patience; never share an API key in chat.",
    "tokens: 12, token_count=3, api_keys rotated 2 times",
    "AKIA is a prefix; eyJ too; sk- alone; xoxb- and sk_live_ and hf_ alone.",
    "See https://docs.example.com:8443/guide?page=2#auth and http://localhost:8080/health.",
    "ssh://git.example.com:22/org/repo.git, ftp://files.example.org/pub/",
    "Clone https://deploy@git.example.com/org/repo.git (a user name, no password).",
    "@dataclass\nclass Point:\n    x: int = 0\n\n\ndef norm(p: Point) -> float:\n"
    "    return math.sqrt(p.x**2)  # a @ b is a matrix product\n",
    "docker run -p 8080:80 -e MODE=prod nginx:1.25 && npm i @types/node",
    "key = row['user_id']; value = cache.get(key, default=None)",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736, id 123e4567-e89b-12d3-a456-426614174000",
    "Meeting at 10:30 in room 4B; ratio 3:2; C:\\Users\\alice\\Documents",
    "Mention @alice on Slack; the address has no at-sign here.",
    "Café déjà vu -- naïve résumé, 中文, 😀",
    "",
)


def test_the_documented_formats_are_the_tested_formats() -> None:
    documented = [spec.name for spec in SECRET_FORMATS]
    assert len(documented) == len(set(documented))
    assert len(documented) >= 25
    assert sorted({row.format for row in ROWS}) == sorted(documented)
    assert all(spec.description for spec in SECRET_FORMATS)


def test_the_readme_lists_the_module_constant() -> None:
    # The README's list of redacted formats is the documented one.
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("#### Secret formats redacted from captured content", 1)[1]
    section = section.split("\n#", 1)[0]
    listed = [line for line in section.splitlines() if line.startswith("- ")]
    assert listed == [f"- `{spec.name}`: {spec.description}" for spec in SECRET_FORMATS]


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{row.format}" for i, row in enumerate(ROWS)])
def test_each_format_is_redacted(row: Row) -> None:
    assert row.secret in row.text  # so the assertion below can fail
    redacted = redact_secrets(row.text)
    assert row.secret not in redacted, redacted
    assert REDACTED in redacted


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{row.format}" for i, row in enumerate(ROWS)])
@pytest.mark.parametrize("left", [" ", "\n", "(", "'", '"', "> ", "\t"])
def test_each_format_is_redacted_between_separators(row: Row, left: str) -> None:
    right = {"(": ")", "'": "'", '"': '"', "> ": " <"}.get(left, left)
    redacted = redact_secrets(f"before{left}{row.text}{right}after")
    assert row.secret not in redacted, redacted
    assert redacted.startswith("before")
    assert redacted.endswith("after")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What tells a reader where the secret was is kept.
        (
            "postgres://admin:pw@db.example.com/app",
            f"postgres://admin:{REDACTED}@db.example.com/app",
        ),
        ("https://u:pw@host.example.com:8443/x", f"https://u:{REDACTED}@host.example.com:8443/x"),
        ("amqp://guest:p@ss@rabbit/", f"amqp://guest:{REDACTED}@rabbit/"),
        ("redis://:pw@cache:6379", f"redis://:{REDACTED}@cache:6379"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
        ("aws_secret_access_key=abc/DEF+123", f"aws_secret_access_key={REDACTED}"),
        ("AWS_SECRET_ACCESS_KEY: abc/DEF+123\nnext", f"AWS_SECRET_ACCESS_KEY: {REDACTED}\nnext"),
        (
            "https://hooks.slack.com/services/T0/B0/Zx9Cv8Bn7Mq6 sent",
            f"https://hooks.slack.com/services/{REDACTED} sent",
        ),
        ("mail bob@example.com, thanks", f"mail {REDACTED}, thanks"),
        ("token=xoxb-1234-5678-abcdefghij", f"token={REDACTED}"),
        # An address inside a URL with a password: the password goes, the host stays.
        (
            "https://bob:pw@mail.example.com and bob@example.com",
            f"https://bob:{REDACTED}@mail.example.com and {REDACTED}",
        ),
    ],
)
def test_redaction_keeps_the_context(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


@pytest.mark.parametrize("text", ORDINARY_TEXT)
def test_ordinary_text_is_not_redacted(text: str) -> None:
    assert redact_secrets(text) == text


def test_redacting_twice_changes_nothing() -> None:
    for row in ROWS:
        once = redact_secrets(row.text)
        assert redact_secrets(once) == once


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("Authorization", True),
        ("aws_secret_access_key", True),
        ("SecretAccessKey", True),
        ("x-session-token", True),
        ("googleApiKey", True),
        ("userPassword", True),
        ("cookie", True),
        ("password", True),
        ("city", False),
        ("max_tokens", False),
        ("token_count", False),
        ("keyword", False),
    ],
)
def test_secret_keys_of_structured_values(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


# --- linear time ------------------------------------------------------------------------------


def _fill(unit: str) -> Callable[[int], str]:
    return lambda size: (unit * (size // len(unit) + 1))[:size]


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "base64 run": _fill("QUJDRGVmZ2hpams0NTY3ODkrLw"),
    "capitals run": _fill("A"),
    "eyJ repeated": _fill("eyJ"),
    "JWT header then run": lambda size: ("eyJhbGciOi." + "a" * size)[:size],
    "password= repeated": _fill("password="),
    "password= spaced": _fill("password= "),
    "password with open quote": _fill('password="' + "a" * 250),
    "password then whitespace": lambda size: ("password" + " " * size)[:size],
    "at signs": _fill("@"),
    "a@ repeated": _fill("a@"),
    "dotted a@": _fill("a.b@c."),
    "local part then @": lambda size: "a" * (size - 1) + "@",
    "domain labels": lambda size: ("a@" + "b." * size)[:size],
    ":// repeated": _fill("a://"),
    "://user: repeated": _fill("a://b:"),
    "URL password without @": _fill("x://u:" + "p" * 250),
    "sk- repeated": _fill("sk-"),
    "sk- lowercase runs": _fill(" sk-" + "a" * 199),
    "Bearer repeated": _fill("Bearer "),
    "PEM headers": _fill("-----BEGIN PRIVATE KEY-----\n"),
    "PEM header lines": lambda size: ("-----BEGIN PRIVATE KEY-----\n" + "Proc-Type: x\n" * size)[
        :size
    ],
    "Authorization: Basic repeated": _fill("Authorization: Basic "),
    "Slack webhook prefixes": _fill("hooks.slack.com/services/"),
    "SG. repeated": _fill("SG."),
    "SG.a repeated": _fill("SG.aaaaaaaaaaaaaaaaaaaa"),
    "xoxb- repeated": _fill("xoxb-"),
    "prose": _fill("The quick brown fox jumps over the lazy dog, 42 times. "),
}


def _cpu_seconds(small: str, large: str) -> tuple[float, float]:
    """CPU seconds to redact each text, the best of three interleaved runs.

    CPU time rather than wall time, and interleaved runs, so that other processes on a busy
    machine weigh on both sizes alike; a text that redacts in a few milliseconds is redacted
    several times per run, so that timer noise does not decide the ratio.
    """
    start = time.process_time()
    redact_secrets(small)
    repeat = max(1, int(0.02 / max(time.process_time() - start, 1e-6)))
    best = [float("inf"), float("inf")]
    for _ in range(3):
        for index, text in enumerate((small, large)):
            start = time.process_time()
            for _ in range(repeat):
                redact_secrets(text)
            best[index] = min(best[index], (time.process_time() - start) / repeat)
    return best[0], best[1]


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_redaction_runs_in_linear_time(name: str) -> None:
    small, large = ADVERSARIAL[name](100_000), ADVERSARIAL[name](200_000)
    assert (len(small), len(large)) == (100_000, 200_000)
    small_time, large_time = _cpu_seconds(small, large)
    ratio = large_time / small_time
    print(
        f"{name}: 100 KB {small_time * 1e3:.1f} ms, 200 KB {large_time * 1e3:.1f} ms, x{ratio:.2f}"
    )
    assert ratio < 3
    assert large_time < 1

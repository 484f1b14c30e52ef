"""The install / launch layer: setup.sh, run.sh, setup.bat, run.bat, .ci/run, .gitattributes.

The batch files are executed under wine in ``test_launchers_wine.py``; what wine cannot see is
checked here from their bytes and structure (CRLF line endings, an exit-code check after every
external command, labels that exist). The shell scripts are syntax-checked and the
parts that need no installation (argument handling, the missing-.venv hint) are run in a temporary
copy of the repository layout.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL_SCRIPTS = ["setup.sh", "run.sh", ".ci/run"]
BATCH_FILES = ["setup.bat", "run.bat"]
LAUNCHERS = SHELL_SCRIPTS + BATCH_FILES

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")


@needs_bash
@pytest.mark.parametrize("name", SHELL_SCRIPTS)
def test_shell_scripts_parse_and_are_executable(name):
    path = ROOT / name
    subprocess.run(["bash", "-n", str(path)], check=True)
    raw = path.read_bytes()
    assert raw.startswith(b"#!/usr/bin/env bash\n")
    assert b"\r" not in raw, f"{name} has CR characters: bash would fail on them"
    assert b"set -" in raw and b"pipefail" in raw
    if os.name == "posix":
        assert os.access(path, os.X_OK), f"{name} is not executable (chmod +x, git update-index --chmod=+x)"


@pytest.mark.parametrize("name", BATCH_FILES)
def test_batch_files_have_crlf_line_endings(name):
    raw = (ROOT / name).read_bytes()
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n"), f"{name} has LF-only lines: cmd.exe mis-parses labels"
    assert raw.isascii(), f"{name} must stay ASCII (the console code page is not UTF-8)"
    assert raw.lower().startswith(b"@echo off\r\n")


def _batch_lines(name):
    return [line.strip() for line in (ROOT / name).read_text(encoding="ascii").splitlines()]


@pytest.mark.parametrize("name", BATCH_FILES)
def test_batch_files_check_every_external_command(name):
    """Each interpreter call is followed by a test of %ERRORLEVEL% against 0 (any non-zero code,
    negative crash codes included, fails) or by capturing %ERRORLEVEL%."""
    lines = _batch_lines(name)
    text = "\n".join(line for line in lines if not line.lower().startswith("rem ")).lower()
    assert "setlocal enableextensions" in text and 'pushd "%~dp0"' in text and "cd /d" not in text
    assert "if errorlevel" not in text and "if not errorlevel" not in text
    calls = [i for i, line in enumerate(lines) if re.match(r'^("%VENV_PY%"|%PY%|%\*) ', line)]
    assert calls
    for i in calls:
        following = lines[i + 1].lower()
        assert following.startswith('if not "%errorlevel%"=="0"') or "=%errorlevel%" in following, (
            f"{name}: no errorlevel check after line {i + 1}: {lines[i]}")
    labels = {line[1:].lower() for line in lines if line.startswith(":") and not line.startswith("::")}
    for target in re.findall(r"(?:goto|call) :(\w+)", text):
        assert target in labels, f"{name}: goto/call to a missing label :{target}"


def _labels_and_jumps(lines):
    """The labels a batch file defines (``:name``) and the ones its ``call :x`` / ``goto :x`` reach."""
    import re

    defined = {line[1:].split()[0].lower() for line in lines if line.startswith(":") and not line.startswith("::")}
    jumps = {m.lower() for line in lines for m in re.findall(r"(?:call|goto)\s+:(\w+)", line, re.I)}
    return defined, jumps - {"eof"}


@pytest.mark.parametrize("name", BATCH_FILES)
def test_every_jump_of_a_batch_file_reaches_a_label(name):
    defined, jumps = _labels_and_jumps(_batch_lines(name))
    assert jumps <= defined, f"{name} jumps to undefined labels {sorted(jumps - defined)}"


def test_setup_bat_contract():
    """What wine cannot show (test_launchers_wine.py runs the behaviour): the order of the steps."""
    lines = _batch_lines("setup.bat")
    text = "\n".join(lines)
    code = [line for line in lines if not line.lower().startswith("rem ")]

    def first(fragment):
        return next(i for i, line in enumerate(code) if fragment in line)

    # interpreters in preference order, each checked by running it (the Store stub fails the check)
    assert first("call :try_python py -3") < first("call :try_python python")
    assert "sys.version_info < (3, 10)" in text
    assert not any(line.lstrip().lower().startswith(("where ", "findstr")) for line in code)
    # torch from the index the driver allows, before the requirements; MNIST after both
    assert first("nvidia-smi >nul 2>&1") < first("pip install torch torchvision") < first("pip install -r requirements.txt")
    assert first("pip install -r requirements.txt") < first("-m workbench.mnist_files")
    # every pip and python step is followed at once by a check of its exit code
    for i, line in enumerate(code):
        if "-m pip install" in line or "-m workbench.mnist_files" in line:
            assert code[i + 1].startswith('if not "%ERRORLEVEL%"=="0" '), f"setup.bat does not check: {line.strip()}"
    assert "TORCH_INDEX_URL" in text and "TORCH_CPU" in text and "--no-pause" in text and "if defined CI" in text


def test_run_bat_contract():
    text = "\n".join(_batch_lines("run.bat"))
    assert "main.py experiments\\default.py %*" in text and "main.py %*" in text
    assert 'set "RC=%ERRORLEVEL%"' in text and "exit /b %RC%" in text
    assert "setup.bat" in text and "pause" in text


@pytest.mark.parametrize("name", LAUNCHERS)
def test_no_launcher_writes_requirements(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert not re.search(r">>?\s*\"?[^\s\"]*requirements", text), f"{name} writes requirements.txt"
    assert not re.search(r"(sed|tee|copy|move|del|rm)\b[^\n]*requirements", text, re.IGNORECASE)


def test_gitattributes_fix_line_endings():
    text = (ROOT / ".gitattributes").read_text(encoding="utf-8")
    assert re.search(r"^\*\.bat\s+text\s+eol=crlf", text, re.M)
    assert re.search(r"^\*\.sh\s+text\s+eol=lf", text, re.M)


def test_ci_runs_setup_then_the_readme_test_command():
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "./setup.sh --no-pause --with-ray" in commands
    assert commands[-1] == ".venv/bin/python -m pytest -q --run-slow -m slow"
    # the README's command, then the numerical tests again on torch's portable kernels
    readme_command = commands.index(".venv/bin/python -m pytest -q")
    assert commands[readme_command + 1].startswith("ATEN_CPU_CAPABILITY=default .venv/bin/python -m pytest -q tests/")
    assert commands.index("./setup.sh --no-pause --with-ray") < commands.index(".venv/bin/python -m pytest -q")
    assert "shared/mnist" in text and "MNIST_DIR" in text and "CI=true" in text
    readme = ROOT / "README.md"
    if readme.exists():
        assert ".venv/bin/python -m pytest -q" in readme.read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_shell_scripts_are_executable_in_git():
    out = subprocess.run(["git", "ls-files", "-s", *SHELL_SCRIPTS], cwd=ROOT, capture_output=True, text=True)
    modes = {line.split()[3]: line.split()[0] for line in out.stdout.splitlines()}
    for name in SHELL_SCRIPTS:
        if name in modes:  # committed
            assert modes[name] == "100755", f"{name}: git update-index --chmod=+x {name}"


# ------------------------------------------------------------------------------------------------
# running the shell scripts in a scratch copy (no installation involved)


@pytest.fixture
def scratch(tmp_path):
    for name in ("setup.sh", "run.sh"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "default.py").write_text("epochs = 1\n")
    return tmp_path


def _run(cwd, *args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHON", "MNIST_DIR")}
    full_env.update(env or {})
    return subprocess.run(["bash", *args], cwd=cwd, capture_output=True, text=True, env=full_env,
                          stdin=subprocess.DEVNULL, timeout=60)


@needs_bash
def test_run_sh_without_venv_asks_for_setup(scratch):
    result = _run(scratch, "run.sh")
    assert result.returncode == 1
    assert "./setup.sh" in result.stderr and "No .venv" in result.stderr


@needs_bash
@pytest.mark.parametrize("args, forwarded", [
    ([], ["experiments/default.py"]),
    (["epochs=1", "seeds=[0]"], ["experiments/default.py", "epochs=1", "seeds=[0]"]),
    (["--no-plot"], ["experiments/default.py", "--no-plot"]),
    (["experiments/other.py", "lr=0.1"], ["experiments/other.py", "lr=0.1"]),
    (["quick_synthetic", "epochs=2"], ["quick_synthetic", "epochs=2"]),
    (["--list"], ["--list"]),
    (["--resume", "results/x y"], ["--resume", "results/x y"]),
])
def test_run_sh_forwards_arguments_to_main(scratch, args, forwarded):
    fake = scratch / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/usr/bin/env bash\nfor a in "$@"; do printf "%s\\n" "$a"; done\necho "UTF8=$PYTHONUTF8"\n')
    fake.chmod(0o755)
    result = _run(scratch, "run.sh", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["main.py", *forwarded, "UTF8=1"]


@needs_bash
def test_setup_sh_arguments(scratch):
    assert _run(scratch, "setup.sh", "--help").returncode == 0
    result = _run(scratch, "setup.sh", "--bogus")
    assert result.returncode == 2 and "unknown argument" in result.stderr


@needs_bash
def test_setup_sh_rejects_a_bad_python_and_does_not_pause(scratch):
    result = _run(scratch, "setup.sh", env={"PYTHON": str(scratch / "no-such-python"), "CI": "true"})
    assert result.returncode == 1
    assert "PYTHON=" in result.stderr and "3.10" in result.stderr and "FAILED" in result.stderr
    assert not (scratch / ".venv").exists()

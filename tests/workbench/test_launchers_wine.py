"""setup.bat and run.bat executed under wine's ``cmd /c``, with stand-in programs first on PATH.

The stand-ins (``py``, ``python``, ``python3``, ``nvidia-smi`` as ``.cmd`` files, and the venv's
``.venv\\Scripts\\python.exe``) log every command line they receive and answer with chosen output
and exit codes, negative ones included. ``python.exe`` is pip's own script launcher (distlib's
``t64.exe``, from the venv's pip) with a ``#!cmd.exe /c venvpy.cmd`` shebang: a real ``.exe`` whose
exit code is the stand-in's. The tests assert on what the stand-ins received and on exit codes.

Skipped only where wine is absent; ``.ci/run`` installs it, and CI must not skip them.

Where wine's cmd is known to differ from Windows' (so the CRLF and structure checks of
``test_launchers.py`` stay): it accepts LF-only batch files (Windows mis-parses labels and goto in
them); it drops ``%`` in some arguments; ``%CMDCMDLINE%`` is empty, so "started by a double-click"
cannot be seen here (setup.bat then never pauses); ``where.exe`` always succeeds and ``findstr.exe``
prints nothing (the launchers use neither); UNC paths (``\\\\server\\share``) cannot be entered.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WINE = shutil.which("wine")
if WINE is None and os.environ.get("CI"):
    raise RuntimeError("wine is not installed, but CI must run the launcher tests (.ci/run installs it)")
pytestmark = pytest.mark.skipif(WINE is None, reason="wine is not installed (apt-get install wine wine64)")

CRASH = -1073741819  # 0xC0000005, an access violation
PROJECT_FILES = ("setup.bat", "run.bat", "requirements.txt", "requirements-ray.txt", "main.py",
                 "experiments/default.py", "experiments/quick_synthetic.py", "workbench/runner.py")


def _launcher_template() -> bytes:
    # a path, not an import or a find_spec of pip: either switches setuptools' distutils shim off
    # for this process (_distutils_hack's spec_for_pip), and inductor's C++ builds then fail
    path = Path(sysconfig.get_paths()["purelib"]) / "pip" / "_vendor" / "distlib" / "t64.exe"
    if not path.is_file():
        pytest.skip(f"pip's script launcher {path} is missing")
    return path.read_bytes()


def win(path: Path) -> str:
    """The Windows name of a Linux path under wine (drive Z: is /)."""
    return "Z:" + str(path).replace("/", "\\")


@pytest.fixture(scope="module")
def wine_env(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH", "MNIST_DIR", "TORCH_CPU",
                                                              "TORCH_INDEX_URL", "PYTHON", "WITH_RAY")}
    env.update(WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=")
    with open(os.devnull, "wb") as null:
        subprocess.run([WINE, "cmd", "/c", "echo", "ready"], env=env, stdout=null, stderr=null, timeout=180)
        subprocess.Popen(["wineserver", "-p"], env=env, stdout=null, stderr=null)  # up between tests
    yield env
    subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=60)


class Box:
    """A copy of the project's launcher layout plus stand-ins; ``run`` executes a batch file."""

    def __init__(self, tmp_path: Path, env: dict, folder: str = "gw"):
        self.tmp, self.env = tmp_path, dict(env)
        self.root = tmp_path / folder
        self.bin = tmp_path / "bin"
        self.log = tmp_path / "calls.log"
        self.bin.mkdir()
        for name in PROJECT_FILES:
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, target)
        self.env.update(WINEPATH=win(self.bin), STANDIN_LOG=win(self.log), STANDIN_BIN=win(self.bin))
        self._exe("venvpy")

    def _exe(self, name: str) -> None:
        """bin/NAME.exe: a real program (pip's launcher) that runs bin/NAME.cmd in its own cmd and
        returns its exit code; a batch file called without CALL would never return to setup.bat."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("__main__.py", "")
        shebang = f"#!C:\\windows\\system32\\cmd.exe /c {win(self.bin / (name + '.cmd'))}\n".encode()
        (self.bin / f"{name}.exe").write_bytes(_launcher_template() + shebang + buffer.getvalue())

    def standin(self, name: str, rules: list[tuple[str, int, str]] = (), default: int = 0, actions: dict | None = None):
        """bin/NAME.exe running bin/NAME.cmd: logs ``NAME::args`` (the launcher's own path first);
        the first rule whose text is in the arguments prints its output and exits with its code
        (``actions[text]``: batch lines to run before that). The arguments are matched with
        find.exe in a file, never with %VAR:...% substitutions (which wine's cmd mis-parses when
        the value holds quotes or parentheses)."""
        if name != "venvpy":
            self._exe(name)
        args = f'"%STANDIN_BIN%\\{name}.args"'
        lines = ["@echo off", f">{args} echo %*", f'>>"%STANDIN_LOG%" echo {name}::%*']
        if name == "venvpy":
            lines.append('>>"%STANDIN_LOG%" echo env::MNIST_DIR=%MNIST_DIR%::PYTHONPATH=%PYTHONPATH%')
        for k, (text, _, _) in enumerate(rules):
            lines += [f'find "{text}" {args} >nul', f'if "%ERRORLEVEL%"=="0" goto :rule{k}']
        lines.append(f"exit /b {default}")
        for k, (text, code, output) in enumerate(rules):
            lines.append(f":rule{k}")
            if output:
                lines.append(f"echo {output}")
            lines += list((actions or {}).get(text, []))
            lines.append(f"exit /b {code}")
        (self.bin / f"{name}.cmd").write_bytes(("\r\n".join(lines) + "\r\n").encode())

    def python(self, name: str = "py", version_ok: bool = True, code: int | None = None):
        """A base interpreter stand-in: answers the version check and creates .venv."""
        make_venv = ['mkdir .venv\\Scripts 2>nul', 'copy /y "%STANDIN_BIN%\\venvpy.exe" .venv\\Scripts\\python.exe >nul']
        if code is not None:
            self.standin(name, default=code)
            return
        self.standin(name, [("sys.version_info", 0 if version_ok else 1, ""), ("-m venv", 0, "")], 0,
                     actions={"-m venv": make_venv})

    def venv(self, pip_reqs: int = 0, pip_torch: int = 0, import_check: int = 0, main: int = 0):
        """The venv's python.exe: pip, the torch checks, the MNIST step and main.py."""
        marker = "%STANDIN_BIN%\\torch_installed"
        self.standin("venvpy", [
            ("sys.version_info", 0, ""),
            ("--upgrade pip", 0, ""),
            ("torch.version.cuda", 1, ""),     # replaced below when torch is "installed"
            ("install torch torchvision", pip_torch, ""),
            ("install -r requirements.txt", pip_reqs, ""),
            ("install -r requirements-ray.txt", 0, ""),
            ("import numpy", import_check, "2.5.1+cu128 True" if import_check == 0 else ""),
            ("workbench.mnist_files", 0, "MNIST ready"),
            ("main.py", main, "main ran"),
        ], 0, actions={"install torch torchvision": [f'echo yes> "{marker}"'],
                       "torch.version.cuda": [f'if exist "{marker}" exit /b 0']})

    def run(self, bat: str, *args: str, env: dict | None = None, cwd: Path | None = None):
        """(exit code, console output, stand-in calls so far). Under wine a Linux parent sees only
        the exit code's low byte (-1073741819 arrives as 5): the full code is in the output.

        ``args`` are written as typed into a caller batch file whose last line starts the launcher
        (``"...\\setup.bat" ARGS``, no CALL: its exit code is the process's): a Linux argv would reach
        cmd through wine's quoting (``\\"`` for a quote). Output goes to a file, not a pipe: wine's
        helper processes may hold a pipe open after cmd exits."""
        caller = self.tmp / "caller.bat"
        caller.write_bytes(f'@echo off\r\n"{win(self.root / bat)}" {" ".join(args)}\r\n'.encode())
        command = [WINE, "cmd", "/c", win(caller)]
        out_path = self.tmp / "console.txt"
        before = self.tmp.with_name(self.tmp.name + "-before")
        shutil.copytree(self.tmp, before, symlinks=True, dirs_exist_ok=True)
        for attempt in range(2):
            with open(out_path, "wb") as out, open(os.devnull, "rb") as devnull:
                proc = subprocess.run(command, cwd=cwd or self.tmp, env={**self.env, **(env or {})},
                                      stdin=devnull, stdout=out, stderr=subprocess.STDOUT, timeout=120)
            console = out_path.read_bytes().decode(errors="replace")
            if proc.returncode == 0 or attempt or not _wine_did_not_start(console):
                break
            shutil.rmtree(self.tmp)  # the same run again, from the same files
            shutil.copytree(before, self.tmp, symlinks=True)
        shutil.rmtree(before, ignore_errors=True)
        return proc.returncode, console, self.calls()

    def make_venv(self) -> None:
        """.venv as setup.bat leaves it (for the run.bat tests, without running setup)."""
        scripts = self.root / ".venv" / "Scripts"
        scripts.mkdir(parents=True)
        shutil.copyfile(self.bin / "venvpy.exe", scripts / "python.exe")

    def calls(self) -> list[str]:
        """The stand-ins' log, ``NAME::arguments`` per call (the launcher's own path dropped) and
        ``env::...`` after each call of the venv's python."""
        if not self.log.exists():
            return []
        lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return [re.sub(r'^(\w[\w-]*)::"[^"]*\.exe" ?', r"\1::", line) for line in lines]


def _wine_did_not_start(console: str) -> bool:
    """Wine, not the launcher, failed: no output at all (cmd did not start; every launcher prints
    before anything can fail) or cmd could not start a program that exists (both seen on a loaded
    machine, the second as "Can't recognize '"Z:\\...\\python.exe" -c ...' as an internal or
    external command"). A launcher naming a wrong program gets the message for a missing file."""
    if not console.strip():
        return True
    for name in re.findall(r"Can't recognize '\"?([A-Za-z]:\\[^\"']+?\.exe)", console):
        if name[0].upper() == "Z" and Path(name[2:].replace("\\", "/")).is_file():
            return True
    return False


@pytest.fixture
def box(tmp_path, wine_env):
    return Box(tmp_path, wine_env)


def _nvidia(box, version: str | None, fail: bool = False):
    text = (f"| NVIDIA-SMI 550.54   Driver Version: 550.54   CUDA Version: {version}   |" if version else "")
    if fail:
        box.standin("nvidia-smi", default=9)
    else:
        box._exe("nvidia-smi")
        lines = ["@echo off", '>>"%STANDIN_LOG%" echo nvidia-smi::%*', "echo +-----------------------+"]
        if text:
            lines.append("echo " + text.replace("|", "^|"))
        lines.append("exit /b 0")
        (box.bin / "nvidia-smi.cmd").write_bytes(("\r\n".join(lines) + "\r\n").encode())


def _pip_torch_call(calls):
    return [c for c in calls if "install torch torchvision" in c]


# -- Python detection ----------------------------------------------------------------------------------
def test_no_python_at_all(box):
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and "no Python 3.10 or newer found" in out
    assert not (box.root / ".venv").exists() and not calls


def test_the_store_stub_and_python_39_are_rejected(box):
    box.python("python", code=9009)          # the Microsoft Store alias
    box.python("python3", version_ok=False)  # a Python 3.9
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and "no Python 3.10 or newer found" in out
    assert any(c.startswith("python::") for c in calls) and any(c.startswith("python3::") for c in calls)
    assert not any("-m venv" in c for c in calls)


def test_a_crashing_interpreter_is_not_accepted(box):
    box.python("py", code=CRASH)
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and not any("-m venv" in c for c in calls)


def test_py_3_happy_path_installs_everything_and_a_second_run_reuses_it(box):
    box.python("py")
    box.venv()
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code == 0, out
    assert "py::-3 -m venv .venv" in calls
    torch = _pip_torch_call(calls)
    assert len(torch) == 1 and "--index-url" not in torch[0]  # no NVIDIA driver: PyPI's CPU build
    assert any("install -r requirements.txt" in c for c in calls)
    assert "Setup finished" in out
    n = len(calls)
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code == 0 and ".venv exists, reusing it" in out
    assert not _pip_torch_call(calls[n:]), "the second run must keep the installed torch"


def test_python_may_name_a_command_with_arguments(box):
    box.python("py")
    box.venv()
    code, out, calls = box.run("setup.bat", "--no-pause", env={"PYTHON": "py -3.12"})
    assert code == 0, out
    assert any(c.startswith("py::-3.12 -c") for c in calls) and "py::-3.12 -m venv .venv" in calls


# -- torch's build -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version, index, warned", [
    ("12.4", "cu126", True), ("12.8", "cu128", False), ("13.0", "cu130", False), ("N/A", "cu128", False),
])
def test_the_cuda_index_follows_the_driver(box, version, index, warned):
    box.python("py")
    box.venv()
    _nvidia(box, version)
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code == 0, out
    torch = _pip_torch_call(calls)
    assert len(torch) == 1 and f"https://download.pytorch.org/whl/{index}" in torch[0]
    assert ("supports only CUDA 12.4" in out) is warned
    if warned:  # after its section's header, not before it
        assert out.index("[2/4] torch") < out.index("supports only CUDA")


def test_a_failing_nvidia_smi_means_no_gpu(box):
    box.python("py")
    box.venv()
    _nvidia(box, None, fail=True)
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code == 0 and "--index-url" not in _pip_torch_call(calls)[0]


@pytest.mark.parametrize("env, expected", [({"TORCH_CPU": "1"}, None), ({"TORCH_INDEX_URL": "https://example.org/whl/x"}, "https://example.org/whl/x")])
def test_torch_cpu_and_torch_index_url(box, env, expected):
    box.python("py")
    box.venv()
    _nvidia(box, "12.8")
    code, out, calls = box.run("setup.bat", "--no-pause", env=env)
    assert code == 0, out
    torch = _pip_torch_call(calls)[0]
    assert (expected in torch) if expected else ("--index-url" not in torch)


# -- failures name the step, any non-zero code counts ---------------------------------------------------------
@pytest.mark.parametrize("pip_code", [1, CRASH])
def test_a_failing_or_crashing_pip_step_fails_setup_and_names_it(box, pip_code):
    box.python("py")
    box.venv(pip_reqs=pip_code)
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and f"(exit code {pip_code})" in out
    assert "Setup FAILED at: installing requirements.txt" in out and "Setup finished" not in out
    assert not any("workbench.mnist_files" in c for c in calls)


def test_a_crashing_import_check_fails_setup(box):
    box.python("py")
    box.venv(import_check=CRASH)
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and "Setup FAILED at: checking that the installed packages import" in out
    assert "Setup finished" not in out


# -- the folder -------------------------------------------------------------------------------------------------
def test_an_incomplete_folder_stops_before_anything_is_installed(box):
    for name in PROJECT_FILES:
        if name != "setup.bat":
            (box.root / name).unlink()
    box.python("py")
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and "Extract the whole folder first" in out
    assert not calls and not (box.root / ".venv").exists()


def test_a_path_with_spaces_and_parentheses(tmp_path, wine_env):
    box = Box(tmp_path, wine_env, folder="my files (copy) x")
    box.python("py")
    box.venv()
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code == 0, out
    assert (box.root / ".venv" / "Scripts" / "python.exe").is_file()
    code, out, calls = box.run("run.bat", "epochs=1")
    assert code == 0 and any("main.py experiments\\default.py epochs=1" in c for c in calls)


def test_a_too_long_path_is_refused_before_pip_runs(tmp_path, wine_env):
    box = Box(tmp_path, wine_env, folder="d" * max(1, 120 - len(win(tmp_path))))
    box.python("py")
    box.venv()
    code, out, calls = box.run("setup.bat", "--no-pause")
    assert code != 0 and "LongPathsEnabled" in out and not calls


def test_mnist_dir_with_a_trailing_backslash_reaches_python_intact(box):
    box.python("py")
    box.venv()
    code, out, calls = box.run("setup.bat", "--no-pause", "--mnist-dir", '"C:\\mnist files\\"')
    assert code == 0, out
    mnist = [c for c in calls if "workbench.mnist_files" in c]
    assert mnist and "--source" not in mnist[0]
    assert "env::MNIST_DIR=C:\\mnist files\\::PYTHONPATH=" in calls


# -- run.bat --------------------------------------------------------------------------------------------------------
def test_run_bat_without_a_venv_says_to_run_setup(box):
    code, out, calls = box.run("run.bat", "epochs=1", env={"CI": "true"})
    assert code == 1 and "run setup.bat first" in out and not calls


@pytest.fixture
def ready(box):
    box.venv()
    box.make_venv()
    return box


def test_run_bat_passes_arguments_as_typed(ready):
    code, out, calls = ready.run("run.bat", "epochs=1", '"seeds=[0,1]"', "lr=1e-3", env={"PYTHONPATH": "C:\\leak"})
    assert code == 0, out
    main = [c for c in calls if "main.py" in c]
    assert main == ['venvpy::main.py experiments\\default.py epochs=1 "seeds=[0,1]" lr=1e-3']
    assert "env::MNIST_DIR=::PYTHONPATH=" in calls  # a global PYTHONPATH does not leak into main.py


def test_run_bat_names_a_config_or_a_command(ready):
    ready.run("run.bat", "quick_synthetic", "epochs=2")
    ready.run("run.bat", "--resume", "results\\x")
    mains = [c for c in ready.calls() if "main.py" in c]
    assert mains == ["venvpy::main.py quick_synthetic epochs=2", "venvpy::main.py --resume results\\x"]


@pytest.mark.parametrize("main_code", [1, 2, 130])
def test_run_bat_returns_main_py_exit_code(tmp_path, wine_env, main_code):
    box = Box(tmp_path, wine_env)
    box.venv(main=main_code)
    box.make_venv()
    code, out, _ = box.run("run.bat", "epochs=1")
    assert code == main_code and f"main.py exited with code {main_code}" in out

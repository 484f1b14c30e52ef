@echo off
rem Gradient Workbench setup for Windows: creates .venv, installs torch (a CUDA build when an NVIDIA
rem driver is present) and requirements.txt, and puts MNIST into data\. Safe to run again: every
rem step skips what is already done. Double-click it, or run it from a console:
rem
rem   setup.bat [--mnist-dir DIR] [--cifar-dir DIR] [--with-cifar] [cpu] [--with-ray] [--no-pause]
rem
rem   --mnist-dir DIR   offline MNIST: a folder with the four IDX files (raw or .gz), copied into data\
rem                     (same as: set MNIST_DIR=DIR)
rem   cpu               CPU-only torch even with an NVIDIA GPU (same as: set TORCH_CPU=1)
rem   --with-ray        also install Ray (requirements-ray.txt) for executor="ray" (same as: set WITH_RAY=1)
rem   --no-pause        do not wait for a key at the end (it waits only when double-clicked, and
rem                     never when the variable CI is set)
rem
rem Variables: PYTHON (interpreter that creates .venv, a path or a command with arguments such as
rem "py -3.12"; default: py -3, then python), TORCH_INDEX_URL (pip index for torch/torchvision,
rem e.g. https://download.pytorch.org/whl/cu128), TORCH_CPU=1, MNIST_DIR.
rem
rem Every step checks its exit code for any non-zero value: a plain errorlevel test ("1 or more")
rem would miss the negative codes of a crash (0xC0000005 = -1073741819), so %ERRORLEVEL% is compared with 0.
setlocal EnableExtensions
rem pushd (not cd /d): it also enters a network share (\\server\share), through a temporary drive.
pushd "%~dp0" 2>nul
if not "%ERRORLEVEL%"=="0" (
    echo error: cannot enter the folder "%~dp0" ^(a network share that is not reachable?^).
    echo   Copy the folder to a local disk ^(e.g. C:\gradient-workbench^) and run setup.bat there.
    set "RC=1"
    goto :fail_early
)
set "SCRIPT_NAME=%~nx0"
set "ROOT=%CD%"
if not "%ROOT:~-1%"=="\" set "ROOT=%ROOT%\"
set "VENV_PY=%ROOT%.venv\Scripts\python.exe"
set "PYTHONUTF8=1"
set "PIP_DISABLE_PIP_VERSION_CHECK=1"
set "PYTHONHOME="
set "PYTHONPATH="
set "TMP_OUT=%TEMP%\gradient_workbench_setup_%RANDOM%.txt"
set "NO_PAUSE=0"
if defined CI set "NO_PAUSE=1"
set "MNIST_SOURCE="
if not defined TORCH_CPU set "TORCH_CPU=0"
if not defined WITH_RAY set "WITH_RAY=0"
set "STEP=checking the folder"
call :check_folder
if not "%ERRORLEVEL%"=="0" goto :fail
call :check_path_length
if not "%ERRORLEVEL%"=="0" goto :fail
call :started_from_explorer

:parse_args
if "%~1"=="" goto :args_done
if /i "%~1"=="--no-pause" (
    set "NO_PAUSE=1"
    shift
    goto :parse_args
)
if /i "%~1"=="--mnist-dir" (
    if "%~2"=="" goto :mnist_dir_missing
    set "MNIST_SOURCE=%~2"
    shift
    shift
    goto :parse_args
)
if /i "%~1"=="--with-ray" (
    set "WITH_RAY=1"
    shift
    goto :parse_args
)
if /i "%~1"=="--cifar-dir" (
    if "%~2"=="" goto :cifar_dir_missing
    set "CIFAR_DIR=%~2"
    shift
    shift
    goto :parse_args
)
if /i "%~1"=="--with-cifar" (
    set "WITH_CIFAR=1"
    shift
    goto :parse_args
)
if /i "%~1"=="cpu" (
    set "TORCH_CPU=1"
    shift
    goto :parse_args
)
if /i "%~1"=="--cpu" (
    set "TORCH_CPU=1"
    shift
    goto :parse_args
)
if /i "%~1"=="--help" goto :usage
if /i "%~1"=="-h" goto :usage
echo error: unknown argument "%~1"
echo usage: setup.bat [--mnist-dir DIR] [--cifar-dir DIR] [--with-cifar] [cpu] [--with-ray] [--no-pause]
set "STEP=reading the arguments"
goto :fail

:mnist_dir_missing
echo error: --mnist-dir needs a folder, e.g. setup.bat --mnist-dir C:\Downloads\mnist
set "STEP=reading the arguments"
goto :fail

:cifar_dir_missing
echo error: --cifar-dir needs a folder, e.g. setup.bat --cifar-dir C:\Downloads\cifar
set "STEP=reading the arguments"
goto :fail

:usage
echo usage: setup.bat [--mnist-dir DIR] [--cifar-dir DIR] [--with-cifar] [cpu] [--with-ray] [--no-pause]
echo   --mnist-dir DIR   offline MNIST: folder with the four IDX files (raw or .gz); or set MNIST_DIR=DIR
echo   cpu               CPU-only torch even with an NVIDIA GPU; or set TORCH_CPU=1
echo   --with-ray        also install Ray for executor="ray"; or set WITH_RAY=1
echo   --cifar-dir DIR   CIFAR-10/100 from a folder or their .tar.gz archives; or set CIFAR_DIR=DIR
echo   --with-cifar      download CIFAR-10 and CIFAR-100 (2 x 170 MB); or set WITH_CIFAR=1
echo   --no-pause        do not wait for a key at the end
echo Variables: PYTHON, TORCH_INDEX_URL, TORCH_CPU, MNIST_DIR, CI
popd
endlocal & exit /b 0

:args_done
rem ---- 1. the virtual environment -----------------------------------------------------------------
echo.
if exist "%VENV_PY%" goto :venv_exists
echo [1/4] Python environment: creating .venv
set "STEP=finding Python"
set "PY="
if defined PYTHON goto :python_override
call :try_python py -3
if defined PY goto :python_found
call :try_python python
if defined PY goto :python_found
call :try_python python3
if defined PY goto :python_found
echo error: no Python 3.10 or newer found (tried "py -3", "python", "python3").
echo   Install Python from https://www.python.org/downloads/ (tick "Add python.exe to PATH"),
echo   or name an interpreter: set PYTHON=C:\path\to\python.exe and run setup.bat again.
echo   The "python" that opens the Microsoft Store is only a stub: it cannot be used.
goto :fail

:python_override
rem PYTHON is a path (quoted here, spaces allowed) or a command with arguments (py -3.12).
if exist "%PYTHON:"=%" (call :try_python "%PYTHON:"=%") else (call :try_python %PYTHON%)
if defined PY goto :python_found
echo error: PYTHON=%PYTHON% does not run or is older than Python 3.10.
echo   Name an interpreter (set PYTHON=C:\path\to\python.exe) or a launcher command (set PYTHON=py -3.12).
goto :fail

:python_found
%PY% -c "import sys; print('using', sys.executable, sys.version.split()[0])"
if not "%ERRORLEVEL%"=="0" goto :fail
%PY% -c "import venv, ensurepip" >nul 2>&1
if not "%ERRORLEVEL%"=="0" goto :no_venv_module
set "STEP=creating .venv (%PY% -m venv .venv)"
%PY% -m venv .venv
if not "%ERRORLEVEL%"=="0" goto :fail
if not exist "%VENV_PY%" goto :fail
goto :venv_ready

:no_venv_module
echo error: %PY% cannot create virtual environments (the venv/ensurepip modules are missing).
echo   Reinstall Python from https://www.python.org/downloads/ or set PYTHON to another interpreter.
set "STEP=checking Python's venv module"
goto :fail

:venv_exists
echo [1/4] Python environment: .venv exists, reusing it
"%VENV_PY%" -c "import sys; sys.exit(sys.version_info < (3, 10))"
if not "%ERRORLEVEL%"=="0" goto :venv_broken
goto :venv_ready

:venv_broken
echo error: .venv\Scripts\python.exe does not run or is older than 3.10 (was its Python moved or removed?).
echo   Delete the folder .venv and run setup.bat again.
set "STEP=checking .venv"
goto :fail

:venv_ready
"%VENV_PY%" -m pip install --quiet --upgrade pip
if not "%ERRORLEVEL%"=="0" echo warning: could not upgrade pip ^(offline?^); continuing with the current one

rem ---- 2. torch, then the requirements ---------------------------------------------------------------
rem PyPI's Windows torch is CPU-only; CUDA builds come from download.pytorch.org. The driver decides
rem (nvidia-smi), not nvcc: the wheels bundle the CUDA runtime. torch goes in first so that
rem requirements.txt (torch unpinned) keeps the build chosen here.
rem nvidia-smi is run, not looked up (where.exe may be missing): exit code 0 means a driver.
set "HAS_GPU=0"
nvidia-smi >nul 2>&1
if "%ERRORLEVEL%"=="0" set "HAS_GPU=1"
set "DRIVER_WARNING="
set "TORCH_INDEX="
set "WANT_CUDA=0"
if defined TORCH_INDEX_URL goto :torch_index_override
if "%TORCH_CPU%"=="1" goto :torch_cpu
if "%HAS_GPU%"=="0" goto :torch_cpu
call :cuda_tag
set "TORCH_INDEX=https://download.pytorch.org/whl/%CUDA_TAG%"
set "WANT_CUDA=1"
set "TORCH_NOTE=CUDA build for the NVIDIA driver (its CUDA version: %DRIVER_CUDA%) from %TORCH_INDEX%"
goto :torch_chosen

:torch_index_override
set "TORCH_INDEX=%TORCH_INDEX_URL%"
set "TORCH_NOTE=from TORCH_INDEX_URL=%TORCH_INDEX_URL%"
goto :torch_chosen

:torch_cpu
set "TORCH_NOTE=CPU-only build from PyPI"

:torch_chosen
echo.
echo [2/4] torch and torchvision: %TORCH_NOTE%
if defined DRIVER_WARNING echo warning: %DRIVER_WARNING%
set "STEP=installing torch and torchvision"
"%VENV_PY%" -c "import sys, torch, torchvision; sys.exit(0 if torch.version.cuda else 3)" >nul 2>&1
set "TORCH_STATE=%ERRORLEVEL%"
if "%TORCH_STATE%"=="0" goto :torch_installed
if "%TORCH_STATE%"=="3" goto :torch_cpu_installed
goto :torch_install

:torch_cpu_installed
if not "%WANT_CUDA%"=="1" goto :torch_installed
echo A CPU-only torch is installed but this machine has an NVIDIA GPU: replacing it with the CUDA build.
"%VENV_PY%" -m pip uninstall -y torch torchvision
if not "%ERRORLEVEL%"=="0" goto :fail
goto :torch_install

:torch_installed
echo torch is already installed. To change its build: .venv\Scripts\python -m pip uninstall -y torch torchvision
echo   then run setup.bat again (with cpu, or with TORCH_INDEX_URL set).
goto :requirements

:torch_install
if defined TORCH_INDEX goto :torch_install_index
"%VENV_PY%" -m pip install torch torchvision
if not "%ERRORLEVEL%"=="0" goto :fail
goto :requirements

:torch_install_index
"%VENV_PY%" -m pip install torch torchvision --index-url "%TORCH_INDEX%"
if not "%ERRORLEVEL%"=="0" goto :torch_index_failed
goto :requirements

:torch_index_failed
set "RC=%ERRORLEVEL%"
echo error: installing torch from %TORCH_INDEX% failed.
echo   Pick the index your driver supports (cu126, cu128, cu130 ...; see https://pytorch.org/get-started/locally/):
echo   set TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 and run setup.bat again,
echo   or run "setup.bat cpu" for the CPU-only build.
goto :fail

:requirements
echo.
echo [3/4] requirements.txt
set "STEP=installing requirements.txt (pip install -r requirements.txt)"
"%VENV_PY%" -m pip install -r requirements.txt
if not "%ERRORLEVEL%"=="0" goto :fail
if not "%WITH_RAY%"=="1" goto :ray_done
echo Ray (requirements-ray.txt), for executor="ray"
set "STEP=installing Ray (pip install -r requirements-ray.txt)"
"%VENV_PY%" -m pip install -r requirements-ray.txt
if not "%ERRORLEVEL%"=="0" goto :fail
:ray_done

set "STEP=checking that the installed packages import"
"%VENV_PY%" -c "import numpy, scipy, matplotlib, tqdm, cvxpy, torch, torchvision; print(torch.__version__, torch.cuda.is_available())" > "%TMP_OUT%"
if not "%ERRORLEVEL%"=="0" goto :fail
set "TORCH_VERSION="
set "CUDA_OK="
for /f "usebackq tokens=1,2" %%a in ("%TMP_OUT%") do (
    set "TORCH_VERSION=%%a"
    set "CUDA_OK=%%b"
)
del "%TMP_OUT%" >nul 2>&1
if not defined TORCH_VERSION goto :fail
echo imports fine: torch %TORCH_VERSION%, CUDA available: %CUDA_OK%
if "%HAS_GPU%"=="1" if not "%CUDA_OK%"=="True" if not "%TORCH_CPU%"=="1" call :warn_no_cuda

rem ---- 3. MNIST --------------------------------------------------------------------------------------
echo.
echo [4/4] MNIST into data\
rem The folder travels in the environment (MNIST_DIR), not as a quoted argument: a trailing
rem backslash ("D:\", "C:\mnist files\") would escape the closing quote for Python.
set "STEP=putting MNIST into data\"
if defined MNIST_SOURCE set "MNIST_DIR=%MNIST_SOURCE%"
"%VENV_PY%" -m workbench.mnist_files --dest data
if not "%ERRORLEVEL%"=="0" goto :fail
rem CIFAR: the folder travels in the environment (CIFAR_DIR), like MNIST_DIR above.
set "STEP=putting CIFAR into data\"
if defined CIFAR_DIR "%VENV_PY%" -m workbench.cifar_files --from-environment
if not "%ERRORLEVEL%"=="0" goto :fail
if "%WITH_CIFAR%"=="1" if not defined CIFAR_DIR "%VENV_PY%" -m workbench.cifar_files --download
if not "%ERRORLEVEL%"=="0" goto :fail

:summary
echo.
echo Setup finished.
"%VENV_PY%" -c "import sys; print('  python :', sys.version.split()[0], '(' + sys.executable + ')')"
if not "%ERRORLEVEL%"=="0" goto :fail
echo   torch  : %TORCH_VERSION%, CUDA available: %CUDA_OK%
echo   data   : "%ROOT%data\MNIST\raw"
echo Next: run.bat   (tests: .venv\Scripts\python -m pytest -q)
call :maybe_pause
popd
endlocal & exit /b 0

rem ---- failure: one place, so every step reports and pauses the same way ----------------------------
:fail
if not defined RC set "RC=%ERRORLEVEL%"
if "%RC%"=="0" set "RC=1"
del "%TMP_OUT%" >nul 2>&1
echo.
echo Setup FAILED at: %STEP% (exit code %RC%).
echo Fix the problem above and run setup.bat again; it skips what is already done.
call :maybe_pause
popd
endlocal & exit /b %RC%

:fail_early
echo Setup FAILED (exit code %RC%).
if not defined CI pause
endlocal & exit /b %RC%

rem ---- subroutines ------------------------------------------------------------------------------------
:try_python
rem Sets PY to the command %* (e.g. py -3, or a quoted path) if it runs and is Python 3.10 or newer.
rem The Microsoft Store alias "python" prints an install hint and exits 9009, so it is rejected here
rem by actually running it. The command is kept as given (not resolved to a path) so that a
rem non-ASCII user folder survives.
%* -c "import sys; sys.exit(sys.version_info < (3, 10))" >nul 2>&1
if not "%ERRORLEVEL%"=="0" goto :try_python_rejected
set PY=%*
exit /b 0
:try_python_rejected
echo   %*: not found, the Microsoft Store stub, or older than 3.10; skipping
exit /b 1

:cuda_tag
rem CUDA_TAG = the newest wheel flavour the driver supports, read from nvidia-smi's "CUDA Version: X.Y"
rem line (find.exe picks it; findstr is missing or a stub on some systems). The line's "|" and other
rem special characters stay inside for variables, where they are harmless; X and Y must be numbers.
set "CUDA_TAG=cu128"
set "DRIVER_CUDA=unknown"
set "CUDA_RAW="
set "CUDA_MAJOR="
set "CUDA_MINOR="
for /f "tokens=3 delims=:" %%a in ('nvidia-smi 2^>nul ^| find "CUDA Version"') do set "CUDA_RAW=%%a"
if not defined CUDA_RAW exit /b 0
for /f "tokens=1,2 delims=. " %%a in ("%CUDA_RAW%") do (
    set "CUDA_MAJOR=%%a"
    set "CUDA_MINOR=%%b"
)
call :is_number "%CUDA_MAJOR%"
if not "%ERRORLEVEL%"=="0" exit /b 0
call :is_number "%CUDA_MINOR%"
if not "%ERRORLEVEL%"=="0" exit /b 0
set /a CUDA_NUM=CUDA_MAJOR*100+CUDA_MINOR
set "DRIVER_CUDA=%CUDA_MAJOR%.%CUDA_MINOR%"
set "CUDA_TAG=cu126"
if %CUDA_NUM% GEQ 1208 set "CUDA_TAG=cu128"
if %CUDA_NUM% GEQ 1300 set "CUDA_TAG=cu130"
if %CUDA_NUM% LSS 1206 set "DRIVER_WARNING=the NVIDIA driver supports only CUDA %DRIVER_CUDA%; current torch builds need 12.6 or newer. Update the driver, or set TORCH_INDEX_URL."
exit /b 0

:is_number
rem Exit code 0 if %1 is a non-empty string of digits.
if "%~1"=="" exit /b 1
for /f "delims=0123456789" %%x in ("%~1") do exit /b 1
exit /b 0

:check_folder
rem setup.bat alone (double-clicked inside a ZIP) would create .venv and download GBs before failing.
for %%f in (requirements.txt main.py experiments\default.py workbench\runner.py) do (
    if not exist "%ROOT%%%f" (
        echo error: this folder is incomplete: %%f is missing next to setup.bat.
        echo   Extract the whole folder first ^(in Explorer: right-click the ZIP, "Extract All..."^),
        echo   then run setup.bat inside the extracted folder.
        exit /b 1
    )
)
exit /b 0

:check_path_length
rem The longest file in the Windows torch wheel is 121 characters under .venv\Lib\site-packages\, so
rem beyond a folder of 114 characters pip fails unless Windows' long paths are enabled.
set "PATH_LEN=0"
set "REMAINING=%ROOT%"
:path_length_loop
if defined REMAINING (
    set "REMAINING=%REMAINING:~1%"
    set /a PATH_LEN+=1
    goto :path_length_loop
)
if %PATH_LEN% LEQ 115 exit /b 0
set "LONG_PATHS=0"
for /f "tokens=3" %%v in ('reg query "HKLM\SYSTEM\CurrentControlSet\Control\FileSystem" /v LongPathsEnabled 2^>nul') do set "LONG_PATHS=%%v"
if "%LONG_PATHS%"=="0x1" exit /b 0
set "STEP=checking the folder's path length"
echo error: this folder's path is %PATH_LEN% characters long: torch's files inside .venv would pass
echo   Windows' 260-character limit and pip would fail. Move the folder to a shorter path
echo   ^(e.g. C:\gw^), or enable long paths ^(PowerShell as administrator:
echo   New-ItemProperty -Path HKLM:\SYSTEM\CurrentControlSet\Control\FileSystem -Name LongPathsEnabled -Value 1 -PropertyType DWORD -Force^)
echo   and run setup.bat again.
exit /b 1

:started_from_explorer
rem Double-clicked, Explorer runs cmd /c "...\setup.bat": %CMDCMDLINE% then names this file. Typed in
rem a console, it is that console's own command line. Pause at the end only in the first case.
set "FROM_EXPLORER=0"
setlocal EnableDelayedExpansion
set "CMDLINE=!CMDCMDLINE!"
if not defined CMDLINE (endlocal & exit /b 0)
set "WITHOUT=!CMDLINE:%SCRIPT_NAME%=!"
if not "!WITHOUT!"=="!CMDLINE!" (endlocal & set "FROM_EXPLORER=1" & exit /b 0)
endlocal
exit /b 0

:warn_no_cuda
echo.
echo WARNING: this machine has an NVIDIA GPU but torch %TORCH_VERSION% cannot use CUDA; runs will use the CPU.
echo   Update the NVIDIA driver, or reinstall torch with a CUDA build:
echo     .venv\Scripts\python -m pip uninstall -y torch torchvision
echo     set TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126   (a cuXXX your driver supports)
echo     setup.bat
exit /b 0

:maybe_pause
if "%NO_PAUSE%"=="1" exit /b 0
if not "%FROM_EXPLORER%"=="1" exit /b 0
pause
exit /b 0

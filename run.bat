@echo off
rem Gradient Workbench: run an experiment with the .venv that setup.bat created.
rem
rem   run.bat                                    experiments\default.py (the MNIST optimizer comparison)
rem   run.bat epochs=1 seeds=[0]                 experiments\default.py with overrides
rem   run.bat NAME [key=value ...]               experiments\NAME.py
rem   run.bat experiments\NAME.py [key=value]    any config
rem   run.bat --list   /   run.bat --resume RUN_DIR
rem
rem Double-clicked (no arguments) it waits for a key at the end so the window stays open (not when
rem the variable CI is set). The exit code is main.py's.
setlocal EnableExtensions
rem pushd (not cd /d): it also enters a network share (\\server\share), through a temporary drive.
pushd "%~dp0" 2>nul
if not "%ERRORLEVEL%"=="0" (
    echo error: cannot enter the folder "%~dp0" ^(a network share that is not reachable?^).
    endlocal & exit /b 1
)
set "VENV_PY=%CD%\.venv\Scripts\python.exe"
set "PYTHONUTF8=1"
set "PYTHONHOME="
set "PYTHONPATH="
set "PAUSE_AT_END=0"
if "%~1"=="" if not defined CI set "PAUSE_AT_END=1"
if not exist "%VENV_PY%" goto :no_venv

rem cmd splits arguments at "=", so %1 of "epochs=1" is "epochs": look at what %1 is instead. Run
rem experiments\default.py unless the first argument is a config (.py or an experiments\NAME) or a
rem main.py command (--list, --resume, --help). %* keeps the arguments exactly as typed.
set "USE_DEFAULT=1"
if "%~1"=="" goto :run
if /i "%~x1"==".py" set "USE_DEFAULT=0"
if exist "experiments\%~1.py" set "USE_DEFAULT=0"
if /i "%~1"=="--list" set "USE_DEFAULT=0"
if /i "%~1"=="--resume" set "USE_DEFAULT=0"
if /i "%~1"=="--help" set "USE_DEFAULT=0"
if /i "%~1"=="-h" set "USE_DEFAULT=0"

:run
if "%USE_DEFAULT%"=="1" goto :run_default
"%VENV_PY%" main.py %*
set "RC=%ERRORLEVEL%"
goto :done

:run_default
"%VENV_PY%" main.py experiments\default.py %*
set "RC=%ERRORLEVEL%"

:done
if not "%RC%"=="0" echo.
if not "%RC%"=="0" echo main.py exited with code %RC% ^(see the messages above^).
if "%PAUSE_AT_END%"=="1" pause
popd
endlocal & exit /b %RC%

:no_venv
echo No .venv here yet: run setup.bat first (double-click it, or type setup.bat in a console).
echo It creates .venv, installs the requirements and fetches MNIST.
if not defined CI pause
popd
endlocal & exit /b 1

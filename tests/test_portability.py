"""No module of edvr_vs uses a POSIX-only module or name outside a platform guard, and text is UTF-8.

A static check (the AST of every module): what Windows lacks — ``fcntl``, ``resource``, ``termios``, ``grp``,
``pwd``, … ; ``os.killpg``/``setsid``/``fork``/…; ``signal.SIGXFSZ``/``SIGHUP``/``SIGKILL``/… — may only be
reached inside ``if hasattr(...)``/``if sys.platform ...``/``if os.name ...``, a ``try`` that handles
ImportError/AttributeError, or through ``getattr``. Text files and subprocess text name their encoding
(Windows would use its ANSI code page), and ``/proc`` is read only under a Linux guard.
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "edvr_vs"
POSIX_MODULES = {"fcntl", "resource", "termios", "grp", "pwd", "pty", "tty", "posix", "syslog", "crypt"}
POSIX_NAMES = {
    "os": {"killpg", "setsid", "getpgid", "setpgid", "getsid", "fork", "forkpty", "getuid", "geteuid", "getgid",
           "getegid", "setuid", "setgid", "getppid_posix", "mkfifo", "sysconf", "pathconf", "wait4", "waitpid_posix",
           "WNOHANG", "O_NONBLOCK", "sched_setaffinity", "sched_getaffinity", "getloadavg", "uname", "nice"},
    "signal": {"SIGXFSZ", "SIGHUP", "SIGALRM", "SIGKILL", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE",
               "SIGTSTP", "SIGCONT", "SIGSTOP", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGVTALRM", "SIGPROF", "SIGBUS",
               "alarm", "pause", "setitimer", "getitimer", "siginterrupt", "pthread_kill", "pthread_sigmask",
               "sigwait", "SIG_BLOCK"},
}
GUARD_EXCEPTIONS = {"ImportError", "ModuleNotFoundError", "AttributeError", "Exception", "BaseException"}
TEXT_OPEN_MODES = {"r", "w", "a", "x", "r+", "w+", "a+", "rt", "wt", "at"}


def _is_platform_test(test: ast.expr) -> bool:
    """``hasattr(...)``, ``sys.platform ...``, ``os.name ...``, ``platform.system() ...`` anywhere in a test."""
    for node in ast.walk(test):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
            return True
        if isinstance(node, ast.Attribute) and (node.attr in ("platform", "system") or
                                                (node.attr == "name" and isinstance(node.value, ast.Name)
                                                 and node.value.id == "os")):
            return True
    return False


def _handles_import_errors(node: ast.Try) -> bool:
    for handler in node.handlers:
        caught = handler.type
        names = [caught] if not isinstance(caught, ast.Tuple) else list(caught.elts)
        if caught is None or any(isinstance(n, ast.Name) and n.id in GUARD_EXCEPTIONS for n in names):
            return True
    return False


def problems_in(source: str, name: str = "<module>") -> list[str]:
    """Every POSIX-only use outside a guard, and every text I/O without an encoding, in ``source``."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent

    def guarded(node: ast.AST) -> bool:
        while node in parents:
            parent = parents[node]
            if isinstance(parent, (ast.If, ast.IfExp, ast.While)) and node is not parent.test \
                    and _is_platform_test(parent.test):
                return True
            if isinstance(parent, ast.BoolOp) and _is_platform_test(parent.values[0]) and node is not parent.values[0]:
                return True
            if isinstance(parent, ast.Try) and node in parent.body and _handles_import_errors(parent):
                return True
            node = parent
        return False

    found = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [m for m in modules if m.split(".")[0] in POSIX_MODULES]
            if bad and not guarded(node):
                found.append(f"{where}: imports {', '.join(bad)} (POSIX only)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.attr in POSIX_NAMES.get(node.value.id, ()) and not guarded(node):
            found.append(f"{where}: {node.value.id}.{node.attr} (POSIX only)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/proc/") \
                and not guarded(node):
            found.append(f"{where}: reads {node.value} (Linux only)")
        elif isinstance(node, ast.Call):
            found += [f"{where}: {p}" for p in _text_io_problems(node)]
    return found


def _text_io_problems(call: ast.Call) -> list[str]:
    """Text I/O that would use the ANSI code page on Windows: ``text=True``/``universal_newlines=True``
    without ``encoding=``, ``open`` in a text mode and ``Path.read_text``/``write_text`` without it."""
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    has_encoding = "encoding" in keywords or any(k.arg is None for k in call.keywords)  # **TEXT carries it
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    out = []
    for flag in ("text", "universal_newlines"):
        value = keywords.get(flag)
        if isinstance(value, ast.Constant) and value.value is True and not has_encoding:
            out.append(f"{name}({flag}=True) without encoding=")
    if name == "open" and isinstance(func, ast.Name) and not has_encoding:
        mode = keywords.get("mode", call.args[1] if len(call.args) > 1 else ast.Constant("r"))
        if isinstance(mode, ast.Constant) and mode.value in TEXT_OPEN_MODES:
            out.append(f"open(..., {mode.value!r}) without encoding=")
    if name in ("read_text", "write_text") and isinstance(func, ast.Attribute) and not has_encoding \
            and len(call.args) < (2 if name == "write_text" else 1):
        out.append(f"{name}() without encoding=")
    return out


def test_the_check_finds_what_it_looks_for():
    bad = ("import fcntl\nimport os, signal, subprocess\nos.killpg(1, signal.SIGKILL)\n"
           "subprocess.run(['x'], text=True)\nopen('f', 'w')\nopen('/proc/cpuinfo')\nPath('x').read_text()\n")
    found = sorted(f.split(": ", 1)[1] for f in problems_in(bad))
    assert found == sorted([
        "imports fcntl (POSIX only)", "os.killpg (POSIX only)", "signal.SIGKILL (POSIX only)",
        "run(text=True) without encoding=", "open(..., 'w') without encoding=", "open(..., 'r') without encoding=",
        "reads /proc/cpuinfo (Linux only)", "read_text() without encoding="])
    good = ("import os, signal, subprocess, sys\ntry:\n    import resource\nexcept ImportError:\n    resource = None\n"
            "if hasattr(os, 'killpg'):\n    os.killpg(1, signal.SIGKILL)\n"
            "if sys.platform.startswith('linux'):\n    open('/proc/cpuinfo', encoding='utf-8')\n"
            "sig = getattr(signal, 'SIGXFSZ', None)\nsubprocess.run(['x'], text=True, encoding='utf-8')\n"
            "subprocess.run(['x'], capture_output=True, **TEXT)\nopen('f', 'rb')\nPath('x').read_text(encoding='utf-8')\n")
    assert problems_in(good) == []


def test_findings_name_the_line():
    assert sorted(problems_in("import os\nos.fork()\nimport fcntl\n")) == [
        "<module>:2: os.fork (POSIX only)", "<module>:3: imports fcntl (POSIX only)"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_posix_only_name_outside_a_guard(path):
    assert problems_in(path.read_text(encoding="utf-8"), str(path.relative_to(REPO))) == []

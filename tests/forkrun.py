"""``python -m distill ARGS`` many times without paying the interpreter's start-up each time.

A test that runs the CLI dozens of times (tests/reliability/test_bad_input.py) spends most of
each run importing torch, transformers and accelerate. :class:`ForkRunner` starts one server
process that imports them once and then *forks* a child per request: the child changes to the
request's directory, updates its environment, reads /dev/null on fd 0, writes fds 1 and 2 to
files and runs ``distill/__main__.py`` as ``python -m distill`` would (``runpy``, ``sys.argv``), so the
command's exit status, stdout and stderr are a real process's. An exception that escapes prints
its traceback and exits 1, as the interpreter does.

What a fork cannot show is an import-time failure of a fresh interpreter; the tests that use this
compare a few requests with a real ``python -m distill`` subprocess.

    with ForkRunner(env={"OMP_NUM_THREADS": "1"}) as runner:
        r = runner.run(["train", "cfg.yaml"], cwd=tmp)   # subprocess.CompletedProcess
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What `distill train` / `eval` import before they can fail on bad input (the CLI itself imports
# none of them: it stays light for --help).
PRELOAD = ("torch", "transformers", "accelerate", "distill.cli", "distill.train", "distill.commands", "teachers")


class ForkRunner:
    def __init__(self, env: dict | None = None, preload: tuple[str, ...] = PRELOAD):
        e = dict(os.environ)
        e.update(env or {})
        e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._tmp = tempfile.TemporaryDirectory(prefix="forkrun-")
        self.proc = subprocess.Popen([sys.executable, __file__, *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=e, cwd=ROOT)
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            self.close()
            raise RuntimeError(f"fork server did not start: {ready!r}")
        self._n = 0

    def run(self, argv: list[str], cwd: str | os.PathLike, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """``python -m distill *argv`` in ``cwd`` (``env`` on top of the server's): its exit status
        (``-N`` when signal N ended it, as ``subprocess`` reports), stdout and stderr."""
        self._n += 1
        out, err = (Path(self._tmp.name) / f"{self._n}.{s}" for s in ("out", "err"))
        req = {"argv": list(argv), "cwd": str(cwd), "env": env or {}, "out": str(out), "err": str(err),
               "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("fork server died")
        rc = json.loads(reply)["rc"]
        r = subprocess.CompletedProcess(["python", "-m", "distill", *argv], rc,
                                        out.read_text(errors="replace"), err.read_text(errors="replace"))
        out.unlink()
        err.unlink()
        return r

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> ForkRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- the server ------------------------------------------------------------------------------
def _child(req: dict) -> None:
    """In the forked child: become ``python -m distill ARGV``; never returns."""
    import runpy
    import traceback

    code = 1
    try:
        os.chdir(req["cwd"])
        sys.path[0] = os.getcwd()  # as `python -m` puts the working directory first
        os.environ.update(req["env"])
        # fd 0 is the server's request pipe: the command (and anything it starts) reads /dev/null.
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            f = os.open(path, flags, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the child exits below)
        sys.argv = ["distill", *req["argv"]]
        try:
            runpy.run_module("distill", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve(preload: list[str]) -> None:
    import importlib

    for name in preload:
        importlib.import_module(name)
    reply = sys.stdout
    print("ready", file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(req)
        deadline = time.monotonic() + float(req["timeout"])
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"rc": rc}), file=reply, flush=True)


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # not tests/ (it has a fileio package of its own): PYTHONPATH finds the project
    _serve(sys.argv[1:])

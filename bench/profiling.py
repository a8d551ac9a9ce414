"""Profile a phase of a child process with pyinstrument, switched on and off from outside.

The benchmarks start the agent and the operator as real processes (boundary_devstack's
ManagedProcess). Profiled.wrap() makes such a process run its module under this one:

    python -m bench.profiling --out-dir DIR -m boundary_agent.cli run -config ...

which runs the module unchanged, and profiles its main thread only between a SIGUSR1 and the
next SIGUSR2. On SIGUSR1 the phase's name is read from DIR/.phase; on SIGUSR2 the phase is
written as DIR/profile-<name>.txt (self time by package and by function, inclusive time by
function, then the call tree, all in percent of the phase's wall time) and as
DIR/profile-<name>.html (pyinstrument's interactive view; large for long phases). Startup,
login and idle time before and after the load are thus left out. Wall time is what is sampled,
so time the event loop spends waiting shows up as its selector's `select`. Only the main thread
is sampled (the agent and the operator do their work on its event loop), and pyinstrument's
hook on every call slows call-heavy code, so read shares, not absolute rates.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session

from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import wait_for

PHASE_FILE = ".phase"
INTERVAL = 0.001
FLAT_LINES = 45


def _package(frame: Frame) -> str:
    """The package a frame's code belongs to: dns, asyncio, websockets, boundary_agent, ...; a
    built-in counts as its caller's."""
    while frame.file_path in (None, "<built-in>") and frame.parent is not None:
        frame = frame.parent
    path = frame.file_path or "?"
    path = re.sub(r"^.*(?:/site-packages|/src|/lib/python3\.\d+)/", "", path)
    return path.split("/", 1)[0].removesuffix(".py")


@dataclass
class _Tally:
    """Time by function (self and inclusive) and self time by package, as fractions of the
    root's time. (pyinstrument's own flat view lumps every frame's `[self]` into one line.)"""

    self_time: dict[str, float] = field(default_factory=dict)
    inclusive: dict[str, float] = field(default_factory=dict)
    packages: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, root: Frame) -> _Tally:
        tally = cls()
        whole = root.time or 1.0
        stack: list[tuple[Frame, frozenset[str]]] = [(root, frozenset())]
        while stack:
            frame, callers = stack.pop()
            if frame.is_synthetic:
                continue  # a `[self]` node: already in its parent's total_self_time
            key = _key(frame)
            stack.extend((child, callers | {key}) for child in frame.children)
            _add(tally.self_time, key, frame.total_self_time / whole)
            _add(tally.packages, _package(frame), frame.total_self_time / whole)
            if key not in callers:  # a recursive call is already inside its caller's time
                _add(tally.inclusive, key, frame.time / whole)
        return tally


def _add(totals: dict[str, float], key: str, share: float) -> None:
    totals[key] = totals.get(key, 0.0) + share


def _key(frame: Frame) -> str:
    where = f"{frame.file_path_short}:{frame.line_no}" if frame.line_no else frame.file_path_short
    function = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
    return f"{function}  {where}"


def _ranked(totals: dict[str, float], limit: int) -> list[str]:
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:limit]
    return [f"{share * 100:5.1f}%  {key}" for key, share in ranked if share >= 0.001]


def _report(session: Session, name: str, command: str) -> str:
    root = session.root_frame()
    tally = _Tally.of(root) if root else _Tally()
    tree = ConsoleRenderer(unicode=True, time="percent_of_total").render(session)
    return "\n".join(
        [
            f"# profile-{name}: {command}",
            f"# phase wall time {session.duration:.1f} s, CPU time {session.cpu_time:.1f} s, "
            f"{session.sample_count} samples",
            "",
            "## Self time by package (percent of the phase's wall time; built-ins count as their "
            "caller's)",
            *_ranked(tally.packages, FLAT_LINES),
            "",
            "## Self time by function (percent of the phase's wall time)",
            *_ranked(tally.self_time, FLAT_LINES),
            "",
            "## Inclusive time by function (percent of the phase's wall time)",
            *_ranked(tally.inclusive, FLAT_LINES),
            "",
            "## Call tree, library frames grouped (percent of the phase's wall time)",
            tree,
        ]
    )


def _ready_file(out_dir: Path, pid: int) -> Path:
    return out_dir / f".ready-{pid}"


def _child(out_dir: Path, module: str, args: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    active: dict[str, tuple[str, Profiler]] = {}
    command = " ".join([module, *args])

    def begin(_signum: int, frame: types.FrameType | None) -> None:
        if "phase" in active:
            return
        name = (out_dir / PHASE_FILE).read_text().strip()
        profiler = Profiler(interval=INTERVAL, async_mode="disabled")
        profiler.start(caller_frame=frame)
        active["phase"] = (name, profiler)

    def end(_signum: int = 0, _frame: types.FrameType | None = None) -> None:
        if "phase" not in active:
            return
        name, profiler = active.pop("phase")
        session = profiler.stop()
        for suffix, text in (
            ("txt", _report(session, name, command)),
            ("html", HTMLRenderer().render(session)),
        ):
            partial = out_dir / f".profile-{name}.{suffix}.tmp"
            partial.write_text(text)
            partial.replace(out_dir / f"profile-{name}.{suffix}")

    signal.signal(signal.SIGUSR1, begin)
    signal.signal(signal.SIGUSR2, end)
    ready = _ready_file(out_dir, os.getpid())
    ready.touch()
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        end()
        ready.unlink(missing_ok=True)


@dataclass
class Profiled:
    """The parent's side: wrap() a process before it starts, then profile phases of it."""

    out_dir: Path
    process: ManagedProcess | None = field(default=None, init=False)
    written: list[Path] = field(default_factory=list, init=False)

    def wrap(self, process: ManagedProcess) -> ManagedProcess:
        argv = list(process.argv)
        if argv[1:2] != ["-m"]:
            raise ValueError(f"only `python -m module` processes can be profiled: {argv}")
        process.argv = [argv[0], "-m", "bench.profiling", "--out-dir", str(self.out_dir), *argv[1:]]
        self.process = process
        return process

    def _signal(self, signum: signal.Signals) -> None:
        process = self.process
        if process is None or process.pid is None or not process.running():
            raise RuntimeError("the profiled process is not running")
        ready = _ready_file(self.out_dir, process.pid)
        process.wait_healthy(ready.exists, 60, interval=0.05)
        os.kill(process.pid, signum)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Profile the process while the body runs; the report is written when it ends."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = self.out_dir / f"profile-{name}.txt"
        report.unlink(missing_ok=True)
        (self.out_dir / PHASE_FILE).write_text(name)
        self._signal(signal.SIGUSR1)
        started = time.monotonic()
        try:
            yield
        finally:
            self._signal(signal.SIGUSR2)
            written = wait_for(report.exists, timeout=120)
            (self.out_dir / PHASE_FILE).unlink(missing_ok=True)
            if not written:
                raise RuntimeError(
                    f"no {report} written; see {self.process and self.process.log_path}"
                )
            self.written.append(report)
            print(f"[profile] {name}: {time.monotonic() - started:.0f} s -> {report}", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[0] != "--out-dir" or argv[2] != "-m":
        raise SystemExit("usage: python -m bench.profiling --out-dir DIR -m MODULE [ARGS...]")
    _child(Path(argv[1]), argv[3], argv[4:])


if __name__ == "__main__":
    main()

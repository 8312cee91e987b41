"""The load generator's process pool, shared by the scenarios other than steady-chat.

Each part runs in its own process (``spawn``, its own uvloop) so the generator is not the
bottleneck; parts report live counters through a shared array, read and printed by the parent
twice a second; the parent can move every part to the next phase through a shared value.

    results = run_parts(target, parts, common, fields=("connected", "failed"), describe=fmt)

``target`` is a module-level ``async def target(part, common, ctl) -> dict``; ``ctl`` gives
``ctl.set(field, value)``, ``ctl.add(field, n)``, ``await ctl.phase_at_least(n)``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable


class Control:
    """A part's view of the shared counters and phase."""

    def __init__(self, slot: int, fields: tuple[str, ...], counters, phase):
        self.slot = slot
        self.index = {f: slot * len(fields) + i for i, f in enumerate(fields)}
        self.counters = counters
        self.phase = phase

    def set(self, field: str, value: int) -> None:
        self.counters[self.index[field]] = value

    def add(self, field: str, n: int = 1) -> None:
        self.counters[self.index[field]] += n

    async def phase_at_least(self, n: int, poll: float = 0.05) -> None:
        while self.phase.value < n:
            await asyncio.sleep(poll)


def _entry(target, part, common, slot, fields, counters, phase, queue) -> None:
    import uvloop

    try:
        queue.put((slot, uvloop.run(target(part, common, Control(slot, fields, counters, phase)))))
    except BaseException as exc:   # reported to the parent, which fails the run
        queue.put((slot, {"failed": f"{type(exc).__name__}: {exc}"}))


class PartPool:
    """Start the parts; then poll totals, move phases, and collect the parts' results."""

    def __init__(self, target, parts: list, common, fields: tuple[str, ...]):
        ctx = mp.get_context("spawn")
        self.fields = fields
        self.counters = ctx.Array("q", len(parts) * len(fields), lock=False)
        self.phase = ctx.Value("i", 0, lock=False)
        self.queue = ctx.Queue()
        self.results: dict[int, dict] = {}
        self.procs = [ctx.Process(target=_entry, args=(target, part, common, i, fields, self.counters, self.phase,
                                                      self.queue), daemon=True) for i, part in enumerate(parts)]
        for proc in self.procs:
            proc.start()

    def totals(self) -> dict[str, int]:
        n = len(self.fields)
        return {f: sum(self.counters[s * n + i] for s in range(len(self.procs))) for i, f in enumerate(self.fields)}

    def set_phase(self, n: int) -> None:
        self.phase.value = n

    def collect(self, timeout: float = 0.5) -> None:
        try:
            slot, res = self.queue.get(timeout=timeout)
            self.results[slot] = res
        except Exception:  # queue.Empty: nothing this round
            pass

    def done(self) -> bool:
        return len(self.results) == len(self.procs)

    def failed(self) -> list[str]:
        return [r["failed"] for r in self.results.values() if "failed" in r]

    def wait(self, until: Callable[[dict], bool], timeout: float, describe: Callable[[dict], str] | None = None,
             quiet: bool = False) -> bool:
        """Poll (printing live progress) until ``until(totals)``, a part fails, or the timeout."""
        deadline = time.monotonic() + timeout
        last_print = 0.0
        while time.monotonic() < deadline:
            self.collect(0.1)
            totals = self.totals()
            if describe is not None and not quiet and time.monotonic() - last_print >= 0.5:
                print("\r  " + describe(totals) + "   ", end="", flush=True, file=sys.stderr)
                last_print = time.monotonic()
            if self.failed():
                return False
            if until(totals):
                return True
        return until(self.totals())

    def finish(self, timeout: float = 120, quiet: bool = False) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not self.done() and time.monotonic() < deadline:
            self.collect(0.5)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        if not quiet:
            print(file=sys.stderr)
        failed = self.failed()
        if failed or not self.done():
            raise RuntimeError(f"load generator failed: {failed or 'timeout'}")
        return [self.results[i] for i in range(len(self.procs))]


def split(items: list, n: int) -> list[list]:
    return [items[i::n] for i in range(n)]


# ---- the system under test's processes: RSS and CPU from /proc --------------------------------

def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not waiting for I/O) since boot: /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def established_tcp(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is ``port`` (the server side)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            continue
    return n


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# ---- CPU profile of a gateway under load (py-spy, when installed) ------------------------------

class GatewayProfile:
    """``py-spy record`` of one process while the load runs; collapsed stacks on disk, and the
    functions where the process spends its time (self time of the innermost frame)."""

    def __init__(self, pid: int, path):
        import shutil
        import subprocess
        from pathlib import Path

        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--output", str(self.path), "--format", "raw",
                                      "--rate", "250", "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> list[list]:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        return profile_top(self.path.read_text() if self.path.exists() else "")


def profile_top(collapsed: str, n: int = 15) -> list[list]:
    """[[function (file:line), % of samples as innermost frame, % of samples anywhere on the stack]]."""
    self_count: dict[str, int] = {}
    incl_count: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        leaf = frames[-1]
        self_count[leaf] = self_count.get(leaf, 0) + c
        for frame in set(frames):
            incl_count[frame] = incl_count.get(frame, 0) + c
    if not total:
        return []
    top = sorted(self_count.items(), key=lambda kv: -kv[1])[:n]
    return [[frame, round(c * 100 / total, 1), round(incl_count[frame] * 100 / total, 1)] for frame, c in top]

"""How fast the `tether` command starts, as a ratio of `python -c "import litellm"` in the same run.

Targets (issue): `tether --help`, `tether sessions list` and `tether config` <= 0.10 x the
litellm import (aim 0.05); the chat prompt appears within 0.10 x. Ratios, not seconds,
because the machine is shared and every figure moves with its load.

    python bench/cli.py [--runs N] [--sessions N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
TETHER = str(BIN / "tether")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def time_to_prompt(args: list[str], env: dict[str, str]) -> float:
    """Spawn the chat in a pseudo-terminal; seconds until the prompt character is drawn."""
    import pexpect

    t0 = time.perf_counter()
    child = pexpect.spawn(TETHER, args, env=env, encoding="utf-8", timeout=60, dimensions=(40, 120))
    child.expect("›")
    elapsed = time.perf_counter() - t0
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    return elapsed


def median(fn: Callable[[], float], runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=200, help="sessions in the home that `sessions list` lists")
    a = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tether-bench-cli-"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(TETHER_HOME=str(home), PROMPT_TOOLKIT_NO_CPR="1",
               # what tether sets before importing litellm: no network fetch of the cost map
               LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MODE="PRODUCTION")
    os.environ["TETHER_HOME"] = str(home)
    from tether import Tether

    t = Tether(home=home)
    for i in range(a.sessions):
        sid = t.create_session(title=f"bench session {i}", model="tether/echo")
        t.add_message(sid, "user", f"question {i}")
        t.add_message(sid, "assistant", f"answer {i}")
    subprocess.run([TETHER, "sessions", "list"], env=env, stdout=subprocess.DEVNULL, check=True)  # warm the index

    py = sys.executable
    base = median(lambda: timed([py, "-c", "import litellm"], env), max(3, a.runs // 2))
    rows = [
        ("python -c pass", median(lambda: timed([py, "-c", "pass"], env), a.runs), None),
        ("python -c 'import tether'", median(lambda: timed([py, "-c", "import tether"], env), a.runs), None),
        ("tether --help", median(lambda: timed([TETHER, "--help"], env), a.runs), 0.10),
        (f"tether sessions list ({a.sessions} sessions)",
         median(lambda: timed([TETHER, "sessions", "list"], env), a.runs), 0.10),
        ("tether config", median(lambda: timed([TETHER, "config"], env), a.runs), 0.10),
        ("tether chat: time to prompt", median(lambda: time_to_prompt(["chat"], env), a.runs), 0.10),
        ("tether chat -c: time to prompt (resume)", median(lambda: time_to_prompt(["chat", "-c"], env), a.runs), 0.10),
    ]
    print(f"python -c 'import litellm': {base:.3f} s (median of {max(3, a.runs // 2)}; the baseline)")
    print(f"{'command':<44} {'seconds':>8} {'x litellm':>10}  target")
    for name, secs, target in rows:
        ratio = secs / base
        verdict = "" if target is None else (f"<= {target:.2f} " + ("ok" if ratio <= target else "MISSED")
                                             + (" (aim 0.05 met)" if ratio <= 0.05 else ""))
        print(f"{name:<44} {secs:>8.3f} {ratio:>10.3f}  {verdict}")


if __name__ == "__main__":
    main()

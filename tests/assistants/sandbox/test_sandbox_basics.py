"""What the code_interpreter relies on: state per key, plots, files in /mnt/data, errors."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from assistants.sandbox import SandboxPool
from tests.assistants.sandbox.sandbox_support import make_config, make_root

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(sandbox_available: None) -> AsyncIterator[SandboxPool]:
    root = make_root()
    pool = SandboxPool(make_config(root, warm_spare=True))
    await pool.start()
    yield pool
    await pool.close()
    shutil.rmtree(root, ignore_errors=True)


async def test_state_persists_per_key_and_is_private(pool: SandboxPool) -> None:
    first = await pool.execute("thread_a", "x = 41")
    assert first.error is None and first.result is None
    second = await pool.execute("thread_a", "x + 1")
    assert second.result == "42"
    other = await pool.execute("thread_b", "x")
    assert other.error is not None and other.error.startswith("NameError: name 'x'")
    assert (await pool.execute("thread_a", "x")).result == "41"


async def test_streams_and_result(pool: SandboxPool) -> None:
    run = await pool.execute(
        "streams", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n'done'"
    )
    assert run.stdout == "out\n"
    assert run.stderr == "err\n"
    assert run.result == "'done'"
    assert not run.timed_out and not run.restarted


async def test_error_is_plain_and_short(pool: SandboxPool) -> None:
    run = await pool.execute("errors", "def f():\n    return 1 / 0\nf()")
    assert run.error is not None
    assert run.error.startswith("ZeroDivisionError: division by zero\n")
    assert "\x1b[" not in run.error
    assert "return 1 / 0" in run.error
    assert len(run.error) < 2000
    assert (await pool.execute("errors", "2 * 3")).result == "6"


async def test_matplotlib_plot_becomes_one_png(pool: SandboxPool) -> None:
    run = await pool.execute(
        "plots",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')",
    )
    assert run.error is None
    assert len(run.images) == 1
    assert run.images[0].startswith(b"\x89PNG\r\n\x1a\n")


async def test_csv_written_to_mnt_data_is_listed_and_on_host(pool: SandboxPool) -> None:
    code = (
        "import pandas as pd\n"
        "pd.DataFrame({'n': [1, 2, 3]}).to_csv('/mnt/data/numbers.csv', index=False)\n"
        "open('notes.txt', 'w').write('cwd is /mnt/data')"
    )
    run = await pool.execute("csv", code)
    assert run.error is None
    workdir = pool.workdir("csv")
    assert run.files == [workdir / "notes.txt", workdir / "numbers.csv"]
    assert (workdir / "numbers.csv").read_text() == "n\n1\n2\n3\n"
    # unchanged files are not listed again; a modified one is
    assert (await pool.execute("csv", "1")).files == []
    run = await pool.execute("csv", "open('/mnt/data/notes.txt', 'a').write('!')")
    assert run.files == [workdir / "notes.txt"]
    assert pool.read_file("csv", run.files[0]) == b"cwd is /mnt/data!"


async def test_scientific_stack_is_there(pool: SandboxPool) -> None:
    code = (
        "import numpy as np, scipy.linalg, sympy\n"
        "x = sympy.symbols('x')\n"
        "det = float(np.linalg.det(scipy.linalg.inv(np.eye(3) * 2)))\n"
        "(round(det, 9), str(sympy.diff(x**3, x)))"
    )
    run = await pool.execute("stack", code)
    assert run.error is None
    assert run.result == "(0.125, '3*x**2')"


async def test_host_put_file_is_visible_inside(pool: SandboxPool) -> None:
    pool.put_file("inputs", "data/in.txt", b"hello from the host")
    run = await pool.execute("inputs", "open('/mnt/data/data/in.txt').read()")
    assert run.result == "'hello from the host'"

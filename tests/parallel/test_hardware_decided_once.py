"""Hardware is decided once (issue 13): outside myllm_mc/parallel/ (launch, hardware and the Runtime of
init_distributed) no module asks torch whether CUDA exists or reads a launcher's rank variables itself — under
srun, LOCAL_RANK/RANK are unset and every rank would otherwise pick GPU 0 / call itself rank 0."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "myllm_mc"
FORBIDDEN = {
    "torch.cuda.is_available": re.compile(r"torch\.cuda\.is_available"),
    "LOCAL_RANK": re.compile(r"\bLOCAL_RANK\b"),
    "RANK read from the environment": re.compile(r"""environ(\.get\(|\[)\s*["'](LOCAL_)?RANK["']"""),
}


def offenders(root: Path) -> list:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "parallel":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(root.parent)}:{number}: {what}" for what, pattern in FORBIDDEN.items()
                      if pattern.search(line)]
    return found


def test_no_module_outside_parallel_decides_hardware_or_rank():
    assert offenders(PACKAGE) == [], "use myllm_mc.parallel.hardware.cuda_available() / the Runtime, and " \
                                     "myllm_mc.parallel.launch.launcher_rank() / launcher_local_rank()"


def test_the_check_finds_what_it_forbids(tmp_path):
    package = tmp_path / "pkg"
    (package / "parallel").mkdir(parents=True)
    (package / "parallel" / "launch.py").write_text('LOCAL = os.environ["LOCAL_RANK"]\n')      # allowed there
    (package / "bench.py").write_text('import torch\nok = torch.cuda.is_available()\n'
                                      'rank = int(os.environ.get("RANK", "0"))\nlocal = env["LOCAL_RANK"]\n')
    assert offenders(package) == ["pkg/bench.py:2: torch.cuda.is_available",
                                  "pkg/bench.py:3: RANK read from the environment", "pkg/bench.py:4: LOCAL_RANK"]

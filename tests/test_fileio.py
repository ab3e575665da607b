"""convvit.fileio: the one atomic writer behind checkpoints, exports, sweep results and figures."""
from __future__ import annotations

import os
import stat

import pytest

from convvit.explain.figures import write_csv
from convvit.fileio import atomic_write, atomic_write_bytes, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_writer_gives_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:  # sweep results and explain CSVs were 0600 (mkstemp's mode) before they shared the checkpoint writer
        paths = [atomic_write_text(tmp_path / "results.csv", "a,b\n"), atomic_write_bytes(tmp_path / "x.bin", b"1"),
                 write_csv(tmp_path / "d.csv", ["h"], [("1",)])]
    finally:
        os.umask(old)
    assert [_mode(p) for p in paths] == [0o644] * 3
    assert (tmp_path / "results.csv").read_text() == "a,b\n"


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left behind


# ------------------------------------------------------------------------------------- spreadsheet-safe CSV
FORMULA = '=HYPERLINK("http://x","y")'


@pytest.mark.parametrize("cell", [FORMULA, "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "'=1"])
def test_cells_a_spreadsheet_would_run_get_a_quote(cell):
    from convvit.fileio import from_spreadsheet_safe, spreadsheet_safe

    safe = spreadsheet_safe(cell)
    assert safe == "'" + cell and from_spreadsheet_safe(safe) == cell


@pytest.mark.parametrize("cell", ["cat", "-0.5", "+3", "1e-3", "'quoted", "a=b", 1.5, None, True])
def test_other_cells_are_written_as_they_are(cell):
    from convvit.fileio import from_spreadsheet_safe, spreadsheet_safe

    assert spreadsheet_safe(cell) == cell
    if isinstance(cell, str):
        assert from_spreadsheet_safe(cell) == cell


def test_written_csv_has_no_live_formula(tmp_path):
    import csv

    from convvit.fileio import write_csv
    from convvit.inference.predict import write_predictions

    write_csv(tmp_path / "a.csv", ["name", "x"], [{"name": FORMULA, "x": -1.5, "extra": "left out"}, ("@x", None)])
    assert (tmp_path / "a.csv").read_text() == f'name,x\n"\'{FORMULA.replace(chr(34), 2 * chr(34))}",-1.5\n\'@x,\n'
    rows = [{"path": "=x.png", "pred": FORMULA, "prob": 0.9, "precision": "32"}]
    with open(write_predictions(rows, tmp_path / "p.csv", top_k=1)) as f:
        assert list(csv.DictReader(f)) == [{"path": "'=x.png", "pred": "'" + FORMULA, "prob": "0.9", "precision": "32"}]


def test_every_csv_convvit_writes_goes_through_the_safe_writer():
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "convvit"
    writers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py")
                     if "csv.writer(" in p.read_text() or "csv.DictWriter(" in p.read_text())
    assert writers == ["fileio.py"]


def test_sweep_results_read_back_what_was_written(tmp_path):
    from convvit.sweep.results import read_results, write_results

    write_results(tmp_path / "results.csv", [{"trial": "t0", "model": "=m", "run_dir": "-runs/t0", "lr": 0.1,
                                                 "status": "failed"}])
    (row,) = read_results(tmp_path / "results.csv")
    assert (row["model"], row["run_dir"], row["lr"]) == ("=m", "-runs/t0", 0.1)


def test_a_read_only_file_is_never_replaced_without_force(tmp_path):
    from convvit.errors import ReadOnlyFileError
    from convvit.fileio import write_csv

    target = tmp_path / "mine.csv"
    target.write_text("kept\n")
    target.chmod(0o444)  # os.replace ignores this, and so does root: the check is convvit's own
    with pytest.raises(ReadOnlyFileError, match=r"mine.csv exists and is read-only \(-r--r--r--\).*--force"):
        write_csv(target, ["a"], [(1,)])
    assert target.read_text() == "kept\n"
    write_csv(target, ["a"], [(1,)], force=True)
    assert target.read_text() == "a\n1\n"


# ------------------------------------------------------------------------------------------------- figures
def test_float_cells_take_the_format_asked_for(tmp_path):
    from convvit.fileio import write_csv

    write_csv(tmp_path / "f.csv", ["x", "n", "s"], [(1 / 3, 2, "0.333333333")], float_format=".6g")
    assert (tmp_path / "f.csv").read_text() == "x,n,s\n0.333333,2,0.333333333\n"  # only floats are formatted


def test_a_figure_that_fails_to_render_keeps_the_previous_png(tmp_path):
    from convvit.fileio import pyplot, save_figure

    plt = pyplot()
    png = tmp_path / "curves.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure(fig, png) == png and png.read_bytes().startswith(b"\x89PNG")
    before = png.read_bytes()
    fig, ax = plt.subplots()
    ax.set_title("$\\notacommand$")  # mathtext fails while the figure is drawn
    with pytest.raises(ValueError):
        save_figure(fig, png)
    assert png.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["curves.png"]
    # closed either way (other tests in the process may have figures of their own open)
    assert fig.number not in plt.get_fignums()


def _sources_calling(benchmarks_glob: str, *calls: str) -> list[str]:
    """The library's modules and the benchmark scripts matching ``benchmarks_glob`` whose text holds a call."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = [*(root / "src" / "convvit").rglob("*.py"), *(root / "benchmarks").glob(benchmarks_glob)]
    return sorted(str(p.relative_to(root)) for p in sources if any(call in p.read_text() for call in calls))


def test_every_png_convvit_writes_goes_through_the_atomic_figure_writer():
    savers = _sources_calling("*report*.py", ".savefig(")
    assert savers == ["src/convvit/fileio.py"]


def test_every_csv_convvit_and_its_benchmarks_write_goes_through_the_csv_writer():
    """One CSV writer (atomic, spreadsheet-safe): no module or benchmark script builds its own csv writer."""
    writers = _sources_calling("*.py", "csv.writer(", "csv.DictWriter(")
    assert writers == ["src/convvit/fileio.py"]

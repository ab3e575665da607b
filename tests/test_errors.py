"""The error policy of `convvit`: one line `convvit: error: ...`, exit 2 for usage and 1 otherwise, --debug."""
import errno
import os

import pytest

from convvit.errors import ConvvitError, UsageError, debug_requested, describe, is_disk_full, run_guarded


def _raise(err):
    def run():
        raise err

    return run


def test_user_errors_are_one_line_without_traceback(capsys):
    assert run_guarded(_raise(ConvvitError("x.ckpt is damaged.\nFix: copy it again"))) == 1
    assert capsys.readouterr().err == "convvit: error: x.ckpt is damaged. Fix: copy it again\n"
    assert run_guarded(_raise(UsageError("unknown option --modle.name"))) == 2
    assert capsys.readouterr().err == "convvit: error: unknown option --modle.name\n"


def test_debug_adds_the_traceback(capsys, monkeypatch):
    # setenv, not delenv: monkeypatch records nothing when deleting an unset variable, so the "1" that
    # debug_requested sets would outlive this test and turn on tracebacks in every later one
    monkeypatch.setenv("CONVVIT_DEBUG", "0")
    argv = ["fit", "--debug", "--model.name", "x"]
    assert debug_requested(argv) and argv == ["fit", "--model.name", "x"]
    assert os.environ["CONVVIT_DEBUG"] == "1"  # for the processes a DDP launcher starts
    assert run_guarded(_raise(ConvvitError("bad")), debug=True) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("convvit: error: bad\n")
    monkeypatch.setenv("CONVVIT_DEBUG", "0")
    assert not debug_requested(["fit"])


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        run_guarded(_raise(KeyError("a bug")))


def test_error_from_a_data_loader_worker_shows_the_worker_message():
    # torch.utils.data re-raises a worker's exception with the worker's whole traceback as its message
    wrapped = (
        "Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise BadImageError(...)\n'
        "convvit.data.images.BadImageError: cannot read image 'a/b.jpg': truncated. Fix: delete it\n"
    )
    assert describe(ConvvitError(wrapped)) == ("cannot read image 'a/b.jpg': truncated. Fix: delete it", 1)


def test_disk_full_is_recognised_through_torch_wrapping():
    # torch.save turns the OSError(ENOSPC) of a write into a RuntimeError from its zip writer
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # from None: the OSError stays the RuntimeError's __context__, as in torch
            raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 64 vs 0") from None
    except RuntimeError as err:
        assert is_disk_full(err)
        message, code = describe(err)
    assert "no space left on the device" in message and "inline_container" not in message and code == 1
    assert not is_disk_full(RuntimeError("something else"))


def test_sweep_errors_are_convvit_errors_with_exit_status_2(capsys):
    from convvit.sweep.space import SweepError

    err = SweepError("--samples 0: a sweep needs one. Fix: --samples 1")
    assert isinstance(err, ConvvitError) and isinstance(err, ValueError)
    assert run_guarded(_raise(err), prog="convvit sweep") == 2
    assert capsys.readouterr().err == "convvit sweep: error: --samples 0: a sweep needs one. Fix: --samples 1\n"


def test_summarised_bugs_are_one_line_unless_debugging(capsys):
    assert run_guarded(_raise(KeyError("a bug")), prog="convvit sweep", summarise_bugs=True) == 1
    assert capsys.readouterr().err == ("convvit sweep: error: KeyError: 'a bug'. Fix: rerun with --debug for the "
                                       "traceback\n")
    with pytest.raises(KeyError):
        run_guarded(_raise(KeyError("a bug")), debug=True, summarise_bugs=True)


def test_plot_into_a_read_only_folder_is_the_policy_line(tmp_path, capsys, monkeypatch):
    # `convvit plot` printed the bare OSError with exit status 2 (a bad command line); `convvit sweep` reports
    # the same refusal with the folder's permissions, the fix and status 1, and now so does plot
    from convvit import plots
    from convvit.cli import main as convvit_main

    folder = tmp_path / "plots"

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder / "edf.png"))

    monkeypatch.setattr(plots, "plot_edf", refused)
    assert convvit_main(["plot", "edf", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"convvit plot edf: error: {folder / 'edf.png'}: permission "
                                                         f"denied (in {tmp_path})") and "chmod u+w" in err, err

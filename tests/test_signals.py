"""convvit.signals: SIGTERM stops a command like Ctrl-C, with the shell's exit status."""
import os
import signal

import pytest

from convvit.signals import Terminated, handling, interrupt_exit_code, interrupt_name, terminate_as_interrupt


def test_sigterm_raises_terminated_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert (interrupt_exit_code(caught.value), interrupt_name(caught.value)) == (143, "SIGTERM")
    assert (interrupt_exit_code(KeyboardInterrupt()), interrupt_name(KeyboardInterrupt())) == (130, "Ctrl-C")
    assert signal.getsignal(signal.SIGTERM) is before


def test_handlers_are_left_alone_outside_the_main_thread():
    import threading

    seen = []

    def run():
        with handling(lambda *_: None) as installed:
            seen.append(installed)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [False]

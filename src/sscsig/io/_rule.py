"""What every rule's script does around its one call into sscsig: logging and input errors.

``with rule_logging(snakemake): ...`` sends the script's output and Python logging (INFO and up) to
the rule's ``log:`` file. An :class:`~sscsig.errors.InputError` raised inside is printed to the
console as one line (``sscsig: error: rule qc (sample=P1): ...``), its traceback goes to the log,
and the job fails. Any other exception is a bug: its traceback goes to the log and the console gets
one line naming the exception and the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback

from ..errors import InputError

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@contextlib.contextmanager
def rule_logging(snakemake, *, level: int = logging.INFO):
    """Log set-up and input-error handling of a rule's script (see module docstring).

    Parameters
    ----------
    snakemake
        The object Snakemake injects into ``script:`` files (``log``, ``rule``, ``wildcards``).
    level
        Logging level written to the log.
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    sys.stdout.flush(), sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(2), "w")  # the terminal (or the cluster job's stderr)
    stream = open(log_path, "w", buffering=1) if log_path else console
    saved = sys.stdout, sys.stderr
    if log_path:  # file descriptors too: worker processes and C extensions write to the log as well
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    sys.stdout = sys.stderr = stream
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    wc = ", ".join(f"{k}={v}" for k, v in dict(snakemake.wildcards).items())
    where = f"rule {snakemake.rule}" + (f" ({wc})" if wc else "")
    try:
        yield logging.getLogger(f"sscsig.{snakemake.rule}")
    except InputError as exc:
        traceback.print_exc(file=stream)
        print(f"sscsig: error: {where}: {exc}", file=console, flush=True)
        raise SystemExit(1) from None
    except Exception as exc:
        traceback.print_exc(file=stream)
        print(f"sscsig: {where} failed: {type(exc).__name__}: {exc} (traceback in {log_path})",
              file=console, flush=True)
        raise SystemExit(1) from None
    finally:
        root.removeHandler(handler)
        stream.flush()
        sys.stdout, sys.stderr = saved
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        if stream is not console:
            stream.close()
        console.close()


__all__ = ["rule_logging"]

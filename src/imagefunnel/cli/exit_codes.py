"""Exit codes every command uses, so scripts can tell a full delivery from a partial one.

0  delivered everything asked (or, for checks: everything passed)
1  partial: a job delivered fewer than K, or some scored images failed
2  failed job or invalid input (spec, file, arguments)
130  interrupted (Ctrl-C); the job can be resumed
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PARTIAL = 1
    FAILED = 2
    INTERRUPTED = 130

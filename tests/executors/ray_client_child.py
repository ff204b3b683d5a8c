"""Scores the executor tests' images on the executor ``IMAGEFUNNEL_EXECUTOR`` names, in a process
of its own, and prints what it saw as one JSON line; run by test_ray_client.py. With ``--hold`` it
instead prints ``holding`` once its workers have started and waits on a task that never ends, for
the test to take the cluster away.

A process of its own because ``ray.init("ray://...")`` turns every Ray call of its process into a
Ray Client call, which a test session that also runs a local Ray instance cannot have. It reads the
executor URL as a job does (jobs.run_funnel_job) and reports an ImageFunnelError as the CLI does:
one line on stderr, exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

from executor_fixtures import executor_images, headshot_config, same_verdicts_as_in_process
from rich.console import Console

from imagefunnel.cli.errors import print_error
from imagefunnel.cli.exit_codes import ExitCode
from imagefunnel.errors import ImageFunnelError
from imagefunnel.executors import DEFAULT_EXECUTOR_URL, open_executor, parse_executor_url, warm_up

CLUSTER_ENV = "IMAGEFUNNEL_TEST_RAY_CLUSTER"  # set on the test's Ray head only: where work ran


def main() -> int:
    config, images = headshot_config(), executor_images()
    try:
        choice = parse_executor_url(os.environ.get("IMAGEFUNNEL_EXECUTOR", DEFAULT_EXECUTOR_URL))
        with open_executor(choice, config) as executor:
            if "--hold" in sys.argv:
                warm_up(executor, workers=1)
                never = executor.submit(functools.partial(time.sleep, 3600))
                print("holding", flush=True)
                never.result()
            by_name = same_verdicts_as_in_process(executor, config, images)  # AssertionError: exit 1
            ran_on = executor.submit(functools.partial(os.getenv, CLUSTER_ENV)).result(timeout=120)
    except ImageFunnelError as exc:
        print_error(Console(stderr=True), exc)
        return ExitCode.FAILED
    import ray

    seen = {
        "passed": {name: verdict.passed for name, (verdict, _) in by_name.items()},
        "ran_on": ran_on,
        "ray_client": ray.util.client.ray.is_connected(),
    }
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())

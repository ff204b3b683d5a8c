"""Rich progress for a running job: a bar of passed-vs-asked plus a live line of what happened."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from imagefunnel.funnel import CandidateScored, FunnelObserver, RequestFailed, WaveStarted


class RichObserver(FunnelObserver):
    """The bar counts passed candidates out of K; it stops at K, since a wave in flight can pass more
    than were asked for (the best K are delivered; the summary says how many passed)."""

    def __init__(self, *, console: Console, deliver: int) -> None:
        self._deliver = deliver
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self.progress.add_task("passed", total=deliver, detail="starting")

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def wave_started(self, event: WaveStarted) -> None:
        self.progress.update(
            self._task,
            detail=f"wave {event.wave}: asking {event.size} for {event.needed} (est. pass {event.estimated_pass_rate:.0%})",
        )

    def candidate_scored(self, event: CandidateScored) -> None:
        verdict = "pass" if event.passed else f"reject: {event.reasons[0] if event.reasons else '?'}"
        self.progress.update(
            self._task,
            completed=min(event.passed_total, self._deliver),
            detail=f"{event.generated_total} generated · ${event.spent_usd:.4f} · {event.provider}: {verdict}"[
                :110
            ],
        )

    def request_failed(self, event: RequestFailed) -> None:
        self.progress.console.print(f"[yellow]request {event.request_id} failed:[/] {event.error}")

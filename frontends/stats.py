"""``chatir stats``: how searches ended on real people, from the outcome log (:mod:`agent.outcomes`).

Success rate, turns to success (ChatIR's first-hitting time: dialog rounds before the pick) and rank at
success (Hits@K), over a period, for all searches, per front-end and per questioner.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import typer

from agent.outcomes import HITS_AT, OutcomeSummary
from chatir.errors import ChatIRError

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, *, now: float | None = None) -> float:
    """``7d``, ``12h``, ``30m``, ``2w`` (that long ago) or an ISO date/time (UTC unless it says) -> unix seconds."""
    now = time.time() if now is None else now
    span = _SPAN.match(value)
    if span:
        return now - float(span.group(1)) * _UNIT_S[span.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ChatIRError(
            f"--since {value!r}: give a span (30m, 12h, 7d, 2w) or a date (2026-11-01, 2026-11-01T09:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(rows: list[OutcomeSummary], *, since: float) -> str:
    """The tables ``chatir stats`` prints."""
    start = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = ["group", "ended", "open", "success", "turns mean", "turns median", "rank mean"]
    head += [f"Hits@{k}" for k in HITS_AT] + ["none of these", "abandoned", "started over", "helpful"]
    table = [head]
    for row in rows:
        table.append(
            [
                row.group,
                str(row.ended),
                str(row.open),
                _pct(row.success_rate),
                _num(row.turns_mean),
                _num(row.turns_median),
                _num(row.rank_mean),
                *(_pct(row.hits_at.get(k)) for k in HITS_AT),
                str(row.counts["none_of_these"]),
                str(row.counts["abandoned"]),
                str(row.counts["started_over"]),
                f"{row.helpful}/{row.helpful + row.not_helpful}",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    lines = [f"Searches started since {start} (rates over ended searches; turns = rounds before the pick)"]
    for i, line in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    overall = rows[0]
    if overall.found_by_turn:
        shares = overall.found_by_turn
        last = shares.index(shares[-1])  # no change after this round
        curve = ", ".join(f"{t}: {_pct(v)}" for t, v in enumerate(shares[: last + 1]))
        lines.append(f"Found by round (all, cumulative): {curve}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("stats")
    def stats(
        since: str = typer.Option("30d", help="Period: a span (30m, 12h, 7d, 2w) or a date (2026-11-01)."),
        as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    ) -> None:
        """How searches ended: success rate, turns and rank at success, per front-end and questioner."""
        from agent.outcomes import OutcomeLog, summaries
        from agent.state_backends import open_outcome_database, postgres_url
        from chatir.settings import get_settings

        settings = get_settings()
        start = parse_since(since)
        if postgres_url(settings) is None and not settings.outcomes_db.exists():
            raise ChatIRError(
                f"no outcome log at {settings.outcomes_db}: nothing was recorded yet under this CHATIR_HOME "
                "(or CHATIR_OUTCOME_RETENTION_DAYS is 0)"
            )
        # with CHATIR_STATE_URL=postgresql://..., the log every replica shares
        log = OutcomeLog(open_outcome_database(settings), retention_days=settings.outcome_retention_days)
        try:
            rows = summaries(log.searches(since=start))
        finally:
            log.close()
        if as_json:
            typer.echo(json.dumps([row.model_dump() for row in rows], indent=1))
        else:
            typer.echo(render(rows, since=start))

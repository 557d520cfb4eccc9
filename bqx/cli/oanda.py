"""``bqx ingest backfill|follow|gaps`` and ``bqx oanda-fake serve``.

Thin commands over :mod:`ingestion.backfill`, :mod:`ingestion.follow`,
:mod:`ingestion.gaps` and :mod:`ingestion.oanda.fake`; domain errors print one line
and exit 1. ``register(ingest_app, root_app)`` adds them to the ``bqx`` command.
"""

from __future__ import annotations

import typer
from rich.table import Table

from bqx.cli.common import BqxError, console, err_console, load_settings, pairs_option

PAIRS_HELP = "Comma-separated pairs (EUR_USD,USD_JPY) or `all` for the universe."


def _pairs(settings, text: str) -> list[str]:
    from bqx.pairs import resolve_pairs

    if text.strip().lower() == "all":
        return settings.pair_list
    return resolve_pairs(text.split(","), settings.pair_list)


def _fail(exc: BaseException) -> BqxError:
    """The one-line domain error ``bqx`` prints before exiting with code 1."""
    return BqxError(str(exc))


def _quiet_library_logs() -> None:
    """oandapyV20 logs every failed request at ERROR; our client reports them."""
    import logging

    logging.getLogger("oandapyV20").setLevel(logging.CRITICAL)


def _domain_errors() -> tuple[type[BaseException], ...]:
    from bqx.pairs import UnknownPairError
    from bqx.warehouse import WarehouseError
    from ingestion.backfill import BackfillError
    from ingestion.oanda.client import OandaError

    return (UnknownPairError, WarehouseError, BackfillError, OandaError, ValueError)


def backfill_command(
    pairs: str = typer.Option(..., "--pairs", help=PAIRS_HELP, callback=pairs_option),
    since: str = typer.Option(..., "--since", help="Start (UTC), e.g. 2024-01-01."),
    until: str | None = typer.Option(None, "--until", help="End (UTC, exclusive)."),
    price: str = typer.Option(
        "M", "--price", help="M (mid) or MBA (+bid/ask, spread)."
    ),
    rate: float = typer.Option(
        100.0, "--rate", help="Requests per second, all workers."
    ),
    workers: int = typer.Option(8, "--workers", help="Pairs fetched concurrently."),
    page_size: int = typer.Option(5000, "--page-size", help="Candles per request."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per request."),
    retries: int = typer.Option(5, "--retries", help="Retries of a failing request."),
) -> None:
    """Backfill M1 candles from OANDA, resuming from each pair's watermark.

    Ctrl-C or SIGTERM stops it between two batches (exit code 130); a rerun
    resumes. Example: `bqx ingest backfill --pairs EUR_USD --since 2024-01-01`
    """
    from ingestion.backfill import BackfillError, backfill
    from ingestion.oanda.client import OandaClient, RetryPolicy
    from ingestion.oanda.progress import RichProgress
    from ingestion.oanda.ratelimit import RateLimiter

    _quiet_library_logs()
    stop, previous = _stop_on_signals()
    try:
        settings = load_settings()
        names = _pairs(settings, pairs)
        client = OandaClient(
            settings,
            RateLimiter(rate),
            timeout=timeout,
            retry=RetryPolicy(attempts=retries + 1),
        )
        with RichProgress(console) as bars:
            summary = backfill(
                settings, names, since, until, price=price, workers=workers,
                page_size=page_size, progress=bars, client=client, stop=stop,
            )  # fmt: skip
    except BackfillError as exc:
        raise _fail(exc) from None
    except _domain_errors() as exc:
        raise _fail(exc) from None
    finally:
        _restore_signals(previous)
    _print_summary(summary)
    if stop.is_set():
        err_console.print("interrupted: what is stored is complete; rerun to resume")
        raise SystemExit(130)


def _stop_on_signals():
    """An event set by SIGINT/SIGTERM (instead of KeyboardInterrupt mid-write)."""
    import signal
    import threading

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    return stop, previous


def _restore_signals(previous) -> None:
    import signal

    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _print_summary(summary) -> None:
    table = Table("pair", "from", "pages", "bars", "rejected")
    for s in summary.pairs.values():
        table.add_row(
            s.pair,
            f"{s.start:%Y-%m-%d %H:%M}",
            str(s.pages),
            str(s.bars),
            str(s.rejected),
        )
    console.print(table)
    r = summary.loaded
    rate = summary.bars / summary.wall_s if summary.wall_s else 0.0
    console.print(
        f"{summary.bars} bars in {summary.wall_s:.1f} s ({rate:,.0f} bars/s): "
        f"{r.inserted} inserted, {r.updated} updated, {r.unchanged} unchanged; "
        f"{summary.rejected} rejected ({summary.quarantined} newly quarantined); "
        f"{summary.requests} requests, {summary.retries} retries"
    )


def follow_command(
    pairs: str = typer.Option("all", "--pairs", help=PAIRS_HELP, callback=pairs_option),
    interval: float | None = typer.Option(
        None,
        "--interval",
        help="Seconds between polls (default 2); with --stream the longest wait "
        "for a new minute to be announced before a full poll anyway (default 30).",
    ),
    stream: bool = typer.Option(
        True,
        "--stream/--poll",
        help="--stream (default): read OANDA's pricing stream and fetch a pair's "
        "candles as soon as its new minute starts (needs BQX_OANDA_ACCOUNT); "
        "--poll: poll every --interval seconds.",
    ),
    price: str = typer.Option(
        "M", "--price", help="M (mid) or MBA (+bid/ask, spread)."
    ),
    lookback: int = typer.Option(
        500, "--lookback", help="Candles to fetch for a pair with no watermark yet."
    ),
    max_polls: int | None = typer.Option(None, "--max-polls", help="Stop after N."),
) -> None:
    """Append newly completed M1 candles from OANDA (and raw.candles_m5).

    By default the pricing stream announces each pair's new minute and its
    candles are fetched at once (lower latency, fewer requests than polling);
    --poll polls every --interval seconds instead. Stops cleanly on Ctrl-C or
    SIGTERM, between fetches. Examples:
    `bqx ingest follow --pairs all --interval 30` (stream; a full poll after
    30 s without news); `bqx ingest follow --pairs EUR_USD --poll --interval 1`
    """
    from ingestion.backfill import _check_price
    from ingestion.follow import follow

    _quiet_library_logs()
    stop, previous = _stop_on_signals()

    def on_poll(result) -> None:
        new = sum(len(v) for v in result.new_bars.values())
        if new or result.rejected:
            console.print(
                f"poll {result.number}: {new} new bars, {result.rejected} rejected, "
                f"forming: {len(result.forming)} pairs"
            )

    try:
        settings = load_settings()
        names = _pairs(settings, pairs)
        if interval is None:
            interval = 30.0 if stream else 2.0
        stats = follow(
            settings,
            names,
            interval=interval,
            price=_check_price(price),
            lookback=lookback,
            stop=stop,
            max_polls=max_polls,
            on_poll=on_poll,
            stream=stream,
        )
    except _domain_errors() as exc:
        raise _fail(exc) from None
    finally:
        _restore_signals(previous)
    console.print(
        f"stopped after {stats.polls} polls: {stats.bars} bars appended, "
        f"{stats.rejected} rejected"
    )


def gaps_command(
    pairs: str = typer.Option("all", "--pairs", help=PAIRS_HELP, callback=pairs_option),
    since: str | None = typer.Option(None, "--since", help="Start (UTC)."),
    until: str | None = typer.Option(None, "--until", help="End (UTC, exclusive)."),
    repair: bool = typer.Option(False, "--repair", help="Ask the API to fill them."),
    price: str = typer.Option("M", "--price", help="Price components for --repair."),
    show: int = typer.Option(20, "--show", help="Longest gaps to list."),
) -> None:
    """List missing in-session minutes per pair; --repair fetches them.

    Ranges the API confirms empty are recorded (raw.candle_gaps_confirmed) and
    never asked again. Minutes whose candle OANDA sent malformed (quarantined in
    raw.candles_rejected) are listed apart, status `quarantined` with the reason;
    --repair asks for them once more, then records them and stops asking.
    Example: `bqx ingest gaps --pairs EUR_USD --repair`
    """
    from bqx.warehouse import open_warehouse
    from ingestion.backfill import _check_price
    from ingestion.gaps import find_gaps, gap_report, repair_gaps
    from ingestion.oanda.client import OandaClient

    _quiet_library_logs()
    try:
        settings = load_settings()
        names = _pairs(settings, pairs)
        with open_warehouse(settings) as wh:
            wh.ensure_schema()
            gaps = find_gaps(wh, names, since, until)
            _print_gaps(gaps, gap_report(gaps), show)
            if repair and gaps:
                client = OandaClient(settings)
                result = repair_gaps(wh, client, gaps, _check_price(price))
                client.close()
                left = find_gaps(wh, names, since, until)
                missing = [g for g in left if g.status == "missing"]
                held = sum(g.minutes for g in left if g.status != "missing")
                console.print(
                    f"repair: {result.requests} requests, {result.filled} bars filled, "
                    f"{result.confirmed_minutes} minutes confirmed empty, "
                    f"{result.quarantined_minutes} minutes malformed again "
                    f"(quarantined, not asked again), {result.rejected} newly "
                    f"rejected; {len(missing)} gaps left, {held} quarantined minutes"
                )
    except _domain_errors() as exc:
        raise _fail(exc) from None


def _print_gaps(gaps, report, show: int) -> None:
    table = Table(
        "pair", "status", "length", "gaps", "minutes", title="gaps by pair and length"
    )
    for r in report.itertuples(index=False):
        table.add_row(r.pair, r.status, r.length, str(r.gaps), str(r.minutes))
    console.print(table)
    missing = [g for g in gaps if g.status == "missing"]
    held = [g for g in gaps if g.status != "missing"]
    longest = sorted(missing, key=lambda g: -g.minutes)[:show]
    if longest:
        top = Table("pair", "from (UTC)", "to (UTC)", "minutes", title="longest gaps")
        for g in longest:
            top.add_row(
                g.pair,
                f"{g.start:%Y-%m-%d %H:%M}",
                f"{g.end:%Y-%m-%d %H:%M}",
                str(g.minutes),
            )
        console.print(top)
    if held:
        bad = Table(
            "pair", "from (UTC)", "minutes", "rechecked", "reason",
            title="quarantined minutes (malformed candles, raw.candles_rejected)",
        )  # fmt: skip
        for g in held[:show]:
            bad.add_row(
                g.pair,
                f"{g.start:%Y-%m-%d %H:%M}",
                str(g.minutes),
                "yes" if g.rechecked else "no",
                g.reason or "",
            )
        console.print(bad)
    console.print(
        f"{len(missing)} gaps, {sum(g.minutes for g in missing)} missing minutes; "
        f"{sum(g.minutes for g in held)} quarantined minutes "
        f"({sum(g.minutes for g in held if not g.rechecked)} to recheck)"
    )


def fake_serve_command(
    pairs: str = typer.Option("all", "--pairs", help=PAIRS_HELP),
    since: str | None = typer.Option(None, "--since", help="First bar (UTC)."),
    until: str | None = typer.Option(None, "--until", help="End of data (UTC)."),
    days: int = typer.Option(
        7, "--days", help="Days of bars when --since is not given."
    ),
    seed: int = typer.Option(7, "--seed", help="Simulator seed."),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help="Serve bar files."),
    port: int = typer.Option(0, "--port", help="Port on 127.0.0.1 (0: a free one)."),
    speed: float = typer.Option(
        0.0, "--speed", help="Clock speed x real time from --start-at (0: frozen)."
    ),
    start_at: str | None = typer.Option(
        None, "--start-at", help="Clock time (UTC) to start at (default: newest bar)."
    ),
) -> None:
    """Serve the OANDA v20 fake on 127.0.0.1 until Ctrl-C.

    The token is BQX_OANDA_TOKEN (or `bqx-fake-token`), the account
    BQX_OANDA_ACCOUNT. Example: `bqx oanda-fake serve --pairs EUR_USD --days 30`
    """
    import threading

    import pandas as pd

    from ingestion.oanda.fake import FakeOanda
    from ingestion.oanda.market import FakeMarket

    try:
        settings = load_settings()
        names = _pairs(settings, pairs)
        if csv_dir:
            market = FakeMarket.from_csv_dir(csv_dir, names if pairs != "all" else None)
        else:
            end = pd.Timestamp(until or pd.Timestamp.now("UTC").floor("min"))
            start = pd.Timestamp(since) if since else end - pd.Timedelta(days=days)
            market = FakeMarket.from_simulator(names, start, end, seed=seed)
    except _domain_errors() + (FileNotFoundError,) as exc:
        raise _fail(exc) from None
    token = settings.oanda_token.get_secret_value() or "bqx-fake-token"
    fake = FakeOanda(
        market,
        token=token,
        account=settings.oanda_account or "101-001-0000000-001",
        port=port,
    )
    if start_at or speed:
        from ingestion.oanda.timefmt import to_ns

        at = to_ns(start_at) / 1e9 if start_at else market.last_start + 30
        fake.clock.set(at, speed=speed)
    with fake:
        console.print(
            f"OANDA fake on {fake.url} ({len(market.pairs)} pairs, account "
            f"{fake.account}); BQX_OANDA_ENV=custom BQX_OANDA_URL={fake.url}"
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print("stopped")


def register(ingest_app: typer.Typer, root_app: typer.Typer) -> None:
    """Add ``backfill``, ``follow``, ``gaps`` to ``ingest``; ``oanda-fake`` to root."""
    from bqx.runs import recorded

    ingest_app.command("backfill")(recorded("ingest backfill")(backfill_command))
    ingest_app.command("follow")(recorded("ingest follow")(follow_command))
    ingest_app.command("gaps")(recorded("ingest gaps")(gaps_command))
    fake_app = typer.Typer(
        help="The local OANDA v20 fake server.", no_args_is_help=True
    )
    fake_app.command("serve")(fake_serve_command)
    root_app.add_typer(fake_app, name="oanda-fake")

"""The ``bqx`` command: one sub-app per part, chained by ``bqx demo``.

Domain errors print one line and exit 1; ``BQX_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import sys
from typing import Optional

import click
import typer

from bqx.cli.common import BqxError, err_console, load_settings
from bqx.cli.features import features_app
from bqx.cli.ingest import ingest_app
from bqx.runs import recorded

app = typer.Typer(
    name="bqx",
    help="bqx: forex features from raw M1 bars to trained forecasters.\n\n"
    "Pipeline: ingest -> validate -> features build -> features publish -> "
    "train -> evaluate/predict. Configure with BQX_* variables (see .env.example).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ingest_app, name="ingest")
app.add_typer(features_app, name="features")


def _register_parts() -> None:
    """Add the commands of the parts that define their own CLI modules."""
    import importlib

    for module, args in (
        ("bqx.cli.oanda", (ingest_app, app)),
        ("bqx.cli.train", (app,)),
        ("bqx.cli.validate", (app,)),
        ("bqx.cli.ops", (app,)),
    ):
        try:
            part = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        part.register(*args)


_register_parts()


@app.command("demo")
@recorded("demo")
def demo(
    days: int = typer.Option(14, help="Calendar days to simulate (ending now)."),
    entity_rows: int = typer.Option(3000, help="Entity rows of the training frame."),
) -> None:
    """Run the whole embedded pipeline on simulated bars of the universe."""
    from bqx.demo import run_demo

    run_demo(days=days, entity_rows=entity_rows)


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(6566, help="Port of the HTTP server."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Serve this trained run's forecasts instead of features."
    ),
    storage: Optional[str] = typer.Option(
        None, help="With --model: runs folder or s3:// URI (default: from settings)."
    ),
    hours: int = typer.Option(24, help="With --model: hours of feature history read."),
    registry_ttl: Optional[int] = typer.Option(
        None,
        help="Seconds between the server's reloads of the Feast registry (default: "
        "the registry's cache_ttl_seconds in feature_store.yaml, 60 s in production). "
        "Each reload briefly holds the requests in flight.",
    ),
) -> None:
    """Run Feast's HTTP feature server over the configured online store, or with
    --model RUN the forecasts of a trained run.

    Features: clients POST to /get-online-features, e.g. with the `online_v1`
    service. Forecasts: GET /forecasts[?at=TIME] (the document of
    `bqx predict RUN --json`) and GET /health.
    """
    if model is not None:
        from bqx.cli.train import serve_model

        serve_model(model, storage, host=host, port=port, hours=hours)
        return
    from bqx.features import serve as serve_features

    serve_features(load_settings(), host=host, port=port, registry_ttl=registry_ttl)


def _domain_errors() -> tuple[type[BaseException], ...]:
    from bqx.features import FeaturesError
    from bqx.pairs import UnknownPairError
    from bqx.secrets import SecretError
    from bqx.warehouse import WarehouseError
    from expectations.gate import GateError
    from ingestion.csv_import import CsvFormatError

    return (
        BqxError, UnknownPairError, WarehouseError, CsvFormatError, FeaturesError,
        GateError, SecretError,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bqx`` console script."""
    try:
        result = app(args=argv, standalone_mode=False)
        # without standalone mode, click returns the code of typer.Exit(n)
        if isinstance(result, int) and not isinstance(result, bool) and result:
            sys.exit(result)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except _domain_errors() as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except Exception as exc:
        message = _service_error(exc)
        if message is None:
            raise
        err_console.print(f"[red]error:[/] {message}", soft_wrap=True)
        sys.exit(1)


def _service_error(exc: BaseException) -> str | None:
    """One line for a database or Redis failure met inside Feast, dbt or Great
    Expectations code, also where the library raised an error of its own from it
    or while handling it (GX's ``TestConnectionError`` when the server drops the
    connection): the chain Python's traceback would show is followed."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        names = {c.__module__.split(".")[0] + "." + c.__name__ for c in type(cause).__mro__}
        first = (str(cause).strip().splitlines() or [repr(cause)])[0]
        if names & {"psycopg.OperationalError", "psycopg2.OperationalError",
                    "sqlalchemy.OperationalError", "sqlalchemy.DBAPIError"}:  # fmt: skip
            return f"PostgreSQL failed: {first} (rerun the command: loads are idempotent)"
        if "redis.ConnectionError" in names or "redis.TimeoutError" in names:
            return f"Redis failed: {first}"
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return None


if __name__ == "__main__":
    main()

"""``docuchat``: run a target, run the dev stack, migrate, create topics, look at and replay
dead letters, export event docs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from docuchat_common.logging import configure_logging, get_logger

app = typer.Typer(help="DocuChat: chat with your documents.", no_args_is_help=True)
log = get_logger("docuchat")

TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        help="all | auth | ingest | ingest-worker | chat | usage | relay",
        envvar="DOCUCHAT_TARGET",
    ),
]


def _logging() -> None:
    json_env = os.environ.get("DOCUCHAT_LOG_JSON")
    configure_logging(
        os.environ.get("DOCUCHAT_LOG_LEVEL", "INFO"),
        json=None if json_env is None else json_env.lower() in ("1", "true", "yes"),
    )


@app.command()
def run(target: TargetOpt = "all") -> None:
    """Run one target (or all services) in this process until SIGTERM/Ctrl-C."""
    from docuchat.targets import plan, serve

    _logging()
    served = plan(target)
    log.info(
        "starting target",
        target=target,
        listening={s.name: f"http://{s.host}:{s.port}" for s in served},
    )
    run_event_loop(serve(served))


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a target on uvloop (libuv's loop: a third less event-loop CPU per request and per
    Kafka batch than asyncio's own), or on asyncio's when ``DOCUCHAT_EVENT_LOOP=asyncio``."""
    if os.environ.get("DOCUCHAT_EVENT_LOOP", "uvloop").lower() == "asyncio":
        asyncio.run(main)
        return
    import uvloop

    uvloop.run(main)


@app.command()
def dev(
    split: Annotated[
        bool, typer.Option(help="One process per target instead of one for all services")
    ] = False,
    port: Annotated[int, typer.Option(help="Gateway port", envvar="DOCUCHAT_GATEWAY_PORT")] = 8080,
    data_dir: Annotated[Path, typer.Option(help="Where the embedded stack keeps its data")] = Path(
        ".docuchat"
    ),
    llm: Annotated[
        bool,
        typer.Option(help="Answer with SmolLM2 served locally (off: extractive answers, no model)"),
    ] = True,
) -> None:
    """Start embedded PostgreSQL, the tansu broker, the services and Traefik; stop on Ctrl-C."""
    from docuchat.stack import DevStack, StackConfig

    _logging()
    stack = DevStack(StackConfig(data_dir=data_dir, gateway_port=port, split=split, local_llm=llm))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("starting the embedded stack", data_dir=str(data_dir.absolute()), split=split)
    stack.start()
    try:
        log.info(
            f"DocuChat is ready: open {stack.gateway_url.replace('127.0.0.1', 'localhost')} "
            f"(API under /api/v1, health at /healthz)",
            seconds_to_ready=round(stack.started_in or 0, 1),
            logs=str(stack.logs_dir),
            targets=list(stack.processes),
        )
        while not stop.wait(1.0):
            for name, proc in stack.processes.items():
                if not proc.is_running:
                    log.error("a service process exited; stopping", target=name)
                    stop.set()
    finally:
        log.info("stopping the embedded stack")
        stack.stop()
        log.info("stopped")


@app.command()
def migrate(target: TargetOpt = "all") -> None:
    """Create the service databases if missing and upgrade them (a Kubernetes Job runs this)."""
    from docuchat.targets import build_runtimes

    _logging()

    async def go() -> None:
        for runtime in build_runtimes("relay" if target == "all" else target):
            await runtime.migrate()
            await runtime.database.dispose()
            log.info("migrated", service=runtime.name)

    asyncio.run(go())


@app.command()
def topics(
    bootstrap_servers: Annotated[
        str, typer.Option(envvar="DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS")
    ] = "127.0.0.1:9092",
) -> None:
    """Create every topic (and its .dlq) with its partition count."""
    from docuchat_common.events.topics import ensure_topics

    _logging()
    created = asyncio.run(ensure_topics(bootstrap_servers))
    log.info("topics ready", created=created)


dlq = typer.Typer(help="Dead letters: what failed and why; replay once the cause is fixed.")
app.add_typer(dlq, name="dlq")
BootstrapOpt = Annotated[str, typer.Option(envvar="DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS")]
TopicArg = Annotated[str, typer.Argument(help="The original topic, e.g. docuchat.documents")]


@dlq.command("show")
def dlq_show(topic: TopicArg, bootstrap_servers: BootstrapOpt = "127.0.0.1:9092") -> None:
    """Count the letters of <topic>.dlq by consumer and error type, with an example error."""
    from docuchat_common.events.dead_letters import inspect_dead_letters

    report = asyncio.run(inspect_dead_letters(bootstrap_servers, topic))
    typer.echo(f"{report.letters} dead letters in {topic}.dlq")
    for cause, count in report.causes.most_common():
        consumer, error_type = cause
        typer.echo(f"  {count:6}  {consumer}  {error_type}: {report.examples[cause]}")


@dlq.command("replay")
def dlq_replay(
    topic: TopicArg,
    bootstrap_servers: BootstrapOpt = "127.0.0.1:9092",
    dry_run: Annotated[bool, typer.Option(help="Count only: publish and commit nothing")] = False,
) -> None:
    """Republish the letters not replayed yet into <topic> (consumers are idempotent)."""
    from docuchat_common.events.dead_letters import replay_dead_letters

    report = asyncio.run(replay_dead_letters(bootstrap_servers, topic, dry_run=dry_run))
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {report.replayed} of {report.letters} new dead letters into {topic}")
    for letter in report.skipped:
        typer.echo(
            f"  skipped (not an event: it failed parsing) offset {letter.offset}: "
            f"{letter.error_type}: {letter.error[:200]}"
        )


@app.command()
def docs(
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("docs/events"),
) -> None:
    """Export the AsyncAPI document (generated from the handlers) and the events' JSON Schemas."""
    from docuchat.asyncapi import asyncapi_document, event_schemas

    out.mkdir(parents=True, exist_ok=True)
    (out / "asyncapi.json").write_text(json.dumps(asyncapi_document(), indent=2) + "\n")
    for name, schema in event_schemas().items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    typer.echo(f"wrote {out}/asyncapi.json and the event schemas")

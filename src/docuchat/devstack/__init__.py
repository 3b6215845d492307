"""The embedded development stack: PostgreSQL, a Kafka-protocol broker and the gateway, each a
supervised child process that stops with us."""

from docuchat.devstack.postgres import EmbeddedPostgres
from docuchat.devstack.process import (
    ManagedProcess,
    ReadinessError,
    free_port,
    http_ok,
    tcp_port_open,
)
from docuchat.devstack.tansu import TansuBroker
from docuchat.devstack.traefik import GATEWAY_ENV_VARS, TraefikGateway

__all__ = [
    "GATEWAY_ENV_VARS",
    "EmbeddedPostgres",
    "ManagedProcess",
    "ReadinessError",
    "TansuBroker",
    "TraefikGateway",
    "free_port",
    "http_ok",
    "tcp_port_open",
]

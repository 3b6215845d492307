from docuchat_common.migrations_env import run
from docuchat_ingest.models import metadata

run(metadata)

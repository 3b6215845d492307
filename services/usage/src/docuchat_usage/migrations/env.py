from docuchat_common.migrations_env import run
from docuchat_usage.models import metadata

run(metadata)

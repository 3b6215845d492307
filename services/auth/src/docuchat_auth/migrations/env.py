from docuchat_auth.models import metadata
from docuchat_common.migrations_env import run

run(metadata)

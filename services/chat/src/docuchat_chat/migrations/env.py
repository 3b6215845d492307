from docuchat_chat.models import metadata
from docuchat_common.migrations_env import run

run(metadata)

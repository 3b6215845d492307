from docuchat.cli import app

app(prog_name="docuchat")

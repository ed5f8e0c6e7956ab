from hub_cli.main import app

app()

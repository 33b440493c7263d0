import typer

app = typer.Typer(help="Start, stop and inspect a Regio region.", no_args_is_help=True)


@app.command()
def version() -> None:
    typer.echo("regio 0.1.0")

"""The `kafka-tasks` command-line tool (typer + rich), built on services.client."""

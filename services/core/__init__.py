"""What the API and the worker share: task model and states, the state store, topic naming,
the task catalog and settings. Nothing here imports FastAPI or faust."""

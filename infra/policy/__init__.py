"""The kafka-tasks policy pack (see rules.py; __main__.py is what the Pulumi CLI runs)."""

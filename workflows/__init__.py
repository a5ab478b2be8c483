"""The round's Temporal workflow, the activities it calls, and how clients drive it.

Nothing here imports more of the project than `constitution`, so the worker,
the gateway and the CLI import it without the Slack, OpenAI and PostgreSQL
clients the activities use.
"""

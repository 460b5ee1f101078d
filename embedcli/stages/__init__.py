"""The library's verbs, one module a stage: ``run_*`` resolves the input, plans, writes through
the storage layer and returns a typed result (``results``); ``plan_*`` returns what it would
write (``--dry-run``). Nothing here knows Typer or rich; ``embedcli`` re-exports the verbs."""

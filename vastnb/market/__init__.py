"""The market: Vast's REST API (:mod:`~vastnb.market.api`), its records, the CLI's query
syntax, retries, and ranking offers against a profile (:mod:`~vastnb.market.selection`)."""
